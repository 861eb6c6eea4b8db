package main

import (
	"errors"
	"os"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm"
)

// Environment variables that hold a token's user PIN or name the file that
// does. PINs are only ever read from these or from files: never from flags,
// which end up in argv and shell history.
const (
	hsmPINEnv     = "CUSTODY_HSM_PIN"
	hsmPINFileEnv = "CUSTODY_HSM_PIN_FILE"
)

// tokenFlags select a PKCS#11 token and say where its user PIN is. Every
// command that opens a token takes exactly these, from addTokenFlags.
type tokenFlags struct {
	module, label, serial, pinFile string
}

// flagSet is what addTokenFlags needs of a cobra command's Flags() (one
// command) or PersistentFlags() (a command group and all its subcommands).
type flagSet interface {
	StringVar(p *string, name, value, usage string)
}

// addTokenFlags declares --module, --token-label, --token-serial and
// --pin-file on fs. There is deliberately no flag that takes a PIN.
func addTokenFlags(fs flagSet) *tokenFlags {
	f := &tokenFlags{}
	fs.StringVar(&f.module, "module", "", "PKCS#11 module path (default: $"+softhsm.ModuleEnv+" or libsofthsm2.so found on this system)")
	fs.StringVar(&f.label, "token-label", "", "select the token by label")
	fs.StringVar(&f.serial, "token-serial", "", "select the token by serial number")
	fs.StringVar(&f.pinFile, "pin-file", "", "file holding the user PIN (default: $"+hsmPINFileEnv+", else the PIN in $"+hsmPINEnv+")")
	return f
}

// selected reports whether the flags name a token.
func (f *tokenFlags) selected() bool { return f.label != "" || f.serial != "" }

// modulePath returns --module, or the SoftHSM library found on this system.
func (f *tokenFlags) modulePath() (string, error) {
	if f.module != "" {
		return f.module, nil
	}
	return softhsm.FindModule()
}

// readPIN returns the user PIN from --pin-file, else from the file named by
// $CUSTODY_HSM_PIN_FILE, else from $CUSTODY_HSM_PIN.
func (f *tokenFlags) readPIN() (string, error) {
	file := f.pinFile
	if file == "" {
		file = os.Getenv(hsmPINFileEnv)
	}
	return hsm.LoadPIN(hsmPINEnv, file)
}

// open selects and logs in to the token the flags name.
func (f *tokenFlags) open() (*hsm.Token, error) {
	mod, err := f.modulePath()
	if err != nil {
		return nil, err
	}
	if !f.selected() {
		return nil, errors.New("hsm: select a token with --token-label or --token-serial")
	}
	pin, err := f.readPIN()
	if err != nil {
		return nil, err
	}
	return hsm.Open(hsm.Config{Module: mod, TokenLabel: f.label, TokenSerial: f.serial, PIN: pin})
}
