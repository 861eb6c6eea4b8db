// Package gethproc runs a real geth --dev process: an Ethereum client's own
// JSON-RPC for the devnet (custody devnet --eth-node geth) and for tests.
// It imports nothing of custody's: callers dial Node.URL with chains/eth
// like any Ethereum node.
//
// A --dev chain (chain ID 1337) is proof-of-authority with a simulated
// beacon. Started with --dev.period 0, as here, geth mines a block as soon
// as a transaction (or a beacon withdrawal) is pending and never otherwise:
// Mine makes a block on demand with a zero-value transfer from the
// developer account, which geth holds prefunded and unlocked in the
// data directory's keystore.
package gethproc

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"
)

// Version is the geth release the Makefile installs (make tools-geth) and
// these flags were checked against.
const Version = "1.16.7"

// ChainID is geth --dev's chain ID.
var ChainID = big.NewInt(1337)

// Config says how to start the node.
type Config struct {
	// Bin is the geth binary. Required.
	Bin string
	// Dir holds the chain data, keystore and geth's log. Required;
	// created if missing.
	Dir string
	// Ready bounds the wait for the JSON-RPC to answer (default 60 s).
	Ready time.Duration
}

// Node is a running geth --dev.
type Node struct {
	// URL is the HTTP JSON-RPC endpoint, http://127.0.0.1:PORT (namespaces
	// eth, net, web3).
	URL string
	// Dev is the prefunded, unlocked developer account.
	Dev common.Address
	// Version is what geth answers web3_clientVersion with
	// (Geth/v1.16.7-stable/...).
	Version string
	// Log is the file geth's stdout and stderr go to.
	Log string

	cmd    *exec.Cmd
	exited chan error
	logf   *os.File
	rpc    *rpc.Client
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start runs geth --dev mining on demand, its HTTP JSON-RPC on a loopback
// port (the authenticated engine API on another loopback port: it is always
// started), no IPC, no peers, and returns once the RPC answers with chain
// ID 1337 and names the developer account. Stop ends it.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	if cfg.Bin == "" || cfg.Dir == "" {
		return nil, errors.New("gethproc: Bin and Dir are required")
	}
	if cfg.Ready <= 0 {
		cfg.Ready = 60 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("gethproc: %w", err)
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, fmt.Errorf("gethproc: %w", err)
	}
	n := &Node{URL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), Log: filepath.Join(cfg.Dir, "geth.log"), exited: make(chan error, 1)}
	if n.logf, err = os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, fmt.Errorf("gethproc: %w", err)
	}
	n.cmd = exec.Command(cfg.Bin, "--dev", "--dev.period", "0",
		"--datadir", filepath.Join(cfg.Dir, "data"),
		"--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(ports[0]), "--http.api", "eth,net,web3",
		"--authrpc.addr", "127.0.0.1", "--authrpc.port", strconv.Itoa(ports[1]),
		"--ipcdisable", "--nodiscover", "--maxpeers", "0", "--cache", "128")
	n.cmd.Env = append(os.Environ(), "HOME="+cfg.Dir)
	n.cmd.Stdout, n.cmd.Stderr = n.logf, n.logf
	// geth dies with the process that started it, even one killed outright.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.logf.Close()
		return nil, fmt.Errorf("gethproc: start %s: %w", cfg.Bin, err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	if n.rpc, err = rpc.DialContext(ctx, n.URL); err != nil {
		return nil, fmt.Errorf("gethproc: %w", err)
	}

	deadline := time.NewTimer(cfg.Ready)
	defer deadline.Stop()
	for {
		id, accounts, err := n.probe(ctx)
		if err == nil {
			if id.ToInt().Cmp(ChainID) != 0 {
				return nil, fmt.Errorf("gethproc: geth --dev answers chain ID %s, want %s", id.ToInt(), ChainID)
			}
			if len(accounts) == 0 {
				return nil, errors.New("gethproc: geth --dev names no developer account (eth_accounts is empty)")
			}
			n.Dev = accounts[0]
			return n, nil
		}
		select {
		case err := <-n.exited:
			n.exited <- err
			return nil, fmt.Errorf("gethproc: geth exited early: %v\n%s", err, n.tail())
		case <-deadline.C:
			return nil, fmt.Errorf("gethproc: geth JSON-RPC not ready within %s (last: %v)\n%s", cfg.Ready, err, n.tail())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probe asks for the chain ID, the accounts and the client version, the
// calls bounded.
func (n *Node) probe(ctx context.Context) (id hexutil.Big, accounts []common.Address, err error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err = n.rpc.CallContext(cctx, &id, "eth_chainId"); err != nil {
		return id, nil, err
	}
	if err = n.rpc.CallContext(cctx, &accounts, "eth_accounts"); err != nil {
		return id, nil, err
	}
	err = n.rpc.CallContext(cctx, &n.Version, "web3_clientVersion")
	return id, accounts, err
}

// Fund sends wei from the developer account to addr (eth_sendTransaction:
// geth signs with the unlocked key) and returns once it is mined
// successfully. With on-demand mining the transaction makes its own block.
func (n *Node) Fund(ctx context.Context, to common.Address, wei *big.Int) (common.Hash, error) {
	var hash common.Hash
	tx := map[string]any{"from": n.Dev, "to": to, "value": (*hexutil.Big)(wei), "gas": hexutil.Uint64(21_000)}
	if err := n.rpc.CallContext(ctx, &hash, "eth_sendTransaction", tx); err != nil {
		return common.Hash{}, fmt.Errorf("gethproc: eth_sendTransaction from the developer account: %w", err)
	}
	if err := n.waitMined(ctx, hash); err != nil {
		return common.Hash{}, fmt.Errorf("gethproc: %w", err)
	}
	return hash, nil
}

// Mine makes one block: a zero-value transfer from the developer account to
// itself (its nonce is geth's to assign, so it never races a caller's own
// transactions), returning once it is mined.
func (n *Node) Mine(ctx context.Context) error {
	_, err := n.Fund(ctx, n.Dev, new(big.Int))
	return err
}

// waitMined polls for hash's receipt until it is found (within 30 s, or
// ctx) and fails if the transaction reverted.
func (n *Node) waitMined(ctx context.Context, hash common.Hash) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r *struct {
			Status hexutil.Uint64 `json:"status"`
		}
		err := n.rpc.CallContext(ctx, &r, "eth_getTransactionReceipt", hash)
		switch {
		case err == nil && r != nil && r.Status != 1:
			return fmt.Errorf("transaction %s reverted", hash.Hex())
		case err == nil && r != nil:
			return nil
		// geth answers "transaction indexing is in progress" while it
		// indexes at start: not mined yet, as far as a caller can tell.
		case err != nil && !strings.Contains(err.Error(), "indexing"):
			return fmt.Errorf("receipt of %s: %w", hash.Hex(), err)
		case time.Now().After(deadline):
			return fmt.Errorf("transaction %s not mined within 30s", hash.Hex())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Find looks for geth on PATH, then in .bin of the module that holds the
// working directory (make tools-geth installs it there). Not found, the
// error says how to get it.
func Find() (string, error) {
	if p, err := exec.LookPath("geth"); err == nil {
		return p, nil
	}
	dir, err := os.Getwd()
	for err == nil {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".bin", "geth")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			break
		}
		if parent := filepath.Dir(dir); parent != dir {
			dir = parent
		} else {
			break
		}
	}
	return "", errors.New("geth not found on PATH or in .bin: make tools-geth installs geth v" + Version)
}

// PID is geth's process ID.
func (n *Node) PID() int { return n.cmd.Process.Pid }

// tail is the last lines of geth's log, for an error (a fatal flag or
// database error is its last line).
func (n *Node) tail() string {
	b, _ := os.ReadFile(n.Log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// Stop asks geth to shut down (SIGINT: it closes its database), kills it
// after 15 s, and waits for it to exit.
func (n *Node) Stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	if n.rpc != nil {
		n.rpc.Close()
	}
	_ = n.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case err = <-n.exited:
	case <-time.After(15 * time.Second):
		_ = n.cmd.Process.Kill()
		err = <-n.exited
	}
	n.exited <- err
	n.logf.Close()
}
