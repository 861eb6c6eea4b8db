package ledgertest

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
)

// Raft timing generous enough for a loaded machine: tests run while other
// packages' tests saturate both cores.
const (
	Heartbeat = 1500 * time.Millisecond
	Election  = 1500 * time.Millisecond
	Lease     = 750 * time.Millisecond
	// Wait bounds every poll; it only limits hangs.
	Wait = 2 * time.Minute
	// WALSegmentSize is small so tests seal, rotate and truncate WAL
	// segments (production: 64 MiB).
	WALSegmentSize = 64 << 10
)

// Poll calls fn until it returns nil, failing t when Wait passes first.
func Poll(t testing.TB, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(Wait)
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

// PKI is a throw-away cluster CA.
type PKI struct {
	CA *pki.CA
}

// NewPKI creates a cluster CA valid for a day.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	ca, err := pki.NewCA("test cluster", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{CA: ca}
}

// Node issues a node certificate for id's NodeKey and returns its
// identity.
func (p *PKI) Node(t testing.TB, id pki.NodeID) pki.Identity {
	t.Helper()
	cert, key := p.NodePEM(t, id)
	ident, err := pki.LoadIdentity(cert, key, p.CA.PEM())
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

// NodePEM issues a node certificate for id's NodeKey and returns it and
// the key, PEM-encoded (for a node in another process).
func (p *PKI) NodePEM(t testing.TB, id pki.NodeID) (cert, key []byte) {
	t.Helper()
	k := NodeKey(id)
	c, err := p.CA.IssueNodeFor(id, k.Public(), time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return c, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// Node is one ledger node of a Cluster. Store is nil while it is stopped.
type Node struct {
	ID    pki.NodeID
	Dir   string
	Addr  string
	Store *ledger.Store
	Fault *Fault
	// Identity is the node certificate the node's raft runs under.
	Identity pki.Identity
	// Gate is the NodeGate of the node's raft stream (nil when the
	// cluster pins no genesis): other listeners of the node (the node RPC)
	// admit peers with its Authorize too.
	Gate *ledger.NodeGate
}

// Cluster is a set of ledger nodes on 127.0.0.1.
type Cluster struct {
	T     testing.TB
	PKI   *PKI
	Nodes []*Node
	// Tune, if set, adjusts every node's config before Open (a clock,
	// snapshot thresholds, the pinned genesis).
	Tune func(*ledger.Config)

	mu     sync.Mutex
	opened []*ledger.Store // every store started, for Forward
}

// Config is the test configuration of one node: the default log store with
// small WAL segments, generous raft timing, the raft log on stderr when
// LEDGER_TEST_RAFTLOG is set.
func Config(id pki.NodeID, dir string, stream raft.StreamLayer) ledger.Config {
	cfg := ledger.Config{
		NodeID: id, Dir: dir, Stream: stream,
		HeartbeatTimeout: Heartbeat, ElectionTimeout: Election, LeaderLeaseTimeout: Lease,
		ApplyTimeout: 20 * time.Second, WALSegmentSize: WALSegmentSize,
	}
	if os.Getenv("LEDGER_TEST_RAFTLOG") != "" {
		cfg.RaftLog = os.Stderr
	}
	return cfg
}

// New starts size nodes n1..n<size>, bootstraps n1, joins the rest and
// waits until they converge. tune (may be nil) adjusts every node's config.
func New(t testing.TB, size int, tune func(*ledger.Config)) *Cluster {
	t.Helper()
	c := &Cluster{T: t, PKI: NewPKI(t), Tune: tune}
	for i := 1; i <= size; i++ {
		n := &Node{ID: pki.NodeID(fmt.Sprintf("n%d", i)), Dir: t.TempDir()}
		c.StartNode(n, "127.0.0.1:0")
		c.Nodes = append(c.Nodes, n)
	}
	if err := c.Nodes[0].Store.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	c.WaitLeader(c.Nodes[:1])
	for i, n := range c.Nodes[1:] {
		c.OnLeaderAmong(c.Nodes[:i+1], func(l *ledger.Store) error { return l.Join(context.Background(), n.ID, n.Store.Addr()) })
	}
	c.WaitConverged(c.Nodes...)
	return c
}

// StartNode opens (or reopens, keeping its directory) n listening on bind.
// Its raft transport is wrapped in a Fault. When the tuned config pins a
// genesis, the node's stream layer is gated by a NodeGate.
func (c *Cluster) StartNode(n *Node, bind string) {
	c.T.Helper()
	n.Identity = c.PKI.Node(c.T, n.ID)
	cfg := Config(n.ID, n.Dir, nil)
	cfg.CheckpointSigner = NodeKey(n.ID)
	cfg.Forward = c.forward
	if c.Tune != nil {
		c.Tune(&cfg)
	}
	// A node pinning a genesis admits only raft peers of its node set, as
	// in production; without a pin any node certificate of the CA passes.
	var auth pki.Authorizer
	if cfg.Genesis != nil {
		cfg.Gate = ledger.NewNodeGate()
		auth = cfg.Gate.Authorize
	}
	stream, err := ledger.ListenStream(bind, n.Identity, auth)
	if err != nil {
		c.T.Fatalf("listen %s: %v", n.ID, err)
	}
	cfg.Stream = stream
	n.Fault = nil
	cfg.WrapTransport = func(tr raft.Transport) raft.Transport {
		n.Fault = &Fault{Transport: tr}
		return n.Fault
	}
	s, err := ledger.Open(cfg)
	if err != nil {
		c.T.Fatalf("open %s: %v", n.ID, err)
	}
	n.Store = s
	n.Gate = cfg.Gate
	n.Addr = s.Addr()
	c.mu.Lock()
	c.opened = append(c.opened, s)
	c.mu.Unlock()
	c.T.Cleanup(func() { _ = s.Close() })
}

// forward is every node's Config.Forward: it submits the command on the
// node that leads now (the daemon's node RPC does this over the network).
func (c *Cluster) forward(ctx context.Context, cmd ledger.Command) error {
	c.mu.Lock()
	stores := slices.Clone(c.opened)
	c.mu.Unlock()
	for _, s := range stores {
		if s.IsLeader() {
			_, err := s.Submit(ctx, "forwarded", cmd)
			return err
		}
	}
	return ledger.ErrNotLeader
}

// Stores returns the stores of the running nodes.
func (c *Cluster) Stores() []*ledger.Store {
	var out []*ledger.Store
	for _, n := range c.Live() {
		out = append(out, n.Store)
	}
	return out
}

// Live returns the running nodes.
func (c *Cluster) Live() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Store != nil {
			out = append(out, n)
		}
	}
	return out
}

// Others returns every node but x.
func (c *Cluster) Others(x *Node) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

// Isolate cuts (or restores) every raft link of n in both directions.
func (c *Cluster) Isolate(n *Node, on bool) {
	n.Fault.SetIsolated(on)
	for _, o := range c.Others(n) {
		if o.Fault != nil {
			o.Fault.SetBlocked(n.Addr, on)
		}
	}
}

// WaitLeader waits until exactly one of among (all running nodes when nil)
// leads and the others agree on it, and returns it.
func (c *Cluster) WaitLeader(among []*Node) *Node {
	c.T.Helper()
	if among == nil {
		among = c.Live()
	}
	var leader *Node
	Poll(c.T, "a leader", func() error {
		leader = nil
		for _, n := range among {
			if n.Store != nil && n.Store.IsLeader() {
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
			if id, _ := n.Store.Leader(); id != leader.ID {
				return fmt.Errorf("%s sees leader %q, want %s", n.ID, id, leader.ID)
			}
		}
		return nil
	})
	return leader
}

// Leader returns the store of the current leader among the running nodes.
func (c *Cluster) Leader() *ledger.Store {
	c.T.Helper()
	return c.WaitLeader(nil).Store
}

// OnLeader runs fn on the current leader, retrying while leadership moves or
// the outcome is unknown; any other error fails the test.
func (c *Cluster) OnLeader(fn func(*ledger.Store) error) {
	c.T.Helper()
	c.OnLeaderAmong(nil, fn)
}

// OnLeaderAmong is OnLeader with the leader elected among the given nodes
// (all running nodes when nil).
func (c *Cluster) OnLeaderAmong(among []*Node, fn func(*ledger.Store) error) {
	c.T.Helper()
	Poll(c.T, "a write on the leader", func() error {
		err := fn(c.WaitLeader(among).Store)
		if errors.Is(err, ledger.ErrNotLeader) || errors.Is(err, ledger.ErrTimeout) {
			return err
		}
		if err != nil {
			c.T.Fatalf("write failed: %v", err)
		}
		return nil
	})
}

// OnLeaderErr is OnLeader that lets fn's other errors (FSM refusals)
// through to the caller, which captured them.
func (c *Cluster) OnLeaderErr(fn func(*ledger.Store) error) {
	c.T.Helper()
	Poll(c.T, "a write on the leader", func() error {
		err := fn(c.WaitLeader(nil).Store)
		if errors.Is(err, ledger.ErrNotLeader) || errors.Is(err, ledger.ErrTimeout) {
			return err
		}
		return nil
	})
}

// Submit commits cmd as actor on the current leader and returns the outcome.
func (c *Cluster) Submit(ctx context.Context, actor string, cmd ledger.Command) ledger.Outcome {
	c.T.Helper()
	var out ledger.Outcome
	c.OnLeader(func(l *ledger.Store) error {
		var err error
		out, err = l.Submit(ctx, actor, cmd)
		return err
	})
	return out
}

// WaitConverged waits until the nodes applied the same index with the same
// state hash, and returns the hash.
func (c *Cluster) WaitConverged(nodes ...*Node) [32]byte {
	c.T.Helper()
	if len(nodes) == 0 {
		c.T.Fatal("ledgertest: WaitConverged of no nodes waits for nothing: pass c.Nodes...")
	}
	var h0 [32]byte
	Poll(c.T, "nodes to converge", func() error {
		var idx uint64
		for i, n := range nodes {
			var h [32]byte
			var at uint64
			if err := n.Store.ReadLocal(func(st *ledger.State) error {
				var err error
				h, err = st.Hash()
				at = st.Index
				return err
			}); err != nil {
				return err
			}
			if n.Store.AppliedIndex() < n.Store.LastIndex() {
				return fmt.Errorf("%s applied %d of %d", n.ID, n.Store.AppliedIndex(), n.Store.LastIndex())
			}
			if i == 0 {
				h0, idx = h, at
				continue
			}
			if at != idx || h != h0 {
				return fmt.Errorf("%s at index %d hash %x, %s at %d hash %x", nodes[0].ID, idx, h0[:4], n.ID, at, h[:4])
			}
		}
		return nil
	})
	return h0
}
