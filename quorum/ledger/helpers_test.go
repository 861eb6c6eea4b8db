package ledger

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/quorum/ledger/raftnet"
)

// Generous raft timing: these tests run while other packages' tests saturate
// both cores.
const (
	testHeartbeat = 1500 * time.Millisecond
	testElection  = 1500 * time.Millisecond
	testLease     = 750 * time.Millisecond
	waitFor       = 60 * time.Second
)

// testEvaluator is a small deterministic policy: the destination must be on the
// wallet's allowlist and effective; cold wallets route cold; a wallet with
// threshold t needs t approvals... simplified to a fixed count per test.
type testEvaluator struct{ approvals int }

func (e testEvaluator) Evaluate(st *State, r *Request, now time.Time) (Decision, error) {
	w := st.Wallets[r.Wallet]
	if w == nil {
		return Decision{}, fmt.Errorf("no wallet %q", r.Wallet)
	}
	route := RouteHot
	if w.Cold {
		route = RouteCold
	}
	if r.Destination != "" {
		a := st.Allowlist[allowKey(r.Wallet, r.Destination)]
		if a == nil || now.Before(a.EffectiveAt) {
			return Decision{Allow: false, Reason: "destination not allowlisted", RulesHash: st.ActiveRules}, nil
		}
	}
	return Decision{Allow: true, Route: route, ApprovalsRequired: e.approvals, RulesHash: st.ActiveRules}, nil
}

// approvalDigest is the test stand-in for quorum's canonical digest.
func approvalDigest(r *Request, reject bool, expiry time.Time) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "test-approval\x00%s\x00%s\x00%t\x00%d", r.ID, r.PayloadHash, reject, expiry.UnixNano())
	return h.Sum(nil)
}

type ed25519Verifier struct{}

func (ed25519Verifier) VerifyApproval(st *State, r *Request, a *Approval, _ time.Time) error {
	d := st.Operators[a.Operator].Devices[a.Device]
	if len(d.PublicKey) != ed25519.PublicKeySize || !ed25519.Verify(d.PublicKey, approvalDigest(r, a.Reject, a.Expiry), a.Signature) {
		return errors.New("bad signature")
	}
	return nil
}

type testPKI struct {
	ca *raftnet.CA
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := raftnet.NewCA("test cluster", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca}
}

