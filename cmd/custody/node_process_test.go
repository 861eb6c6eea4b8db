package main

// Process tests: real `custody node run` processes on 127.0.0.1, each with
// its own SoftHSM token, against a simulated chain this test process
// serves over HTTP JSON-RPC (chains/eth.NewServed).
//
// The custody binary is this test binary: TestMain runs the CLI instead of
// the tests when CUSTODY_TEST_EXEC=1 (no separate build). Every HSM step
// runs in such a child with the cluster's own SOFTHSM2_CONF: the PKCS#11
// library is a process singleton and other tests of this package use
// another SoftHSM config.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/leaktest"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/tss/tsstest"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

const (
	// execEnv makes the test binary run the CLI (os.Args[1:]) and exit.
	execEnv = "CUSTODY_TEST_EXEC"
	// preparamsSlotEnv ("i/n") hands a child node run the committed
	// pre-params fixtures i, i+n, i+2n, ... (nodes of one keygen must not
	// share pre-params).
	preparamsSlotEnv = "CUSTODY_TEST_PREPARAMS_SLOT"
	// devnetFixturesEnv makes a child `custody devnet` run its children as
	// the CLI too and hand its nodes pre-params fixtures.
	devnetFixturesEnv = "CUSTODY_TEST_DEVNET_FIXTURES"
)

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		if slot := os.Getenv(preparamsSlotEnv); slot != "" {
			nodeTestOptions = func(o *daemon.Options) error {
				g, err := fixtureGenerator(slot)
				o.PreParams = g
				return err
			}
		}
		if os.Getenv(devnetFixturesEnv) == "1" {
			devnetPreParamsCache = func() string { return "" }
			devnetEnv = func() []string { return []string{execEnv + "=1"} }
			devnetNodeEnv = func(i, n int) []string { return []string{fmt.Sprintf("%s=%d/%d", preparamsSlotEnv, i, n)} }
		}
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	quickRaceExit()
	// testscript runs "custody" in scripts as this binary under that
	// name; otherwise the tests run, and a hang names the tests still
	// running at the end of the output.
	testscript.Main(watched{m}, map[string]func(){
		"custody": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// quickRaceExit shortens the race detector's pause at exit in every child
// this test binary starts (they inherit the environment; testscript passes
// GORACE on): a binary built with -race sleeps GORACE's atexit_sleep_ms,
// 1 s by default, before it exits, to let racing goroutines be reported.
// The package's tests run the binary as the CLI well over a hundred times
// (every provisioning step, every testscript command, every node stopped),
// and each waited that second. 10 ms still lets goroutines that are about
// to race do so; a race reported in a child still makes it exit 66. A
// GORACE that sets atexit_sleep_ms is left as it is.
func quickRaceExit() {
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		_ = os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=10"))
	}
}

// watched runs the tests under ledgertest's watchdog.
type watched struct{ m *testing.M }

func (w watched) Run() int { return ledgertest.Run(w.m, 12*time.Minute) }

func fixtureGenerator(slot string) (preparams.Generator, error) {
	is, ns, _ := strings.Cut(slot, "/")
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return nil, fmt.Errorf("%s: want i/n, got %q", preparamsSlotEnv, slot)
	}
	return tsstest.FixtureSource(i, n), nil
}

var procNodes = []pki.NodeID{"n1", "n2", "n3", "n4"}

const procClusterID = "proc-test"

// procSessionTimeout is the nodes' tss.session_timeout.
const procSessionTimeout = 20 * time.Second

// procRules: one hot ETH wallet, two approvals, no allowlist.
const procRules = `version: 1
assets:
  ETH: {decimals: 18}
allowlist:
  cooling_off: 24h
  approvals: 2
  roles: [admin, approver]
lock:
  unlock_delay: 1h
wallets:
  - name: eth-hot
    wallets: [eth-hot-1]
    asset: ETH
    class: hot
    allowlist_required: false
    limits:
      per_tx: "10"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
`

