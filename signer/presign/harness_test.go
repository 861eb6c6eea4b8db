package presign

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

func TestMain(m *testing.M) {
	if _, err := tsstest.LoadFixtures(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// testDeadline only bounds hangs (tss-lib under -race on 2 busy cores).
const testDeadline = tsstest.Deadline

// fakeClock is the injected clock: tests move time, never sleep.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// wallet is one keygen'd wallet on engines whose transports are Holds.
type wallet struct {
	name    string
	ids     []pki.NodeID
	engines map[pki.NodeID]*tss.Engine
	holds   map[pki.NodeID]*Hold
	shares  map[pki.NodeID]*tss.Share
	pub     []byte
}

func nodeIDs(n int) []pki.NodeID { return tsstest.Nodes("node", n) }

func newWallet(t testing.TB, name string, n, threshold int) *wallet {
	w := &wallet{name: name, ids: nodeIDs(n), engines: map[pki.NodeID]*tss.Engine{},
		holds: map[pki.NodeID]*Hold{}}
	net := tss.NewMemNetwork()
	// The wallet lives for the whole test binary: its engines are not
	// closed at the creating test's cleanup.
	c := tsstest.NewCommittee(tsstest.NoCleanup(t), w.ids, func(id pki.NodeID) tss.Transport {
		w.holds[id] = NewHold(net.Endpoint(id))
		return w.holds[id]
	}, nil)
	w.engines = c.Engines
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	shares, err := c.Keygen(ctx, name, nil, threshold, nil)
	if err != nil {
		t.Fatalf("keygen %s: %v", name, err)
	}
	w.shares = shares
	w.pub = w.shares[w.ids[0]].PubKey
	return w
}

// Wallets are generated once per test binary: keygen is the slow part.
var (
	w3Once, w5Once sync.Once
	w3, w5         *wallet
)

func wallet2of3(t testing.TB) *wallet {
	w3Once.Do(func() { w3 = newWallet(t, "wallet-2of3", 3, 1) })
	if w3 == nil {
		t.Fatal("2-of-3 keygen failed earlier")
	}
	return w3
}

func wallet3of5(t testing.TB) *wallet {
	w5Once.Do(func() { w5 = newWallet(t, "wallet-3of5", 5, 2) })
	if w5 == nil {
		t.Fatal("3-of-5 keygen failed earlier")
	}
	return w5
}

// refusals makes a node's check refuse (fault injection for abort tests).
type refusals struct {
	mu   sync.Mutex
	deny map[pki.NodeID]bool
}

func (r *refusals) set(id pki.NodeID, deny bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deny[id] = deny
}

// rig is one "process lifetime": fresh nodes, coordinator and pool on the
// wallet's engines. A restart is a new rig.
type rig struct {
	w     *wallet
	clock *fakeClock
	nodes map[pki.NodeID]*Presigner
	coord *MemBook
	pool  *Pool
	ref   *refusals
}

func newRig(t testing.TB, w *wallet, depth int) *rig {
	r := &rig{w: w, clock: &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)},
		nodes: map[pki.NodeID]*Presigner{}, coord: NewMemBook(), ref: &refusals{deny: map[pki.NodeID]bool{}}}
	members := map[pki.NodeID]Peer{}
	for _, id := range w.ids {
		n, err := NewPresigner(PresignerConfig{
			Engine: w.engines[id], Hold: w.holds[id],
			Share: func(name string) (*tss.Share, error) {
				if name != w.name {
					return nil, errors.New("no such wallet")
				}
				return w.shares[id], nil
			},
			Check: func(_ context.Context, req Request) error {
				r.ref.mu.Lock()
				defer r.ref.mu.Unlock()
				if r.ref.deny[id] {
					return errors.New("digest does not match the approved payload")
				}
				return nil
			},
			Now: r.clock.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		r.nodes[id] = n
		members[id] = n
		t.Cleanup(n.Close)
	}
	p, err := NewPool(PoolConfig{Members: members, Book: r.coord, Depth: depth, Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	r.pool = p
	return r
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

func digestOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// noneRunning waits until no presignature session of the rig runs.
func (r *rig) noneRunning(t testing.TB) {
	t.Helper()
	waitFor(t, "sessions to end", func() bool {
		for _, n := range r.nodes {
			if n.Running() != 0 {
				return false
			}
		}
		return true
	})
}

// noBlame asserts no node charged any peer to its failure budget.
func (w *wallet) noBlame(t testing.TB) {
	t.Helper()
	for id, e := range w.engines {
		for _, p := range w.ids {
			if f := e.Budget().Failures(p); f != 0 {
				t.Fatalf("%s charged %s with %d failures", id, p, f)
			}
		}
	}
}

func contextWithCancel(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	return ctx, cancel
}
