package member_test

import (
	"errors"
	"testing"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
)

// TestReclaimAfterFailedSession: a tss session fails (n2's peer "times
// out") after both signers reserved the message in their watermarks; the
// failure is committed and the nonce stays held. A re-claim grants a new
// session over the same payload and nonce; both watermarks accept the same
// message again, the transaction is signed, mined, and the failed session's
// result can no longer be committed. Re-claiming again is refused.
func TestReclaimAfterFailedSession(t *testing.T) {
	h := newHarness(t)
	signers := []pki.NodeID{"n1", "n2"}
	r := h.request("wd-r", h.dests[0], ether(1, 0), bob, carol)

	h.members["n2"].engine.failNext.Store(true)
	first, err := h.orch.Sign(h.ctx, "wd-r", signers)
	if !errors.Is(err, errInjectedTimeout) || first != nil {
		t.Fatalf("first session: %v, want the injected timeout", err)
	}
	failed := h.read("wd-r")
	if failed.Status != ledger.StatusFailed || failed.Result == nil || failed.Result.Error == "" {
		t.Fatalf("after the failed session: %s %+v", failed.Status, failed.Result)
	}
	// n2 failed after reserving; n1 may have been cancelled by n2's failure
	// before it reached its watermark (the orchestrator cancels the others
	// on the first refusal), so it holds either nothing or a reservation.
	for _, id := range signers {
		rec, ok := h.members[id].wm.Lookup("wd-r")
		if (id == "n2" && !ok) || (ok && rec.Signed) {
			t.Fatalf("%s: watermark record %+v (present %v) after the failed session, want reserved, unsigned", id, rec, ok)
		}
	}
	if _, _, err := h.leader().CreateRequest(h.ctx, backend.ID, func() ledger.RequestCreate {
		u := h.unsigned(*r.Nonce, h.dests[1], ether(1, 0))
		return ledger.RequestCreate{
			ID:          "wd-steal",
			Withdrawal:  policy.Withdrawal{Wallet: walletID, Asset: "ETH", Chain: "eth", Network: network, To: h.dests[1].Hex(), Amount: r.Amount},
			Payload:     u.Bytes(),
			PayloadHash: u.PayloadHash(),
			Nonce:       r.Nonce,
			ExpiresAt:   r.ExpiresAt,
			Initiation:  ptr(h.initiate("wd-steal", h.dests[1], ether(1, 0))),
		}
	}()); !errors.Is(err, ledger.ErrAllocated) {
		t.Fatalf("another request on the failed request's nonce: %v, want ErrAllocated", err)
	}
	if _, err := h.orch.Reclaim(h.ctx, "wd-q-none", nil); err == nil {
		t.Fatal("reclaim of an unknown request succeeded")
	}

	cl, err := h.orch.Reclaim(h.ctx, "wd-r", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cl.SessionID.String() == failed.Claim.SessionID || cl.Index <= failed.Claim.Index {
		t.Fatalf("reclaim: session %s index %d; failed session %s index %d", cl.SessionID, cl.Index, failed.Claim.SessionID, failed.Claim.Index)
	}
	signed, err := h.orch.Collect(h.ctx, "wd-r", cl)
	if err != nil {
		t.Fatalf("signing the re-claimed request: %v", err)
	}
	for _, id := range signers {
		rec, ok := h.members[id].wm.Lookup("wd-r")
		if !ok || !rec.Signed || rec.Digest != cl.Digest {
			t.Fatalf("%s: watermark record %+v, want the same digest, signed", id, rec)
		}
	}
	stored := h.read("wd-r")
	if stored.Status != ledger.StatusSigned || stored.Result.SessionID != cl.SessionID.String() || string(stored.Payload) != string(failed.Payload) {
		t.Fatalf("after the re-claim: %s, result session %s", stored.Status, stored.Result.SessionID)
	}
	tx, err := eth.ParseSigned(signed.Raw)
	if err != nil {
		t.Fatal(err)
	}
	h.mine(tx)

	// The failed session is fenced off; a second re-claim is refused.
	if _, err := h.leader().Submit(h.ctx, "node:n1", ledger.RecordResult{RequestID: "wd-r", SessionID: failed.Claim.SessionID, Error: "late"}); !errors.Is(err, ledger.ErrWrongStatus) {
		t.Fatalf("late result of the failed session: %v, want ErrWrongStatus", err)
	}
	if _, err := h.orch.Reclaim(h.ctx, "wd-r", nil); !errors.Is(err, ledger.ErrWrongStatus) {
		t.Fatalf("reclaim of a signed request: %v, want ErrWrongStatus", err)
	}
}
