package node_test

import (
	"errors"
	"math/big"
	"testing"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/quorum/ledger"
	"github.com/custody-dev/custody/signer/node"
	"github.com/custody-dev/custody/signer/tss"
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
	if _, err := h.coord.WaitApproved(h.ctx, "wd-1"); err != nil {
		t.Fatal(err)
	}
	signed, err := h.coord.Sign(h.ctx, "wd-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []tss.PartyID{"n1", "n2"} {
		if got := h.members[id].engine.signs.Load(); got != 1 {
			t.Errorf("%s ran %d sessions, want 1", id, got)
		}
		rec, ok := h.members[id].wm.Lookup("wd-1")
		if !ok || !rec.Signed {
			t.Errorf("%s: watermark record %+v, want signed", id, rec)
		}
	}
	h.untouched(h.members["n3"], "wd-1", *r.Nonce, 0, 0)

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
	if _, err := h.sim.Broadcast(h.ctx, tx); err != nil {
		t.Fatal(err)
	}
	h.sim.Commit()
	rcpt, err := h.sim.Receipt(h.ctx, tx.Hash())
	if err != nil || !rcpt.Success {
		t.Fatalf("receipt %+v, %v", rcpt, err)
	}
	after, err := h.sim.Balance(h.ctx, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := new(big.Int).Sub(after, before); diff.Cmp(amount) != 0 {
		t.Fatalf("destination balance changed by %s, want %s", diff, amount)
	}

	// The same claim again: the same transaction, no new session.
	cl := node.Claim{Index: stored.Claim.Index, Signers: []tss.PartyID{"n1", "n2"}, PayloadHash: stored.PayloadHash,
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
	if _, err := h.coord.Collect(h.ctx, "wd-1", cl); err == nil {
		t.Fatal("collecting a signed request again committed a second result")
	} else if !errors.Is(err, ledger.ErrWrongStatus) {
		t.Fatalf("second commit: %v, want ErrWrongStatus", err)
	}
}
