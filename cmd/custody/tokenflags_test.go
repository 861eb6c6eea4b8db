package main

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/hsm"
)

// TestOneSetOfTokenFlags: every command that can open a token takes the
// same token flags, with the same help, and none takes a PIN.
func TestOneSetOfTokenFlags(t *testing.T) {
	want := map[string]string{}
	for _, name := range []string{"module", "token-label", "token-serial", "pin-file"} {
		want[name] = ""
	}
	var seen []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		lookup := func(name string) string {
			if f := c.LocalFlags().Lookup(name); f != nil {
				return f.Usage
			}
			if f := c.InheritedFlags().Lookup(name); f != nil {
				return f.Usage
			}
			return "absent"
		}
		if lookup("token-label") != "absent" {
			seen = append(seen, c.CommandPath())
			for name, usage := range want {
				got := lookup(name)
				if got == "absent" {
					t.Errorf("%s: no --%s", c.CommandPath(), name)
					continue
				}
				if usage == "" {
					want[name] = got
				} else if got != usage {
					t.Errorf("%s --%s: usage %q differs from %q", c.CommandPath(), name, got, usage)
				}
			}
		}
		for _, bad := range []string{"pin", "so-pin", "passphrase"} {
			if lookup(bad) != "absent" {
				t.Errorf("%s takes a secret as --%s", c.CommandPath(), bad)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	// hsm's subcommands and the three operator commands that use a device key.
	if len(seen) < 10 {
		t.Fatalf("token flags found on only %v", seen)
	}
}

func TestReadPIN(t *testing.T) {
	dir := t.TempDir()
	flagFile := writeTemp(t, "flag.pin", "from-flag-file\n")
	envFile := writeTemp(t, "env.pin", "from-env-file\r\n")
	t.Setenv(hsmPINEnv, "from-env")
	t.Setenv(hsmPINFileEnv, envFile)
	for _, tc := range []struct {
		name, pinFile, fileEnv, pinEnv, want string
	}{
		{"--pin-file first", flagFile, envFile, "from-env", "from-flag-file"},
		{"then $CUSTODY_HSM_PIN_FILE", "", envFile, "from-env", "from-env-file"},
		{"then $CUSTODY_HSM_PIN", "", "", "from-env", "from-env"},
	} {
		t.Setenv(hsmPINFileEnv, tc.fileEnv)
		t.Setenv(hsmPINEnv, tc.pinEnv)
		got, err := (&tokenFlags{pinFile: tc.pinFile}).readPIN()
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	t.Setenv(hsmPINFileEnv, "")
	t.Setenv(hsmPINEnv, "")
	if _, err := (&tokenFlags{}).readPIN(); !errors.Is(err, hsm.ErrNoPIN) {
		t.Errorf("no PIN anywhere: %v", err)
	}
	if _, err := (&tokenFlags{pinFile: filepath.Join(dir, "missing")}).readPIN(); err == nil {
		t.Error("a missing --pin-file was accepted")
	}
	if _, err := (&tokenFlags{module: "/nonexistent.so"}).open(); err == nil || err.Error() != "hsm: select a token with --token-label or --token-serial" {
		t.Errorf("open without a token: %v", err)
	}
}
