package ledger

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/pki"
)

// TransferLeadership hands leadership to the voter to, on the leader, and
// returns once this node has stepped down (raft's leadership transfer: it
// brings to's log up to date, then asks it to start an election at once).
// An empty to lets raft pick the most up-to-date voter. It is how a node
// leaves the leadership before it stops (the daemon's drain on SIGTERM)
// instead of making the cluster wait out an election timeout.
//
// Errors: a *NotLeaderError on a follower; an error wrapping ErrNotFound
// when to is not a voter of the raft configuration; raft's error when the
// transfer did not finish within its election timeout (this node may still
// lead: call again); ctx's error when ctx ends first (the transfer may
// still complete). Transferring to this node itself succeeds at once. While
// a transfer runs, writes on this node fail with ErrTimeout (raft refuses
// them before they reach the log), and a second transfer is refused.
func (s *Store) TransferLeadership(ctx context.Context, to pki.NodeID) error {
	if to == s.cfg.NodeID {
		return s.leaderCheck()
	}
	var f raft.Future
	if to == "" {
		if err := s.leaderCheck(); err != nil {
			return err
		}
		f = s.raft.LeadershipTransfer()
	} else {
		servers, err := s.servers()
		if err != nil {
			return err
		}
		var addr raft.ServerAddress
		for _, srv := range servers {
			if srv.ID == raft.ServerID(to) && srv.Suffrage == raft.Voter {
				addr = srv.Address
			}
		}
		if addr == "" {
			return fmt.Errorf("%w: %s is not a voter", ErrNotFound, to)
		}
		f = s.raft.LeadershipTransferToServer(raft.ServerID(to), addr)
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("ledger: leadership transfer to %q: %w", to, s.mapErr(err))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ledger: leadership transfer to %q: %w", to, ctx.Err())
	}
}
