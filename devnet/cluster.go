package devnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/pki"
)

// Rules are the devnet's policy: hot ETH, ERC-20 (TKN) and BTC wallets, 2
// approvals, an allowlist with a 5-second cooling-off (so the demo shows
// it passing), a 5-second unlock delay, and ETH above 2 routed cold; and
// rules for two cold wallets (ETHColdWallet, BTCColdWallet) that an
// offline ceremony may make and the admins register (custody ceremony
// keygen, custody wallet register): the story makes none.
const Rules = `version: 1
assets:
  ETH: {decimals: 18}
  BTC: {decimals: 8}
  TKN: {decimals: 6}
allowlist:
  cooling_off: 5s
  approvals: 2
  roles: [admin, approver]
lock:
  unlock_delay: 5s
wallets:
  - name: eth-hot
    wallets: [eth-hot-1]
    asset: ETH
    class: hot
    allowlist_required: true
    route: {cold_above: "2"}
    limits:
      per_tx: "10"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
  - name: tkn-hot
    wallets: [eth-hot-1]
    asset: TKN
    fee_asset: ETH
    class: hot
    allowlist_required: true
    limits:
      per_tx: "1000"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
  - name: btc-hot
    wallets: [btc-hot-1]
    asset: BTC
    class: hot
    allowlist_required: true
    limits:
      per_tx: "10"
      max_fee: "0.001"
      max_fee_rate: 50
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
  # cold wallets of offline ceremonies (ETHColdWallet, BTCColdWallet)
  - {name: eth-cold, wallets: [eth-cold-1], asset: ETH, class: cold, allowlist_required: true,
     limits: {per_tx: "100", max_fee: "0.01"}, approvals: [{min: "0", required: 2, roles: [approver, admin]}]}
  - {name: btc-cold, wallets: [btc-cold-1], asset: BTC, class: cold, allowlist_required: true,
     limits: {per_tx: "100", max_fee: "0.001", max_fee_rate: 50}, approvals: [{min: "0", required: 2, roles: [approver, admin]}]}
`

// child runs the custody binary with args and the devnet's environment; a
// non-zero exit is an error carrying the child's stderr.
func (n *Net) child(ctx context.Context, args ...string) ([]byte, error) {
	return n.childEnv(ctx, nil, args...)
}

