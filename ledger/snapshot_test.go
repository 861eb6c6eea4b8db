package ledger_test

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// TestSnapshotViewUnchangedByLaterCommands: FSM.Snapshot only copies maps
// under the lock and Persist encodes later, while Apply goes on. That is
// right only if no command edits a stored record in place; here commands of
// every kind that change existing records (requests through their whole
// lifecycle, registry, policy, rules, wallets, voters, the audit chain) run
// between the checkpoint (whose view the snapshot's base is) and Persist,
// and the persisted base must be the state as it was at the checkpoint.
func TestSnapshotViewUnchangedByLaterCommands(t *testing.T) {
	h := newPinnedHarness(t)
	exp := h.now.Add(24 * time.Hour)
	waiting := h.create("waiting", 1)
	approved := h.approved("approved", 2)
	claimed := h.approved("claimed", 3)
	cl := h.claimCmd(claimed.ID)
	h.must("n1", cl)
	expiring := h.create("expiring", 4)
	h.must("n1", VoterSet{ID: "n1", Address: "127.0.0.1:1"})
	idx := h.toCheckpoint()
	head, _ := h.f.PendingHead(idx)
	h.certify(idx)
	want := head.StateHash
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	before := h.encoded()

	h.must("api", bob.approve(t, waiting, exp))
	cl2 := h.claimCmd(approved.ID)
	cl2.SessionID = "bb" + cl2.SessionID[2:]
	h.must("n1", cl2)
	h.must("n1", RecordResult{RequestID: claimed.ID, SessionID: cl.SessionID, Error: "peer aborted"})
	h.must("n1", ReclaimSession{RequestID: claimed.ID, FailedSession: cl.SessionID, SessionID: "cc" + cl.SessionID[2:], Term: h.term, Signers: allSigners})
	h.must("n1", RecordResult{RequestID: approved.ID, SessionID: cl2.SessionID, Signed: []byte("signed tx")})
	add := policy.Change{ID: "allow-1", Kind: policy.ChangeAllowlistAdd, Wallet: "allow", Chain: "eth", Network: "devnet", Address: "0xdest"}
	h.must("api", PolicyChange{Change: add, Approvals: []quorum.Approval{
		bob.sign(t, add.ID, add.PayloadHash(), quorum.Approve, exp), dave.sign(t, add.ID, add.PayloadHash(), quorum.Approve, exp)}})
	lock := policy.Change{ID: "lock-1", Kind: policy.ChangeLock, Reason: "drill"}
	h.must("api", PolicyChange{Change: lock, Approvals: []quorum.Approval{dave.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve, exp)}})
	rev := quorum.Change{ID: "revoke-bob", Kind: quorum.ChangeRevokeDevice, DeviceID: bob.device().ID}
	h.must("api", RegistryChange{Change: rev, Approvals: []quorum.Approval{alice.sign(t, rev.ID, rev.PayloadHash(), quorum.Approve, exp)}})
	h.must("keygen", WalletSet{Wallet{ID: "hot2", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1", "n2", "n3"}, Threshold: 1}})
	h.must("n1", VoterRemove{ID: "n1"})
	h.create("later", 5)
	h.now = h.now.Add(25 * time.Hour)
	h.must("n1", ExpireRequest{RequestID: expiring.ID})
	if bytes.Equal(h.encoded(), before) {
		t.Fatal("the later commands changed nothing")
	}

	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	// It restores to the state at the checkpoint.
	g := genesisEvery(cpInterval)
	f := NewPinnedFSM(&g)
	if err := f.RestoreAt(sink.Bytes(), head.Index, head.Term); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Hash(); hex.EncodeToString(got[:]) != want {
		t.Fatal("the snapshot shows commands applied after its checkpoint")
	}
}
