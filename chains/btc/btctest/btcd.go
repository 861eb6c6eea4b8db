// Package btctest starts a real btcd regtest node for tests (chains/btc's
// own, and the member's end-to-end Bitcoin test). It imports nothing of
// custody's: callers dial the node with btc.Dial(Node.RPC fields).
package btctest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/rpcclient"
)

// SegwitActiveHeight is the first height at which btcd regtest accepts
// witness transactions: it activates segwit by BIP-9 signalling, DEFINED
// until 143, STARTED at 144, LOCKED_IN at 288, ACTIVE from block 432.
const SegwitActiveHeight = 432

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

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartBtcd runs a real btcd regtest node in a temp dir, with TLS on a
// loopback RPC port, txindex+addrindex, and coinbase paid to miningAddr,
// and returns once its RPC answers (within 30 s). Credentials live in a
// 0600 config file, never in argv. The node is killed at cleanup.
func StartBtcd(t testing.TB, miningAddr string) Node {
	t.Helper()
	bin := FindTool(t, "btcd")
	dir := t.TempDir()
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	user, pass := "custody", hex.EncodeToString(secret)
	conf := filepath.Join(dir, "btcd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[Application Options]\nrpcuser=%s\nrpcpass=%s\n", user, pass)), 0o600); err != nil {
		t.Fatal(err)
	}
	host := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cert, key := filepath.Join(dir, "rpc.cert"), filepath.Join(dir, "rpc.key")
	logf, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-C", conf, "--regtest",
		"--datadir", filepath.Join(dir, "data"), "--logdir", filepath.Join(dir, "logs"),
		"--rpccert", cert, "--rpckey", key, "--rpclisten", host,
		"--nolisten", "--txindex", "--addrindex", "--miningaddr", miningAddr)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	dumpLog := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "stdout.log"))
		return string(b)
	}

	deadline := time.After(30 * time.Second)
	var c *rpcclient.Client
	for {
		if c == nil {
			if pem, err := os.ReadFile(cert); err == nil && len(pem) > 0 {
				if c, err = rpcclient.New(&rpcclient.ConnConfig{Host: host, User: user, Pass: pass, Certificates: pem, HTTPPostMode: true}, nil); err != nil {
					t.Fatal(err)
				}
				defer c.Shutdown()
			}
		}
		if c != nil {
			// rpcclient has no timeout: a call that never returns must not
			// outlive the deadline.
			answered := make(chan error, 1)
			go func() { _, err := c.GetBlockCount(); answered <- err }()
			var err error
			select {
			case err = <-answered:
			case <-deadline:
				t.Fatalf("btcd RPC did not answer within 30s\n%s", dumpLog())
			}
			if err == nil {
				pem, _ := os.ReadFile(cert)
				return Node{Host: host, User: user, Pass: pass, Cert: pem}
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("btcd exited early: %v\n%s", err, dumpLog())
		case <-deadline:
			t.Fatalf("btcd RPC not ready within 30s\n%s", dumpLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
