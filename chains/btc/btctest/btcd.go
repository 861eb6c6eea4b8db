// Package btctest starts a real btcd regtest node for tests (chains/btc's
// own, and the member's end-to-end Bitcoin test) with package regtest. It
// imports nothing of custody's but regtest: callers dial the node with
// btc.Dial(Node.RPC fields).
package btctest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/custody-dev/custody/chains/btc/btcdproc"
)

// SegwitActiveHeight is btcdproc.SegwitActiveHeight.
const SegwitActiveHeight = btcdproc.SegwitActiveHeight

// FindTool looks for a binary on PATH, then in <repo root>/.bin. When it is
// missing the test fails under CUSTODY_REQUIRE_TOOLS=1 and skips otherwise.
func FindTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".bin", name)
			if _, err := os.Stat(p); err == nil {
				return p
			}
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	if os.Getenv("CUSTODY_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s not found on PATH or in .bin (CUSTODY_REQUIRE_TOOLS=1): run make tools", name)
	}
	t.Skipf("%s not found: run make tools", name)
	return ""
}

// Node is how to reach a started node's JSON-RPC server (the fields of
// btc.RPCConfig).
type Node struct {
	Host string // 127.0.0.1:port
	User string
	Pass string
	Cert []byte // rpc.cert (PEM)
}

// StartBtcd runs a real btcd regtest node in a temp dir (btcdproc.Start)
// and returns once its RPC answers (within 30 s). The node is killed at
// cleanup.
func StartBtcd(t testing.TB, miningAddr string) Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := btcdproc.Start(ctx, btcdproc.Config{Bin: FindTool(t, "btcd"), Dir: t.TempDir(), MiningAddr: miningAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return Node{Host: n.Host, User: n.User, Pass: n.Pass, Cert: n.Cert}
}
