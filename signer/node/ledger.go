package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custody-dev/custody/quorum/ledger"
)

// Ledger is the member's view of the replicated ledger. ReadLinearizable must
// call fn with a state reflecting every write committed before the call
// (SECURITY.md item 14); fn must not modify or retain the state.
// *ledger.Store satisfies it on the leader only; LocalLedger on any node.
type Ledger interface {
	ReadLinearizable(ctx context.Context, fn func(*ledger.State) error) error
}

var (
	_ Ledger = (*ledger.Store)(nil)
	_ Ledger = (*LocalLedger)(nil)
)

// ReadIndexFunc returns the leader's read index: State.Index of the leader's
// FSM after a raft barrier, that is, the index of the last state change
// committed before the call. In-process it is LeaderReadIndex; a daemon asks
// the leader over the node API.
type ReadIndexFunc func(ctx context.Context) (uint64, error)

// LocalLedger gives a member a linearizable read of its OWN ledger node, also
// when that node is a follower: ledger.Store.ReadLinearizable only works on
// the leader, so on a follower it fetches the leader's read index and waits
// until the local FSM has applied every state change up to it (a hand-made
// raft ReadIndex). The state the member then checks is its own replica's,
// so a leader lying about the index can only make the member see an older
// committed prefix, never a forged one, and the claim-index check in
// SignClaimed bounds how old.
type LocalLedger struct {
	Store     *ledger.Store
	ReadIndex ReadIndexFunc
	// Poll is the interval between checks of the local applied state
	// (default 10 ms).
	Poll time.Duration
}

// ReadLinearizable implements Ledger.
func (l *LocalLedger) ReadLinearizable(ctx context.Context, fn func(*ledger.State) error) error {
	err := l.Store.ReadLinearizable(ctx, fn)
	if !errors.Is(err, ledger.ErrNotLeader) || l.ReadIndex == nil {
		return err
	}
	idx, err := l.ReadIndex(ctx)
	if err != nil {
		return fmt.Errorf("node: read index from the leader: %w", err)
	}
	return readAtLeast(ctx, l.Store, idx, l.Poll, fn)
}

// readAtLeast waits until the local FSM's State.Index reaches idx and calls fn
// under the same read lock. State.Index only moves on state changes, which
// both sides count identically, so reaching the leader's value means every
// change the leader had applied is applied here.
func readAtLeast(ctx context.Context, s *ledger.Store, idx uint64, poll time.Duration, fn func(*ledger.State) error) error {
	if poll <= 0 {
		poll = 10 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if err := s.Halted(); err != nil {
			return err
		}
		done := false
		err := s.ReadLocal(func(st *ledger.State) error {
			if st.Index < idx {
				return nil
			}
			done = true
			return fn(st)
		})
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: local ledger did not reach index %d: %w", idx, ctx.Err())
		case <-tick.C:
		}
	}
}

// LeaderReadIndex returns a ReadIndexFunc that asks whichever of stores is the
// leader (in-process clusters: tests, devnet). It retries while leadership
// moves, until ctx ends.
func LeaderReadIndex(stores ...*ledger.Store) ReadIndexFunc {
	return func(ctx context.Context) (uint64, error) {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, s := range stores {
				if !s.IsLeader() {
					continue
				}
				var idx uint64
				err := s.ReadLinearizable(ctx, func(st *ledger.State) error {
					idx = st.Index
					return nil
				})
				if err == nil {
					return idx, nil
				}
				if !errors.Is(err, ledger.ErrNotLeader) && !errors.Is(err, ledger.ErrTimeout) {
					return 0, err
				}
			}
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("node: no leader answered a read index: %w", ctx.Err())
			case <-tick.C:
			}
		}
	}
}
