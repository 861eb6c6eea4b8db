// Package btcdproc runs a real btcd regtest node: for the devnet and, through
// chains/btc/btctest, for tests. It imports nothing of custody's (chains/btc's
// own tests use it): callers dial the node with btc.Dial and the Node's
// fields.
package btcdproc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/rpcclient"
)

// SegwitActiveHeight is the first height at which btcd regtest accepts
// witness transactions: it activates segwit by BIP-9 signalling, DEFINED
// until 143, STARTED at 144, LOCKED_IN at 288, ACTIVE from block 432.
const SegwitActiveHeight = 432

// Config says how to start the node.
type Config struct {
	// Bin is the btcd binary. Required.
	Bin string
	// Dir holds the node's config (0600: the RPC password), data, logs and
	// RPC certificate. Required; created if missing.
	Dir string
	// MiningAddr receives the coinbase of generated blocks. Required.
	MiningAddr string
	// Ready bounds the wait for the RPC to answer (default 30 s).
	Ready time.Duration
}

// Node is a running btcd: how to reach its JSON-RPC server (the fields of
// btc.RPCConfig) and the process.
type Node struct {
	Host string // 127.0.0.1:port
	User string
	Pass string
	Cert []byte // rpc.cert (PEM)
	// Log is the file btcd's stdout and stderr go to.
	Log string

	cmd    *exec.Cmd
	exited chan error
	logf   *os.File
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start runs btcd --regtest with TLS on a loopback RPC port, txindex and
// addrindex, coinbase paid to MiningAddr, and returns once its RPC answers.
// Credentials live in a 0600 config file, never in argv. Stop ends it.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	if cfg.Bin == "" || cfg.Dir == "" || cfg.MiningAddr == "" {
		return nil, errors.New("btcdproc: Bin, Dir and MiningAddr are required")
	}
	if cfg.Ready <= 0 {
		cfg.Ready = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("btcdproc: %w", err)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	n := &Node{User: "custody", Pass: hex.EncodeToString(secret), exited: make(chan error, 1)}
	conf := filepath.Join(cfg.Dir, "btcd.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "[Application Options]\nrpcuser=%s\nrpcpass=%s\n", n.User, n.Pass), 0o600); err != nil {
		return nil, fmt.Errorf("btcdproc: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("btcdproc: %w", err)
	}
	n.Host = fmt.Sprintf("127.0.0.1:%d", port)
	cert, key := filepath.Join(cfg.Dir, "rpc.cert"), filepath.Join(cfg.Dir, "rpc.key")
	n.Log = filepath.Join(cfg.Dir, "stdout.log")
	if n.logf, err = os.Create(n.Log); err != nil {
		return nil, fmt.Errorf("btcdproc: %w", err)
	}
	n.cmd = exec.Command(cfg.Bin, "-C", conf, "--regtest",
		"--datadir", filepath.Join(cfg.Dir, "data"), "--logdir", filepath.Join(cfg.Dir, "logs"),
		"--rpccert", cert, "--rpckey", key, "--rpclisten", n.Host,
		"--nolisten", "--txindex", "--addrindex", "--miningaddr", cfg.MiningAddr)
	n.cmd.Env = append(os.Environ(), "HOME="+cfg.Dir)
	n.cmd.Stdout, n.cmd.Stderr = n.logf, n.logf
	// btcd dies with the process that started it, even one killed outright.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.logf.Close()
		return nil, fmt.Errorf("btcdproc: start %s: %w", cfg.Bin, err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()

	deadline := time.NewTimer(cfg.Ready)
	defer deadline.Stop()
	var c *rpcclient.Client
	defer func() {
		if c != nil {
			c.Shutdown()
		}
	}()
	for {
		if c == nil {
			if pem, err := os.ReadFile(cert); err == nil && len(pem) > 0 {
				if c, err = rpcclient.New(&rpcclient.ConnConfig{Host: n.Host, User: n.User, Pass: n.Pass, Certificates: pem, HTTPPostMode: true}, nil); err != nil {
					return nil, fmt.Errorf("btcdproc: %w", err)
				}
				n.Cert = pem
			}
		}
		if c != nil {
			// rpcclient has no timeout: a call that never returns must not
			// outlive the deadline.
			answered := make(chan error, 1)
			go func() { _, err := c.GetBlockCount(); answered <- err }()
			select {
			case err := <-answered:
				if err == nil {
					return n, nil
				}
			case <-deadline.C:
				return nil, fmt.Errorf("btcdproc: btcd RPC did not answer within %s\n%s", cfg.Ready, n.tail())
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		select {
		case err := <-n.exited:
			n.exited <- err
			return nil, fmt.Errorf("btcdproc: btcd exited early: %v\n%s", err, n.tail())
		case <-deadline.C:
			return nil, fmt.Errorf("btcdproc: btcd RPC not ready within %s\n%s", cfg.Ready, n.tail())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail is the end of btcd's output, for an error.
func (n *Node) tail() string {
	b, _ := os.ReadFile(n.Log)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// Stop kills the node and waits for it to exit.
func (n *Node) Stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	err := <-n.exited
	n.exited <- err
	n.logf.Close()
}
