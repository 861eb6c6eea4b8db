package member

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custody-dev/custody/ledger"
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

// ReadIndexFunc returns the leader's read index ([ledger.Store.ReadIndex]):
// an index at which a read sees every write committed before the call.
// In-process it is LeaderReadIndex; a daemon asks the leader over the node
// API.
type ReadIndexFunc func(ctx context.Context) (uint64, error)

// LocalLedger gives a member a linearizable read of its OWN ledger node, also
// when that node is a follower: on the leader [ledger.Store.ReadLinearizable]
// (its read index); on a follower the leader's read index, then
// [ledger.Store.ReadAtLeast] waits until the local FSM has applied every
// state change up to it (raft's ReadIndex protocol). The state the member
// then checks is its own replica's, so a leader lying about the index can
// only make the member see an older committed prefix, never a forged one,
// and the claim-index check in SignClaimed bounds how old.
type LocalLedger struct {
	Store     *ledger.Store
	ReadIndex ReadIndexFunc
}

// ReadLinearizable implements Ledger.
func (l *LocalLedger) ReadLinearizable(ctx context.Context, fn func(*ledger.State) error) error {
	err := l.Store.ReadLinearizable(ctx, fn)
	if !errors.Is(err, ledger.ErrNotLeader) || l.ReadIndex == nil {
		return err
	}
	idx, err := l.ReadIndex(ctx)
	if err != nil {
		return fmt.Errorf("member: read index from the leader: %w", err)
	}
	return l.Store.ReadAtLeast(ctx, idx, fn)
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
				idx, err := s.ReadIndex(ctx)
				if err == nil {
					return idx, nil
				}
				if !errors.Is(err, ledger.ErrNotLeader) && !errors.Is(err, ledger.ErrTimeout) {
					return 0, err
				}
			}
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("member: no leader answered a read index: %w", ctx.Err())
			case <-tick.C:
			}
		}
	}
}
