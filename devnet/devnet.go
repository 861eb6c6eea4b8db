// Package devnet runs a whole custody cluster on one machine: one SoftHSM2
// token per node, the cluster files of `custody cluster init`, four
// `custody node run` processes on loopback, an Ethereum chain (go-ethereum's
// simulated backend served over JSON-RPC by this process, or a real
// geth --dev process, with an ERC-20 token it deploys) and a btcd regtest
// node. It is what `make demo` and
// `custody devnet` run, and what end-to-end tests start.
//
// Everything goes through the real binary and the real APIs: the devnet
// runs the custody binary it is given for every provisioning step and for
// the nodes, and talks to the nodes over HTTPS with the backend's and the
// operators' certificates, exactly as an exchange and its operators would.
// It is development tooling: never imported by a production path.
package devnet

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/chains/btc/btcdproc"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/pki"
)

// ClusterID is the devnet cluster's ID (bound into every approval).
const ClusterID = "custody-devnet"

// Operators of the devnet: alice and bob administer, all three approve.
var Operators = []string{"alice", "bob", "carol"}

// Backend is the devnet's backend principal.
const Backend = "exchange"

// Config says how to run a devnet.
type Config struct {
	// Bin is the custody binary every step runs (os.Executable() for the
	// CLI; a test passes its own binary with Env selecting the CLI).
	// Required.
	Bin string
	// Env is added to every child's environment.
	Env []string
	// NodeEnv, if set, adds node i's (of n) environment (tests: committed
	// pre-params fixtures).
	NodeEnv func(i, n int) []string
	// Dir holds everything (tokens, cluster files, logs, chain data). ""
	// means a new temporary directory, removed by Stop unless Keep.
	Dir string
	// Keep leaves Dir in place at Stop.
	Keep bool
	// Nodes is the number of signer nodes (default 4: with a checkpoint
	// quorum of 3 of 4 the cluster signs with one node down).
	Nodes int
	// Btcd is the btcd binary; "" runs no Bitcoin (its steps are skipped
	// with a line saying so).
	Btcd string
	// ETHNode is the Ethereum node: ETHEmbedded (the default, "") or
	// ETHGeth, a geth --dev process run from Geth (required then).
	ETHNode string
	Geth    string
	// Progress receives one line per provisioning step (nil: discarded).
	Progress io.Writer
	// SessionTimeout is the nodes' tss.session_timeout ("" keeps the
	// default).
	SessionTimeout time.Duration
	// RateLimit, if set, is the nodes' api.rate_limit (each principal's
	// requests a minute to one node, and the burst); zero keeps the
	// defaults. custody bench raises it so the API's DoS guard is not
	// what it measures.
	RateLimit daemon.RateLimit
	// PreParamsCache is a directory of cached tss pre-params the nodes take
	// from before generating their own and return their unused sets to
	// (tss.preparams_cache); a background process at the lowest CPU
	// priority tops it up to PreParamsTarget sets (default
	// DefaultPreParamsTarget). "" uses no cache.
	PreParamsCache  string
	PreParamsTarget int
}

// Net is a running devnet.
type Net struct {
	cfg Config
	// Dir is where everything lives; ClusterDir holds `cluster init`'s
	// output (CA, certificates, keys, configs).
	Dir, ClusterDir string
	// SoftHSMConf is the SOFTHSM2_CONF of the devnet's tokens.
	SoftHSMConf string
	pinFile     string
	serials     map[string]string // token label → serial

	// Nodes are the node IDs, n1..nN.
	Nodes []pki.NodeID
	// APIs are the nodes' HTTPS API addresses (host:port).
	APIs map[pki.NodeID]string

	// ETH is the Ethereum chain (embedded or geth); Token the ERC-20 the
	// devnet deployed.
	ETH       *ETHChain
	Token     common.Address
	ethFunder *ecdsa.PrivateKey
	// BTC is the btcd regtest node (nil without Bitcoin).
	BTC       *btcdproc.Node
	btcFunder *btcec.PrivateKey

	mu    sync.Mutex
	procs map[pki.NodeID]*nodeProc
	rpc   *noderpc.Client
	hint  pki.NodeID // the leader the nodes last agreed on
	temp  bool
	// filler stops the background pre-params filler (nil: none).
	filler func()
}

// progress prints one provisioning line.
func (n *Net) progress(format string, a ...any) {
	if n.cfg.Progress != nil {
		fmt.Fprintf(n.cfg.Progress, format+"\n", a...)
	}
}

