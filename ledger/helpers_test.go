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

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/ledger/raftnet"
)

// Generous raft timing: these tests run while other packages' tests saturate
// both cores.
const (
	testHeartbeat = 1500 * time.Millisecond
	testElection  = 1500 * time.Millisecond
	testLease     = 750 * time.Millisecond
	waitFor       = 60 * time.Second
)

const testCluster = "ledger-test"

// testRules: hot ETH wallet "hot" (2 approvals from approver/admin, no
// allowlist), cold BTC wallet "cold" (2 admins), and "allow" (allowlist
// required) for the allowlist/lock tests.
const testRules = `version: 1
assets:
  ETH: {decimals: 18}
  BTC: {decimals: 8}
allowlist:
  cooling_off: 1h
  approvals: 2
  roles: [admin, approver]
lock:
  unlock_delay: 1h
wallets:
  - name: eth-hot
    wallets: [hot]
    asset: ETH
    class: hot
    allowlist_required: false
    limits:
      per_tx: "10"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
  - name: eth-allow
    wallets: [allow]
    asset: ETH
    class: hot
    allowlist_required: true
    limits:
      per_tx: "10"
    approvals:
      - {min: "0", required: 1, roles: [approver, admin]}
  - name: btc-cold
    wallets: [cold]
    asset: BTC
    class: cold
    allowlist_required: false
    limits:
      per_tx: "100"
    approvals:
      - {min: "0", required: 2, roles: [admin]}
`

// operator is a test operator with one Ed25519 device (keys derived from the
// name, so failures reproduce).
type operator struct {
	id    string
	roles []quorum.Role
	kind  quorum.OperatorKind
	key   ed25519.PrivateKey
}

func (o operator) device() quorum.Device {
	pub := o.key.Public().(ed25519.PublicKey)
	return quorum.Device{ID: quorum.DeviceID(quorum.DeviceEd25519, pub), OperatorID: o.id, Kind: quorum.DeviceEd25519, PublicKey: pub, Status: quorum.DeviceActive}
}

func (o operator) sign(t testing.TB, requestID string, payload quorum.Hash, dec quorum.Decision, expiry time.Time) quorum.Approval {
	t.Helper()
	a, err := quorum.Sign(quorum.Statement{ClusterID: testCluster, RequestID: requestID, PayloadHash: payload, Decision: dec, Expiry: expiry.Truncate(time.Second)}, o.device().ID, o.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (o operator) approve(t testing.TB, r *Request, expiry time.Time) Approve {
	return Approve{RequestID: r.ID, Approval: o.sign(t, r.ID, r.PayloadHash, quorum.Approve, expiry)}
}

func (o operator) reject(t testing.TB, r *Request, expiry time.Time) Approve {
	return Approve{RequestID: r.ID, Approval: o.sign(t, r.ID, r.PayloadHash, quorum.Reject, expiry)}
}

func newOp(id string, kind quorum.OperatorKind, roles ...quorum.Role) operator {
	seed := sha256.Sum256([]byte("ledger-test-key/" + id))
	return operator{id: id, roles: roles, kind: kind, key: ed25519.NewKeyFromSeed(seed[:])}
}

var (
	alice   = newOp("alice", quorum.KindHuman, quorum.RoleAdmin)
	bob     = newOp("bob", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	carol   = newOp("carol", quorum.KindHuman, quorum.RoleAdmin)
	dave    = newOp("dave", quorum.KindHuman, quorum.RoleApprover)
	backend = newOp("backend", quorum.KindBackend, quorum.RoleInitiator)
	allOps  = []operator{alice, bob, carol, dave, backend}
)

func genesisCmd() Genesis {
	g := Genesis{ClusterID: testCluster, AdminQuorum: 2, Rules: []byte(testRules)}
	for _, o := range allOps {
		g.Operators = append(g.Operators, quorum.Operator{ID: o.id, Name: o.id, Kind: o.kind, Roles: o.roles, Status: quorum.StatusActive})
		g.Devices = append(g.Devices, o.device())
	}
	return g
}

var testWallets = []Wallet{
	{ID: "hot", Chain: "eth", Network: "devnet", Committee: []string{"n1", "n2", "n3"}, Threshold: 2},
	{ID: "allow", Chain: "eth", Network: "devnet", Committee: []string{"n1", "n2", "n3"}, Threshold: 2},
	{ID: "cold", Chain: "btc", Network: "regtest", Committee: []string{"c1", "c2", "c3"}, Threshold: 2},
}

// allSigners is a valid signer set of the test wallets "hot" and "allow"
// (threshold 2: three signers).
var allSigners = []string{"n1", "n2", "n3"}

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
	// tune, if set, adjusts every node's config before Open.
	tune func(*Config)
}

func testConfig(id, dir, bind string, tls raftnet.Config) Config {
	cfg := Config{
		NodeID: id, Dir: dir, Bind: bind, TLS: tls,
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
	cfg := testConfig(n.id, n.dir, bind, c.pki.node(c.t, n.id))
	if c.tune != nil {
		c.tune(&cfg)
	}
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
func newCluster(t testing.TB, size int, tune ...func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, pki: newPKI(t)}
	if len(tune) > 0 {
		c.tune = tune[0]
	}
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

// seed runs genesis and creates the test wallets.
func (c *cluster) seed() {
	c.t.Helper()
	ctx := context.Background()
	c.retryOnLeader(func(l *Store) error {
		if _, err := l.Propose(ctx, CmdGenesis, "ceremony", genesisCmd()); err != nil && !errors.Is(err, ErrInvalid) {
			return err
		}
		for _, w := range testWallets {
			if _, err := l.Propose(ctx, CmdWalletSet, "keygen", WalletSet{w}); err != nil {
				return err
			}
		}
		return nil
	})
}

func createCmd(id string, nonce uint64) RequestCreate {
	payload := []byte("unsigned-tx:" + id)
	n := nonce
	return RequestCreate{ID: id, Wallet: "hot", Asset: "ETH", Chain: "eth", Network: "devnet", To: "0xdest",
		Amount: amount.FromUint64(1000), Payload: payload, PayloadHash: quorum.Hash(sha256.Sum256(payload)),
		Nonce: &n, ExpiresAt: time.Now().Add(time.Hour)}
}
