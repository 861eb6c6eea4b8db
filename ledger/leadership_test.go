package ledger_test

import (
	"context"
	"errors"
	"testing"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
)

// TestTransferLeadership: the leader hands over to a named voter, or to
// the voter raft picks; a follower, a node that is no voter and the leader
// itself are answered without a transfer.
func TestTransferLeadership(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	old := c.WaitLeader(nil)
	if err := old.Store.TransferLeadership(ctx, old.ID); err != nil {
		t.Fatalf("transfer to itself: %v", err)
	}
	if err := old.Store.TransferLeadership(ctx, "n9"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("transfer to a node that is no voter: %v, want ErrNotFound", err)
	}
	follower := c.Others(old)[0]
	if err := follower.Store.TransferLeadership(ctx, follower.ID); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("transfer on a follower: %v, want ErrNotLeader", err)
	}

	to := c.Others(old)[1]
	if err := old.Store.TransferLeadership(ctx, to.ID); err != nil {
		t.Fatal(err)
	}
	if got := c.WaitLeader(nil); got != to {
		t.Fatalf("%s leads after the transfer to %s", got.ID, to.ID)
	}
	if err := to.Store.TransferLeadership(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := c.WaitLeader(nil); got == to {
		t.Fatalf("%s still leads after handing over", to.ID)
	}
	if _, err := c.Leader().Submit(ctx, "test", VoterSet{ID: pki.NodeID("n9"), Address: "127.0.0.1:9"}); err != nil {
		t.Fatalf("write on the new leader: %v", err)
	}
}
