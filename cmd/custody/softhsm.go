package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm"
)

// hsmSOPINEnv holds the SO PIN for "softhsm init" (the user PIN is in
// hsmPINEnv, see tokenflags.go).
const hsmSOPINEnv = "CUSTODY_HSM_SO_PIN"

func newSoftHSMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "softhsm",
		Short: "Provision isolated SoftHSM2 tokens for tests and devnets",
		Long: `Provision SoftHSM2 (software PKCS#11) tokens in a directory of their own, with
their own softhsm2.conf. Nothing under /etc/softhsm or the global token
directory is read or written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSoftHSMInitCmd())
	return cmd
}

type softhsmInitReport struct {
	Dir       string              `json:"dir"`
	Conf      string              `json:"conf"`
	Module    string              `json:"module"`
	Tokens    []softhsmTokenEntry `json:"tokens"`
	PINFile   string              `json:"pin_file,omitempty"`
	SOPINFile string              `json:"so_pin_file,omitempty"`
	Env       map[string]string   `json:"env"`
}

type softhsmTokenEntry struct {
	Label  string `json:"label"`
	Serial string `json:"serial"`
}

func newSoftHSMInitCmd() *cobra.Command {
	var dir, tokens, pinFile, soPINFile string
	cmd := &cobra.Command{
		Use:   "init --dir DIR --tokens a,b,c",
		Short: "Create an isolated SoftHSM2 config in DIR and initialise the named tokens",
		Long: `Create DIR/softhsm2.conf and DIR/tokens, initialise one token per label, and
print the environment to export to use them.

PINs (the same user PIN and SO PIN for every token) come from, in order:
  --pin-file / --so-pin-file, or $CUSTODY_HSM_PIN / $CUSTODY_HSM_SO_PIN,
  or are generated and written to DIR/user.pin and DIR/so.pin (mode 0600).
PINs are never printed; the output names the files that hold them.

DIR must not already hold tokens.`,
		Example: `  eval "$(custody softhsm init --dir /tmp/hsm --tokens node1,node2,node3)"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("softhsm init: --dir is required")
			}
			labels, err := softhsmParseLabels(tokens)
			if err != nil {
				return err
			}
			if ents, err := os.ReadDir(filepath.Join(dir, "tokens")); err == nil && len(ents) > 0 {
				return fmt.Errorf("softhsm init: %s already holds %d token(s); use a new directory", dir, len(ents))
			}
			pin, err := softhsmPIN(pinFile, hsmPINEnv)
			if err != nil {
				return err
			}
			soPIN, err := softhsmPIN(soPINFile, hsmSOPINEnv)
			if err != nil {
				return err
			}
			env, err := softhsm.Setup(dir)
			if err != nil {
				return err
			}
			rep := softhsmInitReport{Dir: env.Dir, Conf: env.ConfPath, Module: env.Module, PINFile: pinFile, SOPINFile: soPINFile}
			if pin == "" {
				if pin, rep.PINFile, err = softhsmWritePIN(env.Dir, "user.pin"); err != nil {
					return err
				}
			}
			if soPIN == "" {
				if soPIN, rep.SOPINFile, err = softhsmWritePIN(env.Dir, "so.pin"); err != nil {
					return err
				}
			}
			for _, l := range labels {
				serial, err := env.InitToken(l, soPIN, pin)
				if err != nil {
					return fmt.Errorf("softhsm init: token %q: %w", l, err)
				}
				rep.Tokens = append(rep.Tokens, softhsmTokenEntry{Label: l, Serial: serial})
			}
			rep.Env = map[string]string{"SOFTHSM2_CONF": env.ConfPath, softhsm.ModuleEnv: env.Module}
			if rep.PINFile != "" {
				rep.Env[hsmPINFileEnv] = rep.PINFile
			}
			return report(cmd, rep, func(w io.Writer) error {
				fmt.Fprintf(w, "# SoftHSM2 environment in %s\n", rep.Dir)
				for _, t := range rep.Tokens {
					fmt.Fprintf(w, "#   token %-20s serial %s\n", t.Label, t.Serial)
				}
				if rep.PINFile != "" {
					fmt.Fprintf(w, "# user PIN in %s, SO PIN in %s (keep them private)\n", rep.PINFile, rep.SOPINFile)
				}
				fmt.Fprintf(w, "export SOFTHSM2_CONF=%s\n", shellQuote(env.ConfPath))
				fmt.Fprintf(w, "export %s=%s\n", softhsm.ModuleEnv, shellQuote(env.Module))
				if rep.PINFile != "" {
					fmt.Fprintf(w, "export %s=%s\n", hsmPINFileEnv, shellQuote(rep.PINFile))
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for softhsm2.conf and the token store (required)")
	cmd.Flags().StringVar(&tokens, "tokens", "", "comma-separated token labels to initialise (required)")
	cmd.Flags().StringVar(&pinFile, "pin-file", "", "file holding the user PIN (default: $"+hsmPINEnv+" or generated)")
	cmd.Flags().StringVar(&soPINFile, "so-pin-file", "", "file holding the SO PIN (default: $"+hsmSOPINEnv+" or generated)")
	return cmd
}

func softhsmParseLabels(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("softhsm init: --tokens is required (e.g. --tokens node1,node2)")
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(s, ",") {
		l = strings.TrimSpace(l)
		if !softhsm.ValidLabel(l) {
			return nil, fmt.Errorf("softhsm init: invalid token label %q (1..32 printable characters, no spaces)", l)
		}
		if seen[l] {
			return nil, fmt.Errorf("softhsm init: token label %q given twice", l)
		}
		seen[l] = true
		out = append(out, l)
	}
	return out, nil
}

// softhsmPIN reads a PIN to initialise tokens with from file, or env; ""
// means "generate one". It is not tokenFlags.readPIN: "softhsm init" sets
// PINs rather than logging in, reads the SO PIN too, and ignores
// $CUSTODY_HSM_PIN_FILE, which a previous init may have exported.
func softhsmPIN(file, env string) (string, error) {
	if file == "" && os.Getenv(env) == "" {
		return "", nil
	}
	pin, err := hsm.LoadPIN(env, file)
	if err != nil {
		return "", err
	}
	if len(pin) < 4 || len(pin) > 255 {
		return "", fmt.Errorf("softhsm init: PIN must be 4..255 characters")
	}
	return pin, nil
}

// softhsmWritePIN generates a PIN into dir/name, mode 0600, never
// overwriting a file.
func softhsmWritePIN(dir, name string) (pin, path string, err error) {
	pin, err = softhsm.RandomPIN()
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, name)
	if err := writeNew(path, 0o600, []byte(pin+"\n")); err != nil {
		return "", "", fmt.Errorf("softhsm init: %w", err)
	}
	return pin, path, nil
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