// childEnv is child with env added to the devnet's environment.
func (n *Net) childEnv(ctx context.Context, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, n.cfg.Bin, args...)
	cmd.Env = append(n.env(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("custody %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func (n *Net) env() []string {
	env := append(os.Environ(), n.cfg.Env...)
	if n.SoftHSMConf != "" {
		env = append(env, "SOFTHSM2_CONF="+n.SoftHSMConf)
	}
	return env
}

// provisionTokens makes one SoftHSM2 token per node (and one for carol's
// device), each node token with its KEK.
func (n *Net) provisionTokens(ctx context.Context) error {
	labels := []string{"custody-carol-device"}
	for _, id := range n.Nodes {
		labels = append(labels, "custody-"+string(id))
	}
	out, err := n.child(ctx, "softhsm", "init", "--dir", filepath.Join(n.Dir, "hsm"), "--tokens", strings.Join(labels, ","), "-o", "json")
	if err != nil {
		return err
	}
	var rep struct {
		Conf    string `json:"conf"`
		PINFile string `json:"pin_file"`
		Tokens  []struct {
			Label  string `json:"label"`
			Serial string `json:"serial"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return fmt.Errorf("softhsm init's report: %w", err)
	}
	n.SoftHSMConf, n.pinFile = rep.Conf, rep.PINFile
	for _, t := range rep.Tokens {
		n.serials[t.Label] = t.Serial
	}
	for _, id := range n.Nodes {
		serial := n.serials["custody-"+string(id)]
		if serial == "" {
			return fmt.Errorf("no token for %s", id)
		}
		if _, err := n.child(ctx, "hsm", "init-kek", "--token-serial", serial, "--pin-file", n.pinFile); err != nil {
			return err
		}
	}
	n.progress("  %d SoftHSM2 tokens, a KEK in each node's (%s)", len(rep.Tokens), rep.Conf)
	return nil
}

// freeBase finds a base port with base..base+10*nodes+4 free on loopback.
func freeBase(nodes int) (int, error) {
	for range 100 {
		base := 20000 + rand.IntN(400)*100
		ok := true
		var lns []net.Listener
		for k := range nodes {
			for off := range 4 {
				ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+10*k+off)))
				if err != nil {
					ok = false
					break
				}
				lns = append(lns, ln)
			}
		}
		for _, ln := range lns {
			_ = ln.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no free range of loopback ports")
}

// initCluster runs `custody cluster init` and completes each node's
// config: its token serial and PIN file, the devnet's token contract, the
// btcd credentials.
func (n *Net) initCluster(ctx context.Context) error {
	rules := filepath.Join(n.Dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(Rules), 0o644); err != nil {
		return err
	}
	base, err := freeBase(len(n.Nodes))
	if err != nil {
		return err
	}
	n.ClusterDir = filepath.Join(n.Dir, "cluster")
	args := []string{"cluster", "init", "--rules", rules, "--nodes", strconv.Itoa(len(n.Nodes)), "--out", n.ClusterDir,
		"--cluster-id", ClusterID, "--backend", Backend, "--base-port", strconv.Itoa(base),
		"--eth-rpc", n.ETH.URL(), "--eth-chain-id", n.ETH.ChainID.String()}
	for _, o := range Operators {
		roles := "approver"
		if o != "carol" {
			roles = "admin,approver"
		}
		args = append(args, "--operator", o+"="+roles)
	}
	if n.BTC != nil {
		args = append(args, "--btc-rpc", n.BTC.Host, "--btc-network", "regtest")
	}
	if _, err := n.child(ctx, args...); err != nil {
		return err
	}
	pin, err := os.ReadFile(n.pinFile)
	if err != nil {
		return err
	}
	for _, id := range n.Nodes {
		dir := filepath.Join(n.ClusterDir, "nodes", string(id))
		if err := os.WriteFile(filepath.Join(dir, "hsm.pin"), pin, 0o600); err != nil {
			return err
		}
		if n.BTC != nil {
			if err := os.WriteFile(filepath.Join(dir, "btcd.pass"), []byte(n.BTC.Pass), 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "btcd-rpc.cert"), n.BTC.Cert, 0o644); err != nil {
				return err
			}
		}
		if err := n.editConfig(id, func(c *daemon.Config) {
			c.HSM.TokenSerial = n.serials["custody-"+string(id)]
			c.Chains.ETH.Network = "devnet"
			c.Chains.ETH.Tokens = []daemon.Token{{Symbol: "TKN", Contract: n.Token.Hex(), Decimals: 6}}
			// One set of pre-params each: four nodes making them at once
			// on a developer's machine is most of the devnet's start-up
			// (a node refills its set after a keygen uses it).
			c.TSS.PreParamsPool = 1
			c.TSS.PreParamsCache = n.cfg.PreParamsCache
			// Four nodes share a developer's cores while they make
			// pre-params and run keygens: raft's LAN defaults (1 s) then
			// elect new leaders mid-keygen, and every keygen that loses its
			// leader burns each member's only set of pre-params (minutes to
			// make again). Slower failure detection costs the devnet
			// nothing (it kills no node).
			c.Ledger.HeartbeatTimeout = daemon.Duration(3 * time.Second)
			c.Ledger.ElectionTimeout = daemon.Duration(3 * time.Second)
			c.Ledger.LeaderLeaseTimeout = daemon.Duration(2 * time.Second)
			if n.cfg.SessionTimeout > 0 {
				c.TSS.SessionTimeout = daemon.Duration(n.cfg.SessionTimeout)
			}
			if n.cfg.RateLimit != (daemon.RateLimit{}) {
				c.API.RateLimit = n.cfg.RateLimit
			}
			n.APIs[id] = c.Listen.API
		}); err != nil {
			return err
		}
	}
	n.progress("  cluster %s: %d nodes, operators %s, backend %s (%s)", ClusterID, len(n.Nodes), strings.Join(Operators, ", "), Backend, n.ClusterDir)
	return nil
}

// configFile is node id's config.
func (n *Net) configFile(id pki.NodeID) string {
	return filepath.Join(n.ClusterDir, "nodes", string(id), "config.yaml")
}

// editConfig rewrites node id's config through f; the result must be a
// config the node accepts.
func (n *Net) editConfig(id pki.NodeID, f func(*daemon.Config)) error {
	path := n.configFile(id)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var c daemon.Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	f(&c)
	out, err := yaml.Marshal(&c)
	if err != nil {
		return err
	}
	if _, err := daemon.ParseConfig(out, filepath.Dir(path)); err != nil {
		return fmt.Errorf("%s after the devnet's edits: %w", path, err)
	}
	header := fmt.Sprintf("# Node %s of the devnet (custody devnet); docs/config.md has every field.\n", id)
	return os.WriteFile(path, append([]byte(header), out...), 0o644)
}

// nodeProc is one `custody node run` process.
type nodeProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (p *nodeProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM (the node drains) and kills after grace.
func (p *nodeProc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startNodes starts every node and waits until each answers on its API
// port.
func (n *Net) startNodes(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(n.Dir, "logs"), 0o700); err != nil {
		return err
	}
	for i, id := range n.Nodes {
		if err := n.StartNode(id, i); err != nil {
			return err
		}
	}
	for _, id := range n.Nodes {
		if err := n.waitListening(ctx, id); err != nil {
			return err
		}
	}
	n.progress("  %d nodes running (logs in %s)", len(n.Nodes), filepath.Join(n.Dir, "logs"))
	return nil
}

// StartNode runs `custody node run` for node id (index i), its JSON log in
// logs/ID.log.
func (n *Net) StartNode(id pki.NodeID, i int) error {
	logPath := filepath.Join(n.Dir, "logs", string(id)+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.cfg.Bin, "node", "run", "--config", n.configFile(id), "--drain", "10s")
	cmd.Env = n.env()
	if n.cfg.NodeEnv != nil {
		cmd.Env = append(cmd.Env, n.cfg.NodeEnv(i, len(n.Nodes))...)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	// A devnet killed outright (a test timeout, kill -9) takes its nodes
	// with it instead of leaving them spinning; a normal stop drains them.
	// Pdeathsig fires when the OS thread that forked exits, not only the
	// process: Go ends a thread only when a goroutine exits locked to it
	// (runtime.LockOSThread), which nothing in this binary does.
	// btcdproc and gethproc rely on the same.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start %s: %w", id, err)
	}
	p := &nodeProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); _ = lf.Close(); close(p.done) }()
	n.mu.Lock()
	n.procs[id] = p
	n.mu.Unlock()
	return nil
}

// StopNode stops node id (SIGTERM, then a kill after grace).
func (n *Net) StopNode(id pki.NodeID, grace time.Duration) {
	n.mu.Lock()
	p := n.procs[id]
	delete(n.procs, id)
	n.mu.Unlock()
	if p != nil {
		p.stop(grace)
	}
}

// waitListening waits until node id accepts TCP connections on its API
// address, or its process exits (an error with the end of its log).
func (n *Net) waitListening(ctx context.Context, id pki.NodeID) error {
	n.mu.Lock()
	p := n.procs[id]
	n.mu.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", n.APIs[id], time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("node %s exited: %v\n%s", id, p.err, tailFile(p.log, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s does not listen on %s after 2 minutes\n%s", id, n.APIs[id], tailFile(p.log, 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tailFile is the last lines of a file, for an error.
func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
