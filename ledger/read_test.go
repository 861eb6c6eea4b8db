package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
)

// followerRead is a follower's linearizable read: the leader's read index
// (in-process here; over the node API in a daemon), then the follower's own
// ReadAtLeast.
func followerRead(c *ledgertest.Cluster, ctx context.Context, f *ledgertest.Node, among []*ledgertest.Node, fn func(*State) error) error {
	c.T.Helper()
	var idx uint64
	ledgertest.Poll(c.T, "a read index from the leader", func() error {
		l := c.WaitLeader(among)
		var err error
		idx, err = l.Store.ReadIndex(ctx)
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrTimeout) {
			return err
		}
		if err != nil {
			c.T.Fatalf("read index: %v", err)
		}
		return nil
	})
	return f.Store.ReadAtLeast(ctx, idx, fn)
}

// TestFollowerLinearizableRead: a write acknowledged by the leader is visible
// through a follower's read (leader's read index, follower's ReadAtLeast);
// a partitioned follower's read does not answer from its stale state but
// waits until its deadline and errors; after healing it answers.
func TestFollowerLinearizableRead(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	ctx := context.Background()
	l := c.WaitLeader(nil)
	followers := c.Others(l)

	// Acknowledged on the leader, then read at once on each follower.
	for i, f := range followers {
		id := fmt.Sprintf("lin-%d", i)
		create := createCmd(id, uint64(i)) // one command for every retry
		c.OnLeader(func(s *Store) error {
			_, _, err := s.CreateRequest(ctx, "backend", create)
			return err
		})
		var saw *Request
		if err := followerRead(c, ctx, f, nil, func(st *State) error {
			saw = st.Requests[id].Clone()
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", f.ID, err)
		}
		if saw == nil || saw.Status != StatusAwaitingApprovals {
			t.Fatalf("%s read %s as %+v right after the leader acknowledged it", f.ID, id, saw)
		}
	}

	// Cut one follower off; the majority commits a write it cannot see.
	cut := followers[0]
	c.Isolate(cut, true)
	rest := c.Others(cut)
	whileCut := createCmd("while-cut", 50) // one command for every retry
	c.OnLeaderAmong(rest, func(s *Store) error {
		_, _, err := s.CreateRequest(ctx, "backend", whileCut)
		return err
	})
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	called := false
	err := followerRead(c, dctx, cut, rest, func(st *State) error {
		called = true
		return nil
	})
	cancel()
	if !errors.Is(err, ErrNotCaughtUp) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("partitioned follower's read: %v, want ErrNotCaughtUp and DeadlineExceeded", err)
	}
	if called {
		t.Fatal("partitioned follower ran the read on stale state")
	}
	// Its own (non-linearizable) state really is stale.
	_ = cut.Store.ReadLocal(func(st *State) error {
		if st.Requests["while-cut"] != nil {
			t.Fatal("partitioned follower applied a write it could not receive")
		}
		return nil
	})
	if _, err := cut.Store.ReadIndex(ctx); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("ReadIndex on a follower: %v, want ErrNotLeader", err)
	}

	// Healed: the same read answers with the write.
	c.Isolate(cut, false)
	var saw bool
	if err := followerRead(c, ctx, cut, nil, func(st *State) error {
		saw = st.Requests["while-cut"] != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !saw {
		t.Fatal("healed follower's linearizable read misses the write")
	}
}

// TestInjectedClockDrivesLedgerTime: Config.Clock is the command time; a
// clock stepping back does not move the FSM's clock back, and an expiry is
// judged on ledger time, not the wall clock.
func TestInjectedClockDrivesLedgerTime(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	c := newCluster(t, 1, func(cfg *Config) { cfg.Clock = clock })
	seed(c)
	ctx := context.Background()
	s := c.Nodes[0].Store
	ledgerClock := func() time.Time {
		var at time.Time
		if err := s.ReadLinearizable(ctx, func(st *State) error { at = st.Clock; return nil }); err != nil {
			t.Fatal(err)
		}
		return at
	}
	if got := ledgerClock(); !got.Equal(clock()) {
		t.Fatalf("ledger clock %s, injected %s", got, clock())
	}
	cmd := initiated(createCmd("clk", 1), backend, clock().Add(time.Hour))
	cmd.ExpiresAt = clock().Add(time.Hour) // years after the wall clock's now
	if _, _, err := s.CreateRequest(ctx, "backend", cmd); err != nil {
		t.Fatal(err)
	}
	t0 := clock()
	set(t0.Add(-24 * time.Hour)) // a new leader with a slow clock
	cmd2 := initiated(createCmd("clk-2", 2), backend, t0.Add(time.Hour))
	cmd2.ExpiresAt = t0.Add(time.Hour)
	if _, _, err := s.CreateRequest(ctx, "backend", cmd2); err != nil {
		t.Fatal(err)
	}
	if got := ledgerClock(); !got.Equal(t0) {
		t.Fatalf("ledger clock moved back to %s (was %s)", got, t0)
	}
	// Not expired yet at ledger time t0 (the slow leader cannot expire it).
	if _, err := s.Submit(ctx, "sweeper", ExpireRequest{RequestID: "clk"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expire before expires_at: %v, want ErrInvalid", err)
	}
	set(t0.Add(2 * time.Hour))
	out, err := s.Submit(ctx, "sweeper", ExpireRequest{RequestID: "clk"})
	if err != nil || out.Request.Status != StatusExpired {
		t.Fatalf("expire after expires_at: %+v, %v", out.Request, err)
	}
}
