package member_test

import (
	"testing"
	"time"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
)

// lateMember is n1's member with its own clock, an hour ahead of the
// ledger's: the leader stamps old times (SECURITY 29).
func lateMember(h *harness) (*member.Member, *ledgertest.Clock) {
	h.t.Helper()
	n1 := h.members["n1"]
	own := ledgertest.NewClock(h.clock.Now().Add(time.Hour))
	m, err := member.New(member.Config{Engine: n1.engine, Shares: n1.shares, Watermark: n1.wm, Seen: n1.seen, Ledger: n1.ledger,
		Chains: testChains(), Now: own.Now})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := m.AddWallet(h.info); err != nil {
		h.t.Fatal(err)
	}
	return m, own
}

// TestBackdatedUnlockStillWaits: a leader stamps an unlock with a time an
// hour old, so in ledger time its delay is over as soon as the clock catches
// up, and the ledger accepts a claim. A member that first saw the unlock by
// its own clock still counts the whole delay from then, and refuses.
func TestBackdatedUnlockStillWaits(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	r := h.request("wd-unlock", h.dests[0], ether(1, 0), bob, carol)
	m, own := lateMember(h)

	lock := policy.Change{ID: "lock-bd", Kind: policy.ChangeLock, Reason: "drill"}
	h.propose("bob", ledger.PolicyChange{Change: lock, Approvals: []quorum.Approval{bob.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve)}})
	unlock := policy.Change{ID: "unlock-bd", Kind: policy.ChangeUnlock}
	h.propose("alice", ledger.PolicyChange{Change: unlock, Approvals: []quorum.Approval{
		alice.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve), carol.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve)}})
	if err := m.Observe(h.ctx); err != nil {
		t.Fatal(err)
	}
	seenAt, ok := n1.seen.Lookup(unlock.ID)
	if !ok || !seenAt.Equal(own.Now()) {
		t.Fatalf("unlock first seen at %v (%v), want the member's own time %v", seenAt, ok, own.Now())
	}

	// The leader's clock catches up with real time: the ledger's unlock
	// delay has passed and it grants the claim; the member's has not.
	h.clock.Advance(time.Hour + time.Minute)
	own.Advance(time.Minute)
	c, err := h.orch.Claim(h.ctx, r.ID, []pki.NodeID{"n1", "n2"})
	if err != nil {
		t.Fatalf("the ledger refused the claim: %v", err)
	}
	h.refused(n1, m, r.ID, *r.Nonce, c, member.ErrPolicy, policy.ErrLocked)
}

// TestBackdatedAllowlistStillCoolsOff: an allowlist addition stamped an
// hour in the past is usable in ledger time once the clock catches up; a
// member that first saw it by its own clock refuses until the whole
// cooling-off has passed on that clock.
func TestBackdatedAllowlistStillCoolsOff(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	// A member with its own first-seen record and its own clock, an hour
	// ahead of the ledger's.
	own := ledgertest.NewClock(h.clock.Now().Add(time.Hour))
	seen, err := member.OpenSeen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer seen.Close()
	m, err := member.New(member.Config{Engine: n1.engine, Shares: n1.shares, Watermark: n1.wm, Seen: seen, Ledger: n1.ledger,
		Chains: testChains(), Now: own.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddWallet(h.info); err != nil {
		t.Fatal(err)
	}
	fresh := h.allowlist("allow-backdated")
	if err := m.Observe(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Hour + time.Minute)
	own.Advance(time.Minute)
	r := h.request("wd-bd-allow", fresh, ether(1, 0), bob, carol)
	if r.Status != ledger.StatusApproved {
		t.Fatalf("the ledger did not approve the request: %s (%s)", r.Status, r.Decision.Reason)
	}
	c, err := h.orch.Claim(h.ctx, r.ID, []pki.NodeID{"n1", "n2"})
	if err != nil {
		t.Fatal(err)
	}
	h.refused(n1, m, r.ID, *r.Nonce, c, member.ErrPolicy, policy.ErrCoolingOff)
}

// TestFrozenLedgerClockKeepsNoApprovalAlive: a leader freezing the ledger's
// clock keeps approvals valid in the ledger after they expired; the member
// judges expiry on its own clock and the expired approvals stop counting.
func TestFrozenLedgerClockKeepsNoApprovalAlive(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	r := h.request("wd-frozen", h.dests[0], ether(1, 0))
	exp := h.clock.Now().Add(30 * time.Minute) // valid at the ledger's frozen time
	for _, o := range []operator{bob, carol} {
		if _, err := h.orch.Approve(h.ctx, r.ID, o.Sign(t, clusterID, r.ID, r.PayloadHash, quorum.Approve, exp)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := h.orch.Claim(h.ctx, r.ID, []pki.NodeID{"n1", "n2"})
	if err != nil {
		t.Fatalf("the ledger refused the claim: %v", err)
	}
	m, _ := lateMember(h) // an hour later by its own clock: the approvals expired
	h.refused(n1, m, r.ID, *r.Nonce, c, member.ErrQuorum)
}
