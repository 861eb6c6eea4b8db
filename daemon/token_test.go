package daemon_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/ledger"
)

// TestTokenOfAnotherNodeStopsNode: every node binds its HSM token's serial
// in the ledger; a node started (with a new data dir) on another node's
// token is refused by the ledger and stops with ErrTokenTaken, without
// changing the binding (SECURITY 20: one share per token). Its old data dir,
// stamped for its own token, is refused at start.
func TestTokenOfAnotherNodeStopsNode(t *testing.T) {
	c := newCluster(t)
	var bound map[string]string
	c.poll("every node's token bound", func() error {
		return c.leader().Store().ReadLocal(func(st *ledger.State) error {
			bound = map[string]string{}
			for id, s := range st.Tokens {
				bound[string(id)] = s
			}
			if len(bound) != len(nodeIDs) {
				return fmt.Errorf("bound %v", bound)
			}
			return nil
		})
	})
	if bound["n3"] != c.nodes["n3"].token.TokenSerial {
		t.Fatalf("n3 bound to %q, its token is %q", bound["n3"], c.nodes["n3"].token.TokenSerial)
	}

	c.stop("n4")
	path := c.nodes["n4"].config
	cfg, err := daemon.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	// n4's config now names n3's token (and PIN).
	n3 := c.nodes["n3"].token
	raw := daemon.Config(*cfg)
	raw.HSM = daemon.HSM{Module: n3.Module, TokenSerial: n3.TokenSerial, TokenLabel: n3.TokenLabel, PINFile: filepath.Join(filepath.Dir(c.nodes["n3"].config), "hsm.pin")}
	if _, err := daemon.Start(&raw, daemon.Options{ETH: c.sim}); !errors.Is(err, daemon.ErrWrongDataDir) {
		t.Fatalf("start on its old data dir with n3's token: %v, want ErrWrongDataDir", err)
	}
	raw.DataDir = filepath.Join(t.TempDir(), "fresh")
	b, err := yaml.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c.start("n4")
	select {
	case err := <-c.nodes["n4"].node.Fatal():
		if !errors.Is(err, daemon.ErrTokenTaken) {
			t.Fatalf("n4 stopped for %v, want ErrTokenTaken", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("n4 kept running on n3's token")
	}
	_ = c.leader().Store().ReadLocal(func(st *ledger.State) error {
		if st.Tokens["n3"] != n3.TokenSerial || st.Tokens["n4"] != bound["n4"] {
			t.Errorf("bindings changed: %v", st.Tokens)
		}
		return nil
	})
}