// Start provisions and starts a devnet: tokens with their KEKs, the chains,
// the cluster files, the nodes. It returns once every node runs and a
// leader is elected. On an error everything started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Net, err error) {
	if cfg.Bin == "" {
		return nil, errors.New("devnet: the custody binary is required")
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 4
	}
	if cfg.Nodes < 1 || cfg.Nodes > 16 {
		return nil, fmt.Errorf("devnet: %d nodes: want 1..16", cfg.Nodes)
	}
	switch cfg.ETHNode {
	case "":
		cfg.ETHNode = ETHEmbedded
	case ETHEmbedded:
	case ETHGeth:
		if cfg.Geth == "" {
			return nil, errors.New("devnet: the Ethereum node is geth but no geth binary is given (make tools-geth installs one into .bin)")
		}
	default:
		return nil, fmt.Errorf("devnet: Ethereum node %q: want %s or %s", cfg.ETHNode, ETHEmbedded, ETHGeth)
	}
	n := &Net{cfg: cfg, Dir: cfg.Dir, serials: map[string]string{}, APIs: map[pki.NodeID]string{}, procs: map[pki.NodeID]*nodeProc{}}
	if n.Dir == "" {
		if n.Dir, err = os.MkdirTemp("", "custody-devnet-"); err != nil {
			return nil, fmt.Errorf("devnet: %w", err)
		}
		n.temp = true
	} else if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("devnet: %w", err)
	}
	if n.Dir, err = filepath.Abs(n.Dir); err != nil {
		return nil, fmt.Errorf("devnet: %w", err)
	}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	for i := range cfg.Nodes {
		n.Nodes = append(n.Nodes, pki.NodeID(fmt.Sprintf("n%d", i+1)))
	}
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"tss pre-params cache", func(context.Context) error { return n.startFiller() }},
		{"HSM tokens", n.provisionTokens},
		{"Ethereum chain", n.startETH},
		{"Bitcoin regtest node", n.startBTC},
		{"cluster files", n.initCluster},
		{"nodes", n.startNodes},
	}
	for _, s := range steps {
		if err := s.do(ctx); err != nil {
			return nil, fmt.Errorf("devnet: %s: %w", s.what, err)
		}
	}
	if err := n.writeInfo(); err != nil {
		return nil, fmt.Errorf("devnet: %w", err)
	}
	return n, nil
}

// Stop stops every process the devnet started and, for a temporary
// directory without Keep, removes its files.
func (n *Net) Stop() {
	n.mu.Lock()
	procs := n.procs
	n.procs = map[pki.NodeID]*nodeProc{}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.stop(15 * time.Second) })
	}
	wg.Wait()
	// After the nodes: they return their unused sets to the cache as they
	// stop.
	n.stopFiller()
	n.mu.Lock()
	if n.rpc != nil {
		n.rpc.Close()
		n.rpc = nil
	}
	n.mu.Unlock()
	if n.ETH != nil {
		_ = n.ETH.Close()
	}
	if n.BTC != nil {
		n.BTC.Stop()
	}
	if n.temp && !n.cfg.Keep {
		_ = os.RemoveAll(n.Dir)
	}
}

// Info is what devnet.json holds: how a person or another program reaches
// the running devnet.
type Info struct {
	ClusterID string `json:"cluster_id"`
	Dir       string `json:"dir"`
	// PID is the devnet process (it serves the Ethereum chain; SIGTERM
	// stops everything it started).
	PID int `json:"pid"`
	// PIDs of the node processes (custody devnet stop signals them).
	PIDs map[pki.NodeID]int `json:"pids"`
	// APIs are the nodes' HTTPS API base URLs.
	APIs map[pki.NodeID]string `json:"apis"`
	// CA is the cluster CA certificate (PEM file).
	CA string `json:"ca"`
	// Backend and Operators are credential files: certificate, key and
	// device key (unsealed, mode 0600).
	Backend   Credentials            `json:"backend"`
	Operators map[string]Credentials `json:"operators"`
	ETHRPC    string                 `json:"eth_rpc"`
	Token     string                 `json:"token,omitempty"`
	BTCRPC    string                 `json:"btc_rpc,omitempty"`
	SoftHSM   string                 `json:"softhsm2_conf"`
	// ETHNode is "embedded" (served by the devnet process) or "geth";
	// ETHPID is geth's process.
	ETHNode string `json:"eth_node"`
	ETHPID  int    `json:"eth_pid,omitempty"`
}

// Credentials of one principal.
type Credentials struct {
	Name      string `json:"name"`
	Cert      string `json:"cert"`
	Key       string `json:"key"`
	DeviceKey string `json:"device_key"`
}

// InfoFile is devnet.json in the devnet's directory.
func (n *Net) InfoFile() string { return filepath.Join(n.Dir, "devnet.json") }

// Info describes the running devnet.
func (n *Net) Info() Info {
	in := Info{ClusterID: ClusterID, Dir: n.Dir, PID: os.Getpid(), PIDs: map[pki.NodeID]int{}, APIs: map[pki.NodeID]string{},
		CA: filepath.Join(n.ClusterDir, "ca", "ca.pem"), Backend: n.credentials("backend", Backend),
		Operators: map[string]Credentials{}, SoftHSM: n.SoftHSMConf}
	n.mu.Lock()
	for id, p := range n.procs {
		in.PIDs[id] = p.cmd.Process.Pid
	}
	n.mu.Unlock()
	for id, a := range n.APIs {
		in.APIs[id] = "https://" + a
	}
	for _, o := range Operators {
		in.Operators[o] = n.credentials("operators", o)
	}
	if n.ETH != nil {
		in.ETHRPC, in.ETHNode, in.ETHPID = n.ETH.URL(), n.ETH.Node, n.ETH.PID()
		in.Token = n.Token.Hex()
	}
	if n.BTC != nil {
		in.BTCRPC = n.BTC.Host
	}
	return in
}

func (n *Net) credentials(kind, name string) Credentials {
	d := filepath.Join(n.ClusterDir, kind, name)
	return Credentials{Name: name, Cert: filepath.Join(d, "cert.pem"), Key: filepath.Join(d, "cert.key"), DeviceKey: filepath.Join(d, "device.key")}
}

func (n *Net) writeInfo() error {
	b, err := json.MarshalIndent(n.Info(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(n.InfoFile(), append(b, '\n'), 0o600)
}
