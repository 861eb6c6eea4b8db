package softhsm_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

func TestFindModule(t *testing.T) {
	softhsmtest.SharedEnv(t) // skips or fails per CUSTODY_REQUIRE_TOOLS when absent
	p, err := softhsm.FindModule()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(p, "libsofthsm2.so") {
		t.Fatalf("FindModule = %q", p)
	}
	t.Setenv(softhsm.ModuleEnv, p)
	if got, err := softhsm.FindModule(); err != nil || got != p {
		t.Fatalf("override: %q, %v", got, err)
	}
	t.Setenv(softhsm.ModuleEnv, filepath.Join(t.TempDir(), "missing.so"))
	if _, err := softhsm.FindModule(); err == nil {
		t.Fatal("a missing override path was accepted")
	}
}

func TestSetupIsIsolated(t *testing.T) {
	softhsmtest.SharedEnv(t)
	dir := t.TempDir()
	e, err := softhsm.Setup(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(e.ConfPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "directories.tokendir = "+e.TokenDir+"\n") {
		t.Fatalf("config does not point at the env's token dir:\n%s", conf)
	}
	if strings.Contains(string(conf), "/var/lib/softhsm") || strings.Contains(string(conf), "/etc/softhsm") {
		t.Fatalf("config mentions global paths:\n%s", conf)
	}
	st, err := os.Stat(e.TokenDir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("token dir: %v %v", st.Mode(), err)
	}
	if got := e.Environ(); len(got) != 2 || got[0] != "SOFTHSM2_CONF="+e.ConfPath {
		t.Fatalf("Environ = %v", got)
	}
}

// TestEnvSwitchRules shows the process-singleton behaviour: another Env can
// only be provisioned while no token of the current one is open.
func TestEnvSwitchRules(t *testing.T) {
	cfg := softhsmtest.NewToken(t, "holder")
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	other, err := softhsm.Setup(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := softhsm.RandomPIN()
	if _, err := other.InitToken("other", pin, pin); !errors.Is(err, softhsm.ErrConfigInUse) {
		t.Fatalf("InitToken into another env under an open token: got %v, want ErrConfigInUse", err)
	}
	if ents, _ := os.ReadDir(other.TokenDir); len(ents) != 0 {
		t.Fatalf("a refused InitToken wrote %d entries", len(ents))
	}
	tok.Close()
	serial, err := other.InitToken("other", pin, pin)
	if err != nil {
		t.Fatalf("InitToken after the module was released: %v", err)
	}
	if ents, _ := os.ReadDir(other.TokenDir); len(ents) != 1 {
		t.Fatalf("token dir has %d entries, want 1", len(ents))
	}
	tok2, err := hsm.Open(hsm.Config{Module: other.Module, TokenSerial: serial, PIN: pin})
	if err != nil {
		t.Fatalf("Open the other env's token: %v", err)
	}
	tok2.Close()
	// Another process sees the token through Environ (and nothing global).
	if util, err := exec.LookPath("softhsm2-util"); err == nil {
		cmd := exec.Command(util, "--show-slots")
		cmd.Env = append(os.Environ(), other.Environ()...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "other") {
			t.Fatalf("softhsm2-util --show-slots: %v\n%s", err, out)
		}
	}
	// The shared test env comes back for the next NewToken.
	cfg2 := softhsmtest.NewToken(t, "back")
	tok3, err := hsm.Open(cfg2)
	if err != nil {
		t.Fatalf("NewToken after switching: %v", err)
	}
	tok3.Close()
}

func TestValidLabel(t *testing.T) {
	for l, want := range map[string]bool{"a": true, "node-1_x": true, "": false, "a b": false, "a,b": false,
		strings.Repeat("x", 32): true, strings.Repeat("x", 33): false} {
		if softhsm.ValidLabel(l) != want {
			t.Errorf("ValidLabel(%q) = %t", l, !want)
		}
	}
}