func (p *testPKI) node(t testing.TB, id string) raftnet.Config {
	t.Helper()
	c, k, err := p.ca.IssueNode(id, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := raftnet.LoadConfig(c, k, p.ca.PEM())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// faultTransport wraps a raft transport and drops RPCs to blocked peers
// (returning an error), or all RPCs when isolated. Partition a node by
// isolating it and blocking it on every other node.
type faultTransport struct {
	raft.Transport
	mu       sync.Mutex
	blocked  map[raft.ServerAddress]bool
	isolated bool
}

var errPartitioned = errors.New("test: partitioned")

func (f *faultTransport) cut(target raft.ServerAddress) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isolated || f.blocked[target]
}

func (f *faultTransport) setIsolated(v bool) {
	f.mu.Lock()
	f.isolated = v
	f.mu.Unlock()
}

func (f *faultTransport) setBlocked(addr string, v bool) {
	f.mu.Lock()
	if f.blocked == nil {
		f.blocked = map[raft.ServerAddress]bool{}
	}
	f.blocked[raft.ServerAddress(addr)] = v
	f.mu.Unlock()
}

func (f *faultTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	// No pipelining, so every append goes through AppendEntries below.
	return nil, raft.ErrPipelineReplicationNotSupported
}

func (f *faultTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if f.cut(target) {
		return errPartitioned
	}
	return f.Transport.AppendEntries(id, target, args, resp)
}

func (f *faultTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if f.cut(target) {
		return errPartitioned
	}
	return f.Transport.RequestVote(id, target, args, resp)
}

func (f *faultTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if f.cut(target) {
		return errPartitioned
	}
	return f.Transport.(raft.WithPreVote).RequestPreVote(id, target, args, resp)
}

func (f *faultTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if f.cut(target) {
		return errPartitioned
	}
	return f.Transport.InstallSnapshot(id, target, args, resp, data)
}

func (f *faultTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if f.cut(target) {
		return errPartitioned
	}
	return f.Transport.TimeoutNow(id, target, args, resp)
}

func (f *faultTransport) Close() error {
	if c, ok := f.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

var (
	_ raft.WithPreVote = (*faultTransport)(nil)
	_ raft.WithClose   = (*faultTransport)(nil)
)

type node struct {
	id    string
	dir   string
	addr  string
	s     *Store
	fault *faultTransport
}

type cluster struct {
	t     testing.TB
	pki   *testPKI
	nodes []*node
	eval  Evaluator
}

func testConfig(id, dir, bind string, tls raftnet.Config, eval Evaluator) Config {
	cfg := Config{
		NodeID: id, Dir: dir, Bind: bind, TLS: tls,
		Evaluator: eval, Verifier: ed25519Verifier{},
		HeartbeatTimeout: testHeartbeat, ElectionTimeout: testElection, LeaderLeaseTimeout: testLease,
		ApplyTimeout: 20 * time.Second,
	}
	if os.Getenv("LEDGER_TEST_RAFTLOG") != "" {
		cfg.RaftLog = os.Stderr
	}
	return cfg
}

// startNode opens (or reopens, keeping dir and address) a node.
func (c *cluster) startNode(n *node, bind string) {
	c.t.Helper()
	cfg := testConfig(n.id, n.dir, bind, c.pki.node(c.t, n.id), c.eval)
	n.fault = nil
	cfg.WrapTransport = func(tr raft.Transport) raft.Transport {
		n.fault = &faultTransport{Transport: tr}
		return n.fault
	}
	s, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("open %s: %v", n.id, err)
	}
	n.s = s
	n.addr = s.Addr()
	c.t.Cleanup(func() { _ = s.Close() })
}

// newCluster starts size nodes, bootstraps n1 and joins the rest.
func newCluster(t testing.TB, size int, eval Evaluator) *cluster {
	t.Helper()
	c := &cluster{t: t, pki: newPKI(t), eval: eval}
	for i := 1; i <= size; i++ {
		n := &node{id: fmt.Sprintf("n%d", i), dir: t.TempDir()}
		c.startNode(n, "127.0.0.1:0")
		c.nodes = append(c.nodes, n)
	}
	if err := c.nodes[0].s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	c.waitLeader(c.nodes[:1])
	for i, n := range c.nodes[1:] {
		c.retryOnLeaderAmong(c.nodes[:i+1], func(l *Store) error { return l.Join(context.Background(), n.id, n.s.Addr()) })
	}
	c.waitConverged(c.nodes...)
	return c
}

// poll calls fn until it returns nil or the deadline passes.
func poll(t testing.TB, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}

// waitLeader waits until exactly one of the given nodes (all when nil) leads
// and the others agree on it; it returns the leader.
func (c *cluster) waitLeader(among []*node) *node {
	c.t.Helper()
	if among == nil {
		among = c.nodes
	}
	var leader *node
	poll(c.t, "a leader", func() error {
		leader = nil
		for _, n := range among {
			if n.s != nil && n.s.IsLeader() {
				if leader != nil {
					return errors.New("two leaders")
				}
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, n := range among {
			if id, _ := n.s.Leader(); id != leader.id {
				return fmt.Errorf("%s sees leader %q, want %s", n.id, id, leader.id)
			}
		}
		return nil
	})
	return leader
}

// retryOnLeader runs fn on the current leader, retrying on leadership change.
func (c *cluster) retryOnLeader(fn func(*Store) error) {
	c.t.Helper()
	poll(c.t, "a write on the leader", func() error {
		l := c.waitLeader(c.live())
		err := fn(l.s)
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrTimeout) {
			return err
		}
		if err != nil {
			c.t.Fatalf("write failed: %v", err)
		}
		return nil
	})
}

func (c *cluster) live() []*node {
	var out []*node
	for _, n := range c.nodes {
		if n.s != nil {
			out = append(out, n)
		}
	}
	return out
}

// waitConverged waits until the nodes applied the same index with the same
// FSM hash.
func (c *cluster) waitConverged(nodes ...*node) [32]byte {
	c.t.Helper()
	var h0 [32]byte
	poll(c.t, "nodes to converge", func() error {
		var idx uint64
		for i, n := range nodes {
			var h [32]byte
			var at uint64
			if err := n.s.ReadLocal(func(st *State) error {
				var err error
				h, err = st.Hash()
				at = st.Index
				return err
			}); err != nil {
				return err
			}
			if n.s.AppliedIndex() < n.s.LastIndex() {
				return fmt.Errorf("%s applied %d of %d", n.id, n.s.AppliedIndex(), n.s.LastIndex())
			}
			if i == 0 {
				h0, idx = h, at
				continue
			}
			if at != idx || h != h0 {
				return fmt.Errorf("%s at index %d hash %x, %s at %d hash %x", nodes[0].id, idx, h0[:4], n.id, at, h[:4])
			}
		}
		return nil
	})
	return h0
}

// operator is an enrolled test operator with an ed25519 device.
type operator struct {
	id  string
	dev string
	key ed25519.PrivateKey
}

func (o operator) approve(r *Request, reject bool, expiry time.Time) Approve {
	return Approve{RequestID: r.ID, Operator: o.id, Device: o.dev, Reject: reject,
		Signature: ed25519.Sign(o.key, approvalDigest(r, reject, expiry)), Expiry: expiry}
}

func newOperator(t testing.TB, id string) operator {
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return operator{id: id, dev: id + "-yubikey", key: k}
}

// seed enrolls operators and a hot and a cold wallet with allowlisted
// destination "0xdest".
func (c *cluster) seed(ops ...operator) {
	c.t.Helper()
	ctx := context.Background()
	c.retryOnLeader(func(l *Store) error {
		for _, o := range ops {
			if _, err := l.Propose(ctx, CmdOperatorEnroll, "admin", OperatorEnroll{ID: o.id, Roles: []string{"approver"}, Device: o.dev, Key: o.key.Public().(ed25519.PublicKey)}); err != nil && !errors.Is(err, ErrInvalid) {
				return err
			}
		}
		for _, w := range []Wallet{{ID: "hot", Chain: "eth", Committee: []string{"n1", "n2", "n3"}, Threshold: 2}, {ID: "cold", Chain: "btc", Committee: []string{"c1", "c2", "c3"}, Threshold: 2, Cold: true}} {
			if _, err := l.Propose(ctx, CmdWalletSet, "admin", WalletSet{w}); err != nil {
				return err
			}
			if _, err := l.Propose(ctx, CmdAllowAdd, "admin", AllowAdd{Wallet: w.ID, Address: "0xdest"}); err != nil {
				return err
			}
		}
		return nil
	})
}

func createCmd(id string, nonce uint64) RequestCreate {
	payload := []byte("unsigned-tx:" + id)
	sum := sha256.Sum256(payload)
	n := nonce
	return RequestCreate{ID: id, Wallet: "hot", Destination: "0xdest", Amount: "1", Payload: payload,
		PayloadHash: fmt.Sprintf("%x", sum), Nonce: &n, ExpiresAt: time.Now().Add(time.Hour)}
}
