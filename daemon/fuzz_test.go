package daemon

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig: no input panics the config parser; whatever it accepts
// has the required fields and parses again.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(validYAML))
	f.Add([]byte(validYAML + "presign: {enabled: true}\nledger: {log_store: boltdb, apply_timeout: 5s}\n"))
	f.Add([]byte("node_id: n1\nunknown: [1, {a: b}]\n"))
	f.Add([]byte("a: &x {b: 1}\nc: *x\n"))
	f.Add([]byte("listen: {raft: '[::1]:1'}\n"))
	f.Add([]byte("---\n---\n"))
	if b, err := os.ReadFile(filepath.Join("..", "docs", "config.md")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, "/base")
		if err != nil {
			return
		}
		if c.NodeID == "" || c.DataDir == "" || c.Genesis.Hash == "" || c.Ledger.LogStore == "" {
			t.Fatalf("accepted without a required field: %+v", c)
		}
	})
}