// procCluster is a cluster made with the real CLI: softhsm init, hsm
// init-kek, cluster init; node configs edited to the served chain.
type procCluster struct {
	// t is the test the cluster reports to: its own test, or the subtest
	// of it that runs (sub); root is its own test, which owns the node
	// processes and every cleanup.
	t, root *testing.T
	dir     string
	conf    string // SOFTHSM2_CONF
	pinFile string
	soPIN   string // the tokens' SO PIN file
	serials map[pki.NodeID]string
	chain   *eth.Served
	funder  []byte // a funded account's key on the chain
	procs   map[pki.NodeID]*nodeProc
	rpc     *noderpc.Client
	keys    map[string]ed25519.PrivateKey // operators' and the backend's device keys
	hint    atomic.Value                  // pki.NodeID: the leader the running nodes report
	ctx     context.Context
}

type nodeProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// child runs the CLI in a child process with the cluster's SoftHSM env.
func (c *procCluster) child(env []string, args ...string) (int, string, string) {
	c.t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execEnv+"=1", "SOFTHSM2_CONF="+c.conf)
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

func (c *procCluster) mustChild(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.child(nil, args...)
	if code != 0 {
		c.t.Fatalf("custody %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// freeBase finds a base port with base..base+10*len(procNodes) free.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(400)*100
		ok := true
		var lns []net.Listener
		for k := range len(procNodes) {
			for off := range 5 { // raft, tss, rpc, api, metrics
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
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// newProcCluster makes the tokens (with KEKs), the cluster files and the
// node configs; it starts no node.
func newProcCluster(t *testing.T) *procCluster {
	t.Helper()
	softhsmtest.SharedEnv(t) // skip/fail rule when softhsm2 is missing
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	c := &procCluster{t: t, root: t, dir: t.TempDir(), serials: map[pki.NodeID]string{}, procs: map[pki.NodeID]*nodeProc{},
		keys: map[string]ed25519.PrivateKey{}, ctx: ctx}
	c.funder = crypto.Keccak256([]byte("proc-test-funder"))
	fk, _ := crypto.ToECDSA(c.funder)
	var err error
	c.chain, err = eth.NewServed(types.GenesisAlloc{crypto.PubkeyToAddress(fk.PublicKey): {Balance: ether(1000)}}, eth.ServeConfig{CommitOnSend: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.chain.Close() })

	labels := []string{"custody-nokek"} // a token without a KEK (refusal test)
	for _, id := range procNodes {
		labels = append(labels, "custody-"+string(id))
	}
	hsmDir := filepath.Join(c.dir, "hsm")
	c.conf = filepath.Join(hsmDir, "softhsm2.conf")
	var rep softhsmInitReport
	if err := json.Unmarshal([]byte(c.mustChild("softhsm", "init", "--dir", hsmDir, "--tokens", strings.Join(labels, ","), "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	c.conf, c.pinFile, c.soPIN = rep.Conf, rep.PINFile, rep.SOPINFile
	// Runs after every node process of the test was killed (cleanups run
	// in reverse): every line they logged is in the files.
	t.Cleanup(c.checkLogs)
	for _, tok := range rep.Tokens {
		c.serials[pki.NodeID(strings.TrimPrefix(tok.Label, "custody-"))] = tok.Serial
	}
	for _, id := range procNodes {
		c.mustChild("hsm", "init-kek", "--token-serial", c.serials[id], "--pin-file", c.pinFile)
	}

	// The default rules allowlist with a 24 h cooling-off, which members
	// count on their own clocks: these rules send to any address.
	rules := filepath.Join(c.dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(procRules), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(c.dir, "cluster")
	c.mustChild("cluster", "init", "--rules", rules, "--nodes", strconv.Itoa(len(procNodes)), "--out", out, "--cluster-id", procClusterID,
		"--operator", "alice=admin,approver", "--operator", "bob=admin,approver", "--operator", "carol=approver",
		"--backend", "exchange", "--eth-rpc", c.chain.URL(), "--eth-chain-id", "1337", "--base-port", strconv.Itoa(freeBase(t)))
	pin, err := os.ReadFile(c.pinFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range procNodes {
		nd := filepath.Join(out, "nodes", string(id))
		if err := os.WriteFile(filepath.Join(nd, "hsm.pin"), pin, 0o600); err != nil {
			t.Fatal(err)
		}
		// tss.session_timeout is also how long a new leader leaves a
		// claim of a leader that went away before it fails it (the
		// LeaderStopped subtest waits that long); a 2-party session here
		// takes 1-2 s under -race on a loaded machine.
		c.editConfig(id, func(s string) string {
			s = strings.Replace(s, "network: chain-1337", "network: devnet", 1)
			s = strings.Replace(s, "    pin_file: hsm.pin", "    pin_file: hsm.pin\n    token_serial: \""+c.serials[id]+"\"", 1)
			return strings.Replace(s, "session_timeout: 2m0s", "session_timeout: "+procSessionTimeout.String(), 1)
		})
	}
	for _, name := range []string{"alice", "bob", "carol"} {
		c.keys[name] = readDeviceKey(t, filepath.Join(out, "operators", name, "device.key"))
	}
	c.keys["exchange"] = readDeviceKey(t, filepath.Join(out, "backend", "exchange", "device.key"))

	cfg, err := daemon.LoadConfig(c.config("n1"))
	if err != nil {
		t.Fatal(err)
	}
	ident, err := cfg.Identity()
	if err != nil {
		t.Fatal(err)
	}
	peers := map[pki.NodeID]string{"n1": cfg.Listen.RPC}
	for _, p := range cfg.Peers {
		peers[p.ID] = p.RPC
	}
	c.rpc, err = noderpc.NewClient(noderpc.ClientConfig{Self: "n1", Identity: ident, Peers: peers,
		Authorize: func(p pki.Peer) error {
			if _, ok := peers[p.Node()]; !ok || p.Role != pki.RoleNode {
				return fmt.Errorf("not a node of the cluster: %s", p.ID)
			}
			return nil
		},
		Leader: func() (pki.NodeID, string) { id, _ := c.hint.Load().(pki.NodeID); return id, "" }, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.rpc.Close)
	return c
}

// checkLogs fails the test for any secret in any log a `node run` of the
// test wrote (every line of every process, refusals included): the HSM
// PINs, every private key file cluster init wrote (CA, nodes, operators'
// and the backend's TLS keys), the device keys, the sealed shares the
// nodes' keygen wrote. (The unsealed shares exist only inside the node
// processes; the daemon tests look for them in their in-process logs.)
func (c *procCluster) checkLogs() {
	c.t.Helper()
	var s leaktest.Secrets
	for name, path := range map[string]string{"the HSM user PIN": c.pinFile, "the HSM SO PIN": c.soPIN} {
		if b, err := os.ReadFile(path); err == nil {
			s.String(name, string(b))
		}
	}
	cluster := filepath.Join(c.dir, "cluster")
	keys, _ := filepath.Glob(filepath.Join(cluster, "*", "*", "*.key"))
	keys = append(keys, filepath.Join(cluster, "ca", "ca.key"))
	for _, path := range keys {
		if b, err := os.ReadFile(path); err == nil {
			rel, _ := filepath.Rel(cluster, path)
			s.PEM(rel, b)
		}
	}
	for name, k := range c.keys {
		s.PrivateKey(name+"'s device key", k)
	}
	sealed, _ := filepath.Glob(filepath.Join(cluster, "nodes", "*", "data", "shares", "*.share"))
	for _, path := range sealed {
		if b, err := os.ReadFile(path); err == nil {
			s.Bytes("a sealed share", b)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	if names := s.Names(); len(logs) == 0 || !slices.Contains(names, "the HSM user PIN") || !slices.Contains(names, filepath.Join("nodes", "n1", "node.key")) {
		c.t.Errorf("nothing to check: %d logs, secrets %v", len(logs), names)
	}
	for _, path := range logs {
		if b, err := os.ReadFile(path); err == nil {
			s.Check(c.t, filepath.Base(path), b)
		}
	}
}

// metricsGet sends GET path to node id's metrics listener (listen.metrics
// of the config cluster init wrote).
func (c *procCluster) metricsGet(id pki.NodeID, path string) (int, string, error) {
	cfg, err := daemon.LoadConfig(c.config(id))
	if err != nil {
		return 0, "", err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + cfg.Listen.Metrics + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func readDeviceKey(t *testing.T, path string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := quorum.ParseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kf.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (c *procCluster) config(id pki.NodeID) string {
	return filepath.Join(c.dir, "cluster", "nodes", string(id), "config.yaml")
}

func (c *procCluster) editConfig(id pki.NodeID, f func(string) string) {
	c.t.Helper()
	b, err := os.ReadFile(c.config(id))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(c.config(id), []byte(f(string(b))), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// sub runs f as the subtest name of the cluster's test, c reporting to it
// meanwhile. The nodes it starts outlive it: they are the cluster's test's.
func (c *procCluster) sub(name string, f func(t *testing.T)) bool {
	parent := c.t
	return parent.Run(name, func(t *testing.T) {
		c.t = t
		defer func() { c.t = parent }()
		f(t)
	})
}

// start runs `custody node run` for id; its stderr (JSON log lines) goes
// to a file shown when the cluster's test fails. Its cleanup kills it.
func (c *procCluster) start(id pki.NodeID) *nodeProc {
	c.t.Helper()
	slot := 0
	for i, x := range procNodes {
		if x == id {
			slot = i
		}
	}
	logPath := filepath.Join(c.dir, fmt.Sprintf("%s-%d.log", id, time.Now().UnixNano()))
	lf, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "node", "run", "--config", c.config(id), "--drain", "10s")
	cmd.Env = append(os.Environ(), execEnv+"=1", "SOFTHSM2_CONF="+c.conf, fmt.Sprintf("%s=%d/%d", preparamsSlotEnv, slot, len(procNodes)))
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &nodeProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); _ = lf.Close(); close(p.done) }()
	c.procs[id] = p
	c.root.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if c.root.Failed() {
			b, _ := os.ReadFile(logPath)
			c.root.Logf("%s log (%s):\n%s", id, logPath, tail(string(b), 40))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// signal sends sig to node id's process.
func (c *procCluster) signal(id pki.NodeID, sig syscall.Signal) {
	c.t.Helper()
	if err := c.procs[id].cmd.Process.Signal(sig); err != nil {
		c.t.Fatal(err)
	}
}

// wait waits for node id's process to exit and returns its exit code.
func (c *procCluster) wait(id pki.NodeID, d time.Duration) int {
	c.t.Helper()
	p := c.procs[id]
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		c.t.Fatalf("%s did not exit within %s", id, d)
		return -1
	}
}

func (c *procCluster) poll(what string, fn func() error) {
	c.t.Helper()
	ledgertest.Poll(c.t, what, fn)
}

// leader is the node the running nodes agree leads.
func (c *procCluster) leader() pki.NodeID {
	c.t.Helper()
	var running []pki.NodeID
	for _, id := range procNodes {
		if p := c.procs[id]; p != nil && !exited(p) {
			running = append(running, id)
		}
	}
	return c.leaderAmong(running)
}

func exited(p *nodeProc) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// follower is a running node that does not lead.
func (c *procCluster) follower() pki.NodeID {
	c.t.Helper()
	l := c.leader()
	for _, id := range procNodes {
		if p := c.procs[id]; id != l && p != nil && !exited(p) {
			return id
		}
	}
	c.t.Fatal("no running follower")
	return ""
}

// submit sends cmd to a follower's node RPC as a client of it: the test
// acts with n1's certificate, so it asks the follower to forward by
// submitting there (the client follows not-leader answers).
func (c *procCluster) submit(actor string, cmd ledger.Command) ledger.Outcome {
	c.t.Helper()
	var out ledger.Outcome
	c.leader()
	c.poll("submit "+cmd.Type(), func() error {
		var err error
		out, err = c.rpc.Submit(c.ctx, actor, cmd)
		return err
	})
	return out
}

func (c *procCluster) sign(signer string, subject string, payload quorum.Hash, dec quorum.Decision) quorum.Approval {
	c.t.Helper()
	k := c.keys[signer]
	dev := quorum.DeviceID(quorum.DeviceEd25519, k.Public().(ed25519.PublicKey))
	a, err := quorum.Sign(quorum.Statement{ClusterID: procClusterID, RequestID: subject, PayloadHash: payload, Decision: dec,
		Expiry: time.Now().Add(time.Hour).Truncate(time.Second)}, dev, k, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return a
}

func ether(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e18)) }

// logHas reports whether node id's latest log has a line with msg.
func (c *procCluster) logHas(id pki.NodeID, msg string) bool {
	f, err := os.Open(c.procs[id].log)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == msg {
			return true
		}
	}
	return false
}

var (
	_ = amount.FromBig
	_ = policy.Withdrawal{}
	_ = common.Address{}
)
