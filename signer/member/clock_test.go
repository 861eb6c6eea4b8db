package member_test

import (
	"testing"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
)

// TestLedgerClockAheadRefused: policy runs at the ledger's clock, which the
// leader stamps into commands. A member whose own clock is far behind the
// ledger's (as when a compromised leader stamps a future time to skip a
// cooling-off or an unlock delay) refuses before reserving anything. Members
// with agreeing clocks sign in every other test of this package.
func TestLedgerClockAheadRefused(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	signers := []pki.NodeID{"n1", "n2"}
	r := h.request("wd-clock", h.dests[0], ether(1, 0), bob, carol)
	c, err := h.orch.Claim(h.ctx, "wd-clock", signers)
	if err != nil {
		t.Fatal(err)
	}
	behind := h.clock.Now().Add(-time.Hour)
	m, err := member.New(member.Config{Engine: n1.engine, Shares: n1.shares, Watermark: n1.wm, Seen: n1.seen, Ledger: n1.ledger,
		Chains: testChains(), Now: func() time.Time { return behind }})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddWallet(h.info); err != nil {
		t.Fatal(err)
	}
	h.refused(n1, m, "wd-clock", *r.Nonce, c, member.ErrLedgerClock)

}
