package member_test

import (
	"errors"
	"testing"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/withdraw"
)

// TestCoolingOffDestinationRefused: a destination added to the allowlist is
// unusable until its cooling-off has passed in ledger time. The ledger denies
// a new request to it; a member shown a claimed, fully approved withdrawal to
// it (a rewritten ledger) refuses with policy.ErrCoolingOff and starts
// nothing; once the ledger clock passes the cooling-off, a request to it is
// accepted, approved and signed.
func TestCoolingOffDestinationRefused(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	fresh := h.allowlist("allow-fresh")

	_, err := h.orch.CreateETH(h.ctx, withdraw.ETHWithdrawal{ID: "wd-early", Wallet: walletID, To: fresh.Hex(), Amount: ether(1, 0),
		Initiation: h.initiate("wd-early", fresh, ether(1, 0)), ExpiresAt: h.clock.Now().Add(3 * testCoolingOff)})
	if !errors.Is(err, withdraw.ErrDenied) {
		t.Fatalf("request to a cooling-off destination: %v, want ErrDenied", err)
	}
	if got := h.read("wd-early"); got.Status != ledger.StatusRejected || got.Decision.Reason != policy.ReasonCoolingOff {
		t.Fatalf("wd-early: %s / %s", got.Status, got.Decision.Reason)
	}

	// A genuine request is the template of the rewritten ledger's claim.
	tmpl := h.request("wd-tmpl", h.dests[0], ether(1, 0), bob, carol)
	nonce := *tmpl.Nonce + 7
	f := h.forge("wd-cool", h.unsigned(nonce, fresh, ether(1, 0)))
	m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) { f.install(st, "wd-tmpl") }})
	h.refused(n1, m, "wd-cool", nonce, f.claim(), member.ErrPolicy, policy.ErrCoolingOff)

	// After the cooling-off (ledger time), the destination is usable.
	h.clock.Advance(testCoolingOff)
	r := h.request("wd-late", fresh, ether(1, 0), bob, carol)
	if r.Status != ledger.StatusApproved {
		t.Fatalf("wd-late after the cooling-off: %s (%s)", r.Status, r.Decision.Reason)
	}
	if _, err := h.orch.Sign(h.ctx, "wd-late", nil); err != nil {
		t.Fatalf("sign after the cooling-off: %v", err)
	}
}
