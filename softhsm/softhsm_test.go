package softhsm_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm"
)

func TestFindModule(t *testing.T) {
	softhsm.SharedTestEnv(t) // skips or fails per CUSTODY_REQUIRE_TOOLS when absent
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
	softhsm.SharedTestEnv(t)
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
	cfg := softhsm.NewTestToken(t, "holder")
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
	// The shared test env comes back for the next NewTestToken.
	cfg2 := softhsm.NewTestToken(t, "back")
	tok3, err := hsm.Open(cfg2)
	if err != nil {
		t.Fatalf("NewTestToken after switching: %v", err)
	}
	tok3.Close()
}

// TestNewTestTokenConcurrent: many tests, several open tokens each.
func TestNewTestTokenConcurrent(t *testing.T) {
	for i := range 4 {
		t.Run("party-set", func(t *testing.T) {
			t.Parallel()
			var wg sync.WaitGroup
			toks := make([]*hsm.Token, 5)
			errs := make([]error, 5)
			for j := range 5 {
				cfg := softhsm.NewTestToken(t, "alice") // same prefix everywhere
				wg.Go(func() {
					toks[j], errs[j] = hsm.Open(cfg)
				})
			}
			wg.Wait()
			seen := map[string]bool{}
			for j, tok := range toks {
				if errs[j] != nil {
					t.Fatalf("set %d token %d: %v", i, j, errs[j])
				}
				if seen[tok.Info().Serial] {
					t.Fatalf("two Configs selected the same token %s", tok.Info().Serial)
				}
				seen[tok.Info().Serial] = true
				if _, err := tok.CreateKEK("kek"); err != nil {
					t.Fatal(err)
				}
			}
			for _, tok := range toks {
				tok.Close()
			}
		})
	}
}

func TestValidLabel(t *testing.T) {
	for l, want := range map[string]bool{"a": true, "node-1_x": true, "": false, "a b": false, "a,b": false,
		strings.Repeat("x", 32): true, strings.Repeat("x", 33): false} {
		if softhsm.ValidLabel(l) != want {
			t.Errorf("ValidLabel(%q) = %t", l, !want)
		}
	}
}

// TestRecycledTokenIsEmpty: a token recycled from an ended test comes back
// erased, under a new label and PIN; the old Config no longer opens it.
func TestRecycledTokenIsEmpty(t *testing.T) {
	var first hsm.Config
	t.Run("first", func(t *testing.T) {
		first = softhsm.NewTestToken(t, "recycle")
		tok, err := hsm.Open(first)
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		if _, err := tok.CreateKEK("kek"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("second", func(t *testing.T) {
		cfg := softhsm.NewTestToken(t, "recycle")
		if cfg.TokenSerial != first.TokenSerial {
			t.Skip("token was not recycled (pool used by a parallel test)")
		}
		if cfg.TokenLabel == first.TokenLabel || cfg.PIN == first.PIN {
			t.Fatal("recycled token kept its label or PIN")
		}
		if _, err := hsm.Open(first); !errors.Is(err, hsm.ErrTokenNotFound) {
			t.Fatalf("old Config on a recycled token: %v", err)
		}
		tok, err := hsm.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		if _, err := tok.KEK("kek"); !errors.Is(err, hsm.ErrKeyNotFound) {
			t.Fatalf("recycled token still has the old KEK: %v", err)
		}
	})
}
