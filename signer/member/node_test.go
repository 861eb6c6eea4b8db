package member_test

import (
	"errors"
	"math/big"
	"testing"
	"time"

	amt "github.com/custody-dev/custody/amount"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/watermark"
)

// TestHappyPathETHWithdrawal: created, approved by two operators, claimed,
// signed by 2 of 3 members, mined on the simulated chain; the destination
// balance changes by exactly the amount. Asking a member again for the same
// claim returns the same transaction and starts no session.
func TestHappyPathETHWithdrawal(t *testing.T) {
	h := newHarness(t)
	dest, amount := h.dests[0], ether(1, 5)
	before, err := h.sim.Balance(h.ctx, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := h.request("wd-1", dest, amount, bob, carol)
	if r.Status != ledger.StatusApproved {
		t.Fatalf("after two approvals: %s", r.Status)
	}
	if _, err := h.orch.WaitApproved(h.ctx, "wd-1"); err != nil {
		t.Fatal(err)
	}
	signed, err := h.orch.Sign(h.ctx, "wd-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []pki.NodeID{"n1", "n2"} {
		if got := h.members[id].engine.signs.Load(); got != 1 {
			t.Errorf("%s ran %d sessions, want 1", id, got)
		}
		rec, ok := h.members[id].wm.Lookup("wd-1")
		if !ok || !rec.Signed {
			t.Errorf("%s: watermark record %+v, want signed", id, rec)
		}
	}
	h.untouched(h.members["n3"], "wd-1", *r.Nonce, 0, 0)

	// A follower's LocalLedger read right after the commit sees it (read
	// index through the leader, then the follower's own applied state).
	var follower *testNode
	for i, id := range committee {
		if !h.stores[i].IsLeader() {
			follower = h.members[id]
		}
	}
	var followerSaw ledger.Status
	if err := follower.ledger.ReadLinearizable(h.ctx, func(st *ledger.State) error {
		followerSaw = st.Requests["wd-1"].Status
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if followerSaw != ledger.StatusSigned {
		t.Fatalf("follower %s read wd-1 as %s right after the commit", follower.id, followerSaw)
	}

	stored := h.read("wd-1")
	if stored.Status != ledger.StatusSigned || stored.Result == nil || string(stored.Result.Signed) != string(signed.Raw) {
		t.Fatalf("ledger after commit: status %s result %+v", stored.Status, stored.Result)
	}
	tx, err := eth.ParseSigned(signed.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Verify(stored.PayloadHash, h.wallet); err != nil {
		t.Fatal(err)
	}
	h.mine(tx)
	after, err := h.sim.Balance(h.ctx, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := new(big.Int).Sub(after, before); diff.Cmp(amount) != 0 {
		t.Fatalf("destination balance changed by %s, want %s", diff, amount)
	}

	// The same claim again: the same transaction, no new session.
	cl := member.Claim{Index: stored.Claim.Index, Signers: []pki.NodeID{"n1", "n2"}, PayloadHash: stored.PayloadHash,
		Digest: tx.Unsigned().SigningHash()}
	copy(cl.SessionID[:], mustHex(t, stored.Claim.SessionID))
	again, err := h.members["n1"].m.SignClaimed(h.ctx, "wd-1", cl)
	if err != nil {
		t.Fatal(err)
	}
	if string(again.Raw) != string(signed.Raw) {
		t.Fatal("second SignClaimed returned a different transaction")
	}
	if got := h.members["n1"].engine.signs.Load(); got != 1 {
		t.Fatalf("repeat started a session (%d)", got)
	}
	if _, err := h.orch.Collect(h.ctx, "wd-1", cl); err == nil {
		t.Fatal("collecting a signed request again committed a second result")
	} else if !errors.Is(err, ledger.ErrWrongStatus) {
		t.Fatalf("second commit: %v, want ErrWrongStatus", err)
	}

	// A different request reusing wd-1's nonce: the ledger refuses it.
	other := h.unsigned(*r.Nonce, dest, ether(2, 0))
	amt2, _ := amt.ParseBase(ether(2, 0).String())
	_, _, err = h.leader().CreateRequest(h.ctx, backend.ID, ledger.RequestCreate{
		ID:          "wd-2",
		Withdrawal:  policy.Withdrawal{Wallet: walletID, Asset: "ETH", Chain: "eth", Network: network, To: dest.Hex(), Amount: amt2},
		Payload:     other.Bytes(),
		PayloadHash: other.PayloadHash(),
		Nonce:       r.Nonce,
		ExpiresAt:   time.Now().Add(time.Hour),
		Initiation:  ptr(h.initiate("wd-2", dest, ether(2, 0))),
	})
	if !errors.Is(err, ledger.ErrAllocated) {
		t.Fatalf("second request on nonce %d: %v, want ErrAllocated", *r.Nonce, err)
	}

	// A rolled-back ledger that shows wd-2 on the same nonce, fully approved
	// and claimed: n1's watermark refuses it (nonce already signed for wd-1).
	n1 := h.members["n1"]
	f2 := h.forge("wd-2", other)
	rolledBack := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) { f2.install(st, "wd-1") }})
	h.refused(n1, rolledBack, "wd-2", *r.Nonce, f2.claim(), member.ErrWatermark, watermark.ErrConflict)

	// The same request ID with a different message (rewritten history: wd-1
	// claimed again with another amount, re-approved): refused too.
	f1 := h.forge("wd-1", h.unsigned(*r.Nonce, dest, ether(3, 0)))
	rewritten := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) { f1.install(st, "wd-1") }})
	h.refused(n1, rewritten, "wd-1", *r.Nonce, f1.claim(), member.ErrWatermark, watermark.ErrConflict)
	if rec, _ := n1.wm.Lookup("wd-1"); rec.Digest != tx.Unsigned().SigningHash() {
		t.Fatal("the watermark record of wd-1 changed")
	}
}
