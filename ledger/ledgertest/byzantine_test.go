package ledgertest_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
)

// TestByzantineInstallSnapshot: the Byzantine leader's InstallSnapshot RPC
// reaches a follower's raft over the cluster's authenticated transport and
// that follower's FSM is asked to restore it. Garbage bytes are refused by
// the target's own restore (its error comes back over the wire), the
// target's state is unchanged and it halts (it does not go on from a
// state it could not check) while the others go on; the same RPC with a
// term below the target's is ignored by raft.
func TestByzantineInstallSnapshot(t *testing.T) {
	clock := ledgertest.NewClock(time.Now().UTC())
	c := ledgertest.New(t, 3, ledgertest.NodeClock("n3", clock, nil))
	b := ledgertest.NewByzantine(c, "n3", clock)
	b.Lead()
	target := c.Nodes[0]
	before := c.WaitConverged(c.Nodes...)
	at := target.Store.StateIndex()
	unchanged := func(what string) {
		t.Helper()
		if h, err := target.Store.Hash(); err != nil || h != before || target.Store.StateIndex() != at {
			t.Fatalf("%s: the target's state moved (index %d, was %d; %v)", what, target.Store.StateIndex(), at, err)
		}
	}

	term := b.Term()
	ok, err := b.InstallSnapshot(target, term-1, target.Store.LastIndex()+10, term-1, []byte("not a ledger state"))
	if ok || err != nil {
		t.Fatalf("snapshot of an older term: success %v, err %v; want it ignored", ok, err)
	}
	unchanged("snapshot of an older term")
	if err := target.Store.Halted(); err != nil {
		t.Fatalf("an ignored snapshot halted the target: %v", err)
	}

	ok, err = b.InstallSnapshot(target, term, target.Store.LastIndex()+10, term, []byte("not a ledger state"))
	if ok || err == nil || !strings.Contains(err.Error(), "snapshot refused") {
		t.Fatalf("garbage snapshot: success %v, err %v; want the target's restore to refuse it", ok, err)
	}
	unchanged("garbage snapshot")
	// A running node that was sent a snapshot it cannot verify halts with
	// an alert rather than go on from a state it could not check.
	if err := target.Store.Halted(); !errors.Is(err, ledger.ErrCheckpoint) || !errors.Is(err, ledger.ErrHalted) {
		t.Fatalf("target after a refused snapshot: halted %v", err)
	}

	if _, err := b.Append("ledgertest", ledger.VoterSet{ID: "n9", Address: "127.0.0.1:9"}); err != nil {
		t.Fatal(err)
	}
	if c.WaitConverged(c.Others(target)...) == before {
		t.Fatal("the cluster's state did not move after the refused snapshots")
	}
}
