package ledger_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// TestFSMRejectUntilPointOfNoReturn: a valid rejection cancels an approved
// request until its claim (hot) or its export (cold), also from an operator
// who approved it; the cancelled request's nonce or outpoints are released.
// After the point of no return a rejection is refused and changes nothing;
// an approval after approved is refused, and an operator never turns a
// rejection into an approval (SECURITY 32).
func TestFSMRejectUntilPointOfNoReturn(t *testing.T) {
	h := newHarness(t)
	exp := h.now.Add(time.Hour)

	// Hot, approved by bob and dave: bob changes his mind before the claim.
	r := h.approved("hot-1", 1)
	h.refuse(ErrWrongStatus, "api", alice.approve(t, r, exp))
	got := h.must("api", bob.reject(t, r, exp))
	if got.Status != StatusRejected || got.Decision.Reason != policy.ReasonRejected {
		t.Fatalf("after bob's late rejection: %s (%s)", got.Status, got.Decision.Reason)
	}
	h.refuse(ErrWrongStatus, "api", dave.reject(t, r, exp))
	h.refuse(ErrWrongStatus, "n1", h.claimCmd(r.ID))
	// The nonce is free again.
	h.create("hot-1b", 1)

	// Hot, claimed: the point of no return has passed.
	r = h.approved("hot-2", 2)
	h.must("n1", h.claimCmd(r.ID))
	h.refuse(ErrWrongStatus, "api", alice.reject(t, r, exp))

	// Awaiting: an operator who rejected cannot approve afterwards, and one
	// who approved may reject.
	w := h.create("hot-3", 3)
	h.must("api", bob.approve(t, w, exp))
	got = h.must("api", bob.reject(t, w, exp))
	if got.Status != StatusRejected {
		t.Fatalf("approve then reject by bob: %s", got.Status)
	}
	w = h.create("hot-4", 4)
	h.must("api", dave.reject(t, w, exp))
	h.refuse(ErrWrongStatus, "api", dave.approve(t, w, exp))

	// Cold, approved: a rejection before the export cancels and frees the
	// outpoint; after the export it is refused.
	cold := func(id, op string) *Request {
		p := []byte("psbt:" + id)
		c := RequestCreate{ID: id, Withdrawal: coldWithdrawal(), Payload: p, PayloadHash: quorum.Hash(sha256.Sum256(p)),
			Outpoints: []string{op}, ExpiresAt: exp}
		r := h.must("backend", c)
		h.must("api", alice.approve(t, r, exp))
		r = h.must("api", carol.approve(t, r, exp))
		if r.Status != StatusApproved {
			t.Fatalf("%s: %s after two admins", id, r.Status)
		}
		return r
	}
	c1 := cold("cold-1", "aa:0")
	if got := h.must("api", carol.reject(t, c1, exp)); got.Status != StatusRejected {
		t.Fatalf("cold rejected before export: %s", got.Status)
	}
	c2 := cold("cold-2", "aa:0") // the outpoint was released
	h.must("n1", h.exportCmd(c2.ID, "bundle"))
	h.refuse(ErrWrongStatus, "api", alice.reject(t, c2, exp))
}

func coldWithdrawal() policy.Withdrawal {
	return policy.Withdrawal{Wallet: "cold", Asset: "BTC", Chain: "btc", Network: "regtest", To: "bcrt1qdest", Amount: amount.FromUint64(5000)}
}
