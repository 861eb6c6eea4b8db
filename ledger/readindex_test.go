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

// TestReadIndexWithoutLogEntries: after the first read of a term (a
// barrier), the leader's read index adds nothing to the log (VerifyLeader
// and the commit index), and every read, on the leader or on a follower at
// the leader's index, sees each write acknowledged before it, also with
// writes and reads running concurrently.
func TestReadIndexWithoutLogEntries(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	ctx := context.Background()
	l := c.WaitLeader(nil)
	follower := c.Others(l)[0]
	ledgertest.Poll(t, "a first read index of the term", func() error {
		_, err := l.Store.ReadIndex(ctx)
		return err
	})
	last := l.Store.LastIndex()
	for range 50 {
		if _, err := l.Store.ReadIndex(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.Store.LastIndex(); got != last {
		t.Fatalf("50 read indexes appended %d log entries", got-last)
	}

	// Writers and readers at once: a read started after a write's
	// acknowledgement sees it.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				id := fmt.Sprintf("ri-%d-%d", w, i)
				if _, _, err := l.Store.CreateRequest(ctx, "backend", createCmd(id, uint64(100+w*8+i))); err != nil {
					errs <- fmt.Errorf("create %s: %w", id, err)
					return
				}
				var onLeader, onFollower bool
				if err := l.Store.ReadLinearizable(ctx, func(st *State) error {
					onLeader = st.Requests[id] != nil
					return nil
				}); err != nil {
					errs <- err
					return
				}
				idx, err := l.Store.ReadIndex(ctx)
				if err != nil {
					errs <- err
					return
				}
				if err := follower.Store.ReadAtLeast(ctx, idx, func(st *State) error {
					onFollower = st.Requests[id] != nil
					return nil
				}); err != nil {
					errs <- err
					return
				}
				if !onLeader || !onFollower {
					errs <- fmt.Errorf("%s acknowledged, then read: on the leader %v, on %s %v", id, onLeader, follower.ID, onFollower)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// 32 creates; the reads added nothing to the log.
	if got := l.Store.LastIndex() - last; got != 32 {
		t.Fatalf("32 creates and 64 reads appended %d entries, want 32", got)
	}
}

// TestDeposedLeaderReadIndex: a leader cut off from the majority never
// returns a read index, also at once, while it still believes it leads
// (raft's VerifyLeader answered there from a heartbeat sent before the
// cut: see leaderRounds),
// while the majority elects a leader and commits a write the old leader
// cannot have; the new leader's first read (a barrier of its term) and
// the following ones (read index) see it; healed, the old leader reads it
// through the new leader's index.
func TestDeposedLeaderReadIndex(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	ctx := context.Background()
	old := c.WaitLeader(nil)
	ledgertest.Poll(t, "a first read index of the term", func() error {
		_, err := old.Store.ReadIndex(ctx)
		return err
	})
	c.Isolate(old, true)
	// At once, while it still believes it leads (its lease has not run
	// out): no index, it cannot hear from a majority.
	believed := old.Store.IsLeader()
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	idx, err := old.Store.ReadIndex(dctx)
	cancel()
	if err == nil {
		t.Fatalf("the cut-off leader returned read index %d", idx)
	}
	t.Logf("cut off, believing it leads (%v): %v", believed, err)
	rest := c.Others(old)
	afterDeposed := createCmd("after-deposed", 7) // one command for every retry
	c.OnLeaderAmong(rest, func(s *Store) error {
		_, _, err := s.CreateRequest(ctx, "backend", afterDeposed)
		return err
	})
	dctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	idx, err = old.Store.ReadIndex(dctx)
	cancel()
	if err == nil {
		t.Fatalf("the cut-off old leader returned read index %d", idx)
	}
	if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrTimeout) {
		t.Fatalf("the cut-off old leader's read index: %v, want ErrNotLeader or ErrTimeout", err)
	}
	nl := c.WaitLeader(rest)
	for range 2 {
		if !sees(t, ctx, nl.Store.ReadLinearizable, "after-deposed") {
			t.Fatal("the new leader's read misses its acknowledged write")
		}
	}
	c.Isolate(old, false)
	followerRead := func(ctx context.Context, fn func(*State) error) error { return followerRead(c, ctx, old, nil, fn) }
	if !sees(t, ctx, followerRead, "after-deposed") {
		t.Fatal("the healed old leader's linearizable read misses the write")
	}
}

// sees reports whether request id is in the state read returns.
func sees(t *testing.T, ctx context.Context, read func(context.Context, func(*State) error) error, id string) bool {
	t.Helper()
	var saw bool
	if err := read(ctx, func(st *State) error {
		saw = st.Requests[id] != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return saw
}

// BenchmarkReadIndex: the leader's ReadIndex, 16 callers at a time, on a
// three-node cluster (raft over mutual TLS on 127.0.0.1) while no write
// runs: a heartbeat round per batch of callers, no log entry. Reports
// reads/s and the p50 and p99 of one call (ms); "barrier" is the same with
// a raft barrier per call, as every read did before.
func BenchmarkReadIndex(b *testing.B) {
	c := newCluster(b, 3)
	seed(c)
	ctx := context.Background()
	l := c.WaitLeader(nil)
	for _, tc := range []struct {
		name string
		read func() error
	}{
		{"readindex", func() error { _, err := l.Store.ReadIndex(ctx); return err }},
		{"barrier", func() error { return l.Store.Barrier(ctx) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if err := tc.read(); err != nil {
				b.Fatal(err)
			}
			ledgertest.Concurrent(b, 16, "reads/s", func(int) error { return tc.read() })
		})
	}
}
