package ledger_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// TestFSMGovernanceReplayRefused (SECURITY 28): a governance change ID is
// single-use forever. A leader re-submitting an applied change after a
// counter-change (an old unlock after a new lock, an old reactivation
// after a suspension, an old allowlist add after the removal, old rules
// after new ones) is refused and the state stays byte-identical.
func TestFSMGovernanceReplayRefused(t *testing.T) {
	h := newHarness(t)
	exp := func() time.Time { return h.now.Add(time.Hour) }
	pol := func(c policy.Change, ops ...operator) PolicyChange {
		p := PolicyChange{Change: c}
		for _, o := range ops {
			p.Approvals = append(p.Approvals, o.sign(t, c.ID, c.PayloadHash(), quorum.Approve, exp()))
		}
		return p
	}
	reg := func(c quorum.Change, ops ...operator) RegistryChange {
		p := RegistryChange{Change: c}
		for _, o := range ops {
			p.Approvals = append(p.Approvals, o.sign(t, c.ID, c.PayloadHash(), quorum.Approve, exp()))
		}
		return p
	}
	replay := func(name, actor string, cmd Command) {
		t.Helper()
		before := h.encoded()
		if _, err := h.apply(actor, cmd); !errors.Is(err, ErrReplayed) {
			t.Fatalf("%s: %v, want ErrReplayed", name, err)
		}
		if string(before) != string(h.encoded()) {
			t.Fatalf("%s: the refused replay changed the state", name)
		}
	}

	// Unlock after a new lock.
	unlock := pol(policy.Change{ID: "unlock-1", Kind: policy.ChangeUnlock}, alice, carol)
	h.must("api", pol(policy.Change{ID: "lock-1", Kind: policy.ChangeLock, Reason: "drill"}, dave))
	h.must("api", unlock)
	h.now = h.now.Add(61 * time.Minute)
	h.must("api", pol(policy.Change{ID: "lock-2", Kind: policy.ChangeLock, Reason: "incident"}, dave))
	replay("old unlock after a new lock", "api", unlock)
	if r := h.create("after-lock", 9); r.Decision.Reason != policy.ReasonLocked {
		t.Fatalf("after the replay was refused the account is not locked: %s", r.Decision.Reason)
	}

	// Reactivation after a new suspension.
	h = newHarness(t)
	reactivate := reg(quorum.Change{ID: "reactivate-bob", Kind: quorum.ChangeReactivateOperator, OperatorID: bob.ID}, alice, carol)
	h.must("api", reg(quorum.Change{ID: "suspend-bob-1", Kind: quorum.ChangeSuspendOperator, OperatorID: bob.ID}, alice))
	h.must("api", reactivate)
	h.must("api", reg(quorum.Change{ID: "suspend-bob-2", Kind: quorum.ChangeSuspendOperator, OperatorID: bob.ID}, alice))
	replay("old reactivation after a new suspension", "api", reactivate)

	// Allowlist add after the removal.
	add := pol(policy.Change{ID: "allow-1", Kind: policy.ChangeAllowlistAdd, Wallet: "allow", Chain: "eth", Network: "devnet", Address: "0xdest"}, alice, carol)
	h.must("api", add)
	h.must("api", pol(policy.Change{ID: "remove-1", Kind: policy.ChangeAllowlistRemove, Wallet: "allow", Chain: "eth", Network: "devnet", Address: "0xdest"}, dave))
	replay("old allowlist add after the removal", "api", add)

	// Old rules after new ones.
	rulesSet := func(id, body string) RulesSet {
		r, err := policy.ParseRules([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		ph, err := policy.RulesChangeHash(r)
		if err != nil {
			t.Fatal(err)
		}
		return RulesSet{ID: id, Body: []byte(body), Approvals: []quorum.Approval{
			alice.sign(t, id, ph, quorum.Approve, exp()), carol.sign(t, id, ph, quorum.Approve, exp())}}
	}
	oldRules := rulesSet("rules-1", strings.Replace(testRules, `per_tx: "100"`, `per_tx: "90"`, 1))
	h.must("api", oldRules)
	h.must("api", rulesSet("rules-2", strings.Replace(testRules, `per_tx: "100"`, `per_tx: "80"`, 1)))
	replay("old rules after new ones", "api", oldRules)
}

// TestFSMApprovalValidityCeiling (SECURITY 28): an approval expiring
// further in the future than the genesis's ceiling is refused, for
// withdrawals and governance changes alike; a genesis without a ceiling, or
// with one outside its bounds, is refused.
func TestFSMApprovalValidityCeiling(t *testing.T) {
	h := newHarness(t)
	r := h.create("r1", 1)
	long := h.now.Add(49 * time.Hour) // ledgertest's ceiling is 48h
	h.refuse(ErrApproval, "api", bob.approve(t, r, long))
	h.must("api", bob.approve(t, r, h.now.Add(47*time.Hour)))
	lock := policy.Change{ID: "lock-long", Kind: policy.ChangeLock}
	h.refuse(ErrApproval, "api", PolicyChange{Change: lock, Approvals: []quorum.Approval{dave.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve, long)}})

	for _, d := range []time.Duration{0, time.Second, 31 * 24 * time.Hour} {
		g := genesisCmd()
		g.MaxApprovalValidity = d
		fresh := &fsmHarness{t: t, f: NewFSM(nil, nil), term: 1, now: fsmT0}
		fresh.refuse(ErrInvalid, "ceremony", g)
	}
}
