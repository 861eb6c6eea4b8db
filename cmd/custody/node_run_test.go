package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custody-dev/custody/pki"
)

// TestNodeRunRefusals: `custody node run` with a bad config exits 1 with
// one line on stderr naming the cause, and leaves the data dir it names
// untouched: a genesis hash pinning another genesis, a wrong PIN, a token
// without the KEK, a data dir stamped for another token, the embedded
// chain outside the devnet.
func TestNodeRunRefusals(t *testing.T) {
	c := newProcCluster(t)
	// n1 starts once and stamps its data dir with its own token.
	c.start("n1")
	c.poll("n1 started", func() error {
		if !c.logHas("n1", "node started") {
			return os.ErrNotExist
		}
		return nil
	})
	c.signal("n1", syscall.SIGTERM)
	if code := c.wait("n1", time.Minute); code != 0 {
		t.Fatalf("n1 exit %d after SIGTERM", code)
	}
	nd := filepath.Dir(c.config("n1"))
	if err := os.WriteFile(filepath.Join(nd, "wrong.pin"), []byte("not-the-pin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stamp, err := os.ReadFile(filepath.Join(nd, "data", "node.id"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(c.config("n1"))
	if err != nil {
		t.Fatal(err)
	}
	fresh := func(s string) string { return strings.Replace(s, "data_dir: data", "data_dir: fresh", 1) }
	token := func(s string, label string) string {
		s = strings.Replace(s, `token_serial: "`+c.serials["n1"]+`"`, `token_serial: "`+c.serials[pki.NodeID(label)]+`"`, 1)
		return strings.Replace(s, "token_label: custody-n1", "token_label: custody-"+label, 1)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(string) string
	}{
		{"unknown genesis", "genesis", func(s string) string {
			i := strings.Index(s, "hash: ")
			return fresh(s[:i+6] + strings.Repeat("ab", 32) + s[i+6+64:])
		}},
		{"wrong PIN", "hsm", func(s string) string { return fresh(strings.Replace(s, "pin_file: hsm.pin", "pin_file: wrong.pin", 1)) }},
		{"missing KEK", "custody-kek", func(s string) string { return fresh(token(s, "nokek")) }},
		{"data dir of another token", "data dir belongs to another node", func(s string) string { return token(s, "n2") }},
		{"embedded chain", "embedded", func(s string) string {
			return fresh(strings.Replace(s, "rpc: "+c.chain.URL(), "rpc: embedded", 1))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(nd, "refusal.yaml")
			if err := os.WriteFile(path, []byte(tc.edit(string(base))), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := c.child(nil, "node", "run", "--config", path)
			if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "custody: ") || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and one line naming %q", code, out, errOut, tc.want)
			}
			if _, err := os.Stat(filepath.Join(nd, "fresh")); !os.IsNotExist(err) {
				t.Errorf("the refused node made its data dir (%v)", err)
				_ = os.RemoveAll(filepath.Join(nd, "fresh"))
			}
			if now, _ := os.ReadFile(filepath.Join(nd, "data", "node.id")); string(now) != string(stamp) {
				t.Errorf("n1's stamp changed: %s", now)
			}
		})
	}
}

// TestNodeSIGTERMRestart: a running node exits 0 on SIGTERM with a "node
// stopped" log line, and starts again from the same config and data dir.
func TestNodeSIGTERMRestart(t *testing.T) {
	c := newProcCluster(t)
	for round := range 2 {
		c.start("n2")
		c.poll("n2 started", func() error {
			if !c.logHas("n2", "node started") {
				if exited(c.procs["n2"]) {
					t.Fatalf("round %d: n2 exited before it started", round)
				}
				return os.ErrNotExist
			}
			return nil
		})
		c.signal("n2", syscall.SIGTERM)
		if code := c.wait("n2", time.Minute); code != 0 {
			t.Fatalf("round %d: exit %d after SIGTERM", round, code)
		}
		if !c.logHas("n2", "node stopped") {
			t.Fatalf("round %d: no \"node stopped\" line", round)
		}
	}
}
