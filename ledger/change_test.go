package ledger_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

func (h *fsmHarness) proposal(id string) *Proposal {
	var p *Proposal
	_ = h.f.Read(func(st *State) error { p = st.Proposals[id].Clone(); return nil })
	return p
}

func (h *fsmHarness) policyState() policy.State {
	var ps policy.State
	_ = h.f.Read(func(st *State) error { ps = st.Policy; return nil })
	return ps
}

// TestFSMStagedChange: an allowlist add needs two approvals; the proposer's
// approval opens a proposal, a second operator's makes it Ready, and only
// the real policy.change carrying both applies it (and closes the
// proposal). Every bad approval is refused with the state unchanged: a
// forged signature, another change's payload, the same operator twice, a
// role that does not count, an approval beyond the ceiling, after the
// proposal expired, a rejection; a second proposal of an open ID, a
// proposal of an applied ID, a proposal whose content the real command
// refuses (an allowlist add while locked). A proposal alone changes neither
// the allowlist nor anything else.
func TestFSMStagedChange(t *testing.T) {
	h := newHarness(t)
	ch := policy.Change{ID: "add-1", Kind: policy.ChangeAllowlistAdd, Wallet: "allow", Chain: "eth", Network: "devnet",
		Address: "0x00000000000000000000000000000000000000aa", Label: "cold"}
	exp := h.now.Add(2 * time.Hour)
	sign := func(o operator, c policy.Change, e time.Time) quorum.Approval {
		return o.sign(t, c.ID, c.PayloadHash(), quorum.Approve, e)
	}
	allowBefore := len(h.policyState().Allowlist())
	h.must("api", ChangePropose{Change: ProposedChange{Policy: &ch}, Approval: sign(bob, ch, exp)})
	p := h.proposal("add-1")
	if p == nil || p.Ready || p.ProposedBy != "bob" || p.Required != 2 || len(p.Approvals) != 1 || !p.ExpiresAt.Equal(exp) {
		t.Fatalf("proposal %+v", p)
	}
	if len(h.policyState().Allowlist()) != allowBefore {
		t.Fatal("a proposal changed the allowlist")
	}

	forged := sign(alice, ch, exp)
	forged.Signature = slices.Clone(forged.Signature)
	forged.Signature[0] ^= 1
	other := ch
	other.Address = "0x00000000000000000000000000000000000000bb"
	h.refuse(ErrApproval, "api", ChangeApprove{ID: "add-1", Approval: forged})
	h.refuse(ErrApproval, "api", ChangeApprove{ID: "add-1", Approval: alice.sign(t, ch.ID, other.PayloadHash(), quorum.Approve, exp)})
	h.refuse(ErrApproval, "api", ChangeApprove{ID: "add-1", Approval: sign(bob, ch, exp)})                         // bob again
	h.refuse(ErrApproval, "api", ChangeApprove{ID: "add-1", Approval: sign(backend, ch, exp)})                     // not a role that counts
	h.refuse(ErrApproval, "api", ChangeApprove{ID: "add-1", Approval: sign(alice, ch, h.now.Add(1000*time.Hour))}) // beyond the ceiling
	h.refuse(ErrApproval, "api", ChangeApprove{ID: "add-1", Approval: alice.sign(t, ch.ID, ch.PayloadHash(), quorum.Reject, exp)})
	h.refuse(ErrConflict, "api", ChangePropose{Change: ProposedChange{Policy: &ch}, Approval: sign(alice, ch, exp)})
	h.refuse(ErrInvalid, "api", ChangePropose{Change: ProposedChange{}, Approval: sign(alice, ch, exp)})

	h.must("api", ChangeApprove{ID: "add-1", Approval: sign(alice, ch, exp)})
	p = h.proposal("add-1")
	if p == nil || !p.Ready || !slices.Equal(p.Operators(quorumOf(h)), []string{"bob", "alice"}) || len(p.ApprovedAt) != 2 {
		t.Fatalf("proposal after the second approval %+v", p)
	}
	if len(h.policyState().Allowlist()) != allowBefore {
		t.Fatal("a ready proposal changed the allowlist")
	}
	h.must("api", p.Change.Command(p.Approvals))
	if h.proposal("add-1") != nil || len(h.policyState().Allowlist()) != allowBefore+1 {
		t.Fatalf("after the real command: proposal %+v, allowlist %v", h.proposal("add-1"), h.policyState().Allowlist())
	}
	h.refuse(ErrReplayed, "api", ChangePropose{Change: ProposedChange{Policy: &ch}, Approval: sign(alice, ch, exp)})
	h.refuse(ErrReplayed, "api", ChangeApprove{ID: "add-1", Approval: sign(carol, ch, exp)})

	// Expiry: nothing is added after the proposer's approval expired, and
	// the ID may be proposed again.
	ch2 := ch
	ch2.ID, ch2.Address = "add-2", other.Address
	h.must("api", ChangePropose{Change: ProposedChange{Policy: &ch2}, Approval: sign(bob, ch2, h.now.Add(time.Minute))})
	h.now = h.now.Add(2 * time.Minute)
	h.refuse(ErrWrongStatus, "api", ChangeApprove{ID: "add-2", Approval: sign(alice, ch2, h.now.Add(time.Hour))})
	h.must("api", ChangePropose{Change: ProposedChange{Policy: &ch2}, Approval: sign(alice, ch2, h.now.Add(time.Hour))})
	if p := h.proposal("add-2"); p == nil || p.ProposedBy != "alice" || len(p.Approvals) != 1 {
		t.Fatalf("re-proposed %+v", p)
	}

	// A lock needs one operator: Ready at once. While locked, an
	// allowlist add is refused at the proposal (the real command would be).
	lock := policy.Change{ID: "lock-1", Kind: policy.ChangeLock, Wallet: "allow", Reason: "incident"}
	h.must("api", ChangePropose{Change: ProposedChange{Policy: &lock}, Approval: sign(dave, lock, exp)})
	if p := h.proposal("lock-1"); p == nil || !p.Ready {
		t.Fatalf("lock proposal %+v", p)
	}
	if _, locked := h.policyState().LockedAt("allow", h.now); locked {
		t.Fatal("a proposal locked the wallet")
	}
	lp := h.proposal("lock-1")
	h.must("api", lp.Change.Command(lp.Approvals))
	ch3 := ch
	ch3.ID, ch3.Address = "add-3", "0x00000000000000000000000000000000000000cc"
	h.refuse(ErrLocked, "api", ChangePropose{Change: ProposedChange{Policy: &ch3}, Approval: sign(bob, ch3, exp)})
}

func quorumOf(h *fsmHarness) quorum.Registry {
	var r quorum.Registry
	_ = h.f.Read(func(st *State) error { r = st.Registry; return nil })
	return r
}

// TestFSMStagedRegistryAndWallet: a registry change and a wallet create
// collect admin approvals through the staging area; the operator a change
// targets cannot approve it; the proposal is Ready only at the admin quorum.
func TestFSMStagedRegistryAndWallet(t *testing.T) {
	h := newHarness(t)
	exp := h.now.Add(time.Hour)
	susp := quorum.Change{ID: "suspend-dave", Kind: quorum.ChangeSetRoles, OperatorID: "dave", Roles: []quorum.Role{quorum.RoleApprover}}
	h.must("api", ChangePropose{Change: ProposedChange{Registry: &susp}, Approval: alice.sign(t, susp.ID, susp.PayloadHash(), quorum.Approve, exp)})
	h.refuse(ErrApproval, "api", ChangeApprove{ID: susp.ID, Approval: dave.sign(t, susp.ID, susp.PayloadHash(), quorum.Approve, exp)})
	if p := h.proposal(susp.ID); p.Ready {
		t.Fatal("ready with one admin of two")
	}
	h.must("api", ChangeApprove{ID: susp.ID, Approval: carol.sign(t, susp.ID, susp.PayloadHash(), quorum.Approve, exp)})
	if p := h.proposal(susp.ID); !p.Ready {
		t.Fatal("not ready with two admins")
	}
	spec := WalletSpec{ID: "wc-1", Wallet: "new", Chain: "eth", Network: "devnet", Committee: allSigners, Threshold: 1}
	h.must("api", ChangePropose{Change: ProposedChange{WalletCreate: &spec}, Approval: alice.sign(t, spec.ID, spec.PayloadHash(), quorum.Approve, exp)})
	h.refuse(ErrApproval, "api", ChangeApprove{ID: spec.ID, Approval: dave.sign(t, spec.ID, spec.PayloadHash(), quorum.Approve, exp)}) // not an admin
	h.must("api", ChangeApprove{ID: spec.ID, Approval: bob.sign(t, spec.ID, spec.PayloadHash(), quorum.Approve, exp)})
	p := h.proposal(spec.ID)
	var exists bool
	_ = h.f.Read(func(st *State) error { exists = st.Wallets["new"] != nil; return nil })
	if !p.Ready || exists {
		t.Fatalf("wallet proposal %+v, wallet recorded %v", p, exists)
	}
	h.must("api", p.Change.Command(p.Approvals))
	if w := h.wallet("new"); w == nil || w.Status != WalletKeygen || h.proposal(spec.ID) != nil {
		t.Fatalf("wallet %+v", w)
	}
}

// TestFSMRejectReason: a rejection's reason is recorded with the
// rejection that cancels the request; a reason with an approval, or one
// too long or with control characters, is refused with nothing changed.
func TestFSMRejectReason(t *testing.T) {
	h := newHarness(t)
	r := h.create("rr", 1)
	ap := bob.approve(t, r, h.now.Add(time.Hour))
	ap.Reason = "looks fine"
	h.refuse(ErrInvalid, "api", ap)
	rj := bob.reject(t, r, h.now.Add(time.Hour))
	for _, bad := range []string{strings.Repeat("x", MaxReasonLen+1), "line\nbreak", "evil\u202egnp.exe"} {
		rj.Reason = bad
		h.refuse(ErrInvalid, "api", rj)
	}
	rj.Reason = "unknown destination"
	if got := h.must("api", rj); got.Status != StatusRejected || got.RejectReason != "unknown destination" {
		t.Fatalf("rejected %s with reason %q", got.Status, got.RejectReason)
	}
}

// TestFSMStagingCannotBeFlooded: one operator cannot fill the staging area
// (at most MaxProposalsPerOperator of theirs open), a change the
// proposer's approval alone completes (a lock) is never capped, and an
// approval cannot outlive the proposal it joins (it could otherwise be
// harvested from the staging area and submitted later, in another state).
func TestFSMStagingCannotBeFlooded(t *testing.T) {
	h := newHarness(t)
	exp := h.now.Add(time.Hour)
	add := func(i int) policy.Change {
		return policy.Change{ID: fmt.Sprintf("flood-%d", i), Kind: policy.ChangeAllowlistAdd, Wallet: "allow", Chain: "eth", Network: "devnet",
			Address: fmt.Sprintf("0x%040x", 0x1000+i)}
	}
	for i := range MaxProposalsPerOperator {
		c := add(i)
		h.must("api", ChangePropose{Change: ProposedChange{Policy: &c}, Approval: bob.sign(t, c.ID, c.PayloadHash(), quorum.Approve, exp)})
	}
	over := add(MaxProposalsPerOperator)
	h.refuse(ErrInvalid, "api", ChangePropose{Change: ProposedChange{Policy: &over}, Approval: bob.sign(t, over.ID, over.PayloadHash(), quorum.Approve, exp)})
	// Another operator still proposes, and bob's lock is never capped.
	h.must("api", ChangePropose{Change: ProposedChange{Policy: &over}, Approval: alice.sign(t, over.ID, over.PayloadHash(), quorum.Approve, exp)})
	lock := policy.Change{ID: "lock-flood", Kind: policy.ChangeLock, Wallet: "allow", Reason: "incident"}
	h.must("api", ChangePropose{Change: ProposedChange{Policy: &lock}, Approval: bob.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve, exp)})

	// An approval expiring after its proposal is refused; one within it
	// is taken.
	c := add(1000)
	h.must("api", ChangePropose{Change: ProposedChange{Policy: &c}, Approval: alice.sign(t, c.ID, c.PayloadHash(), quorum.Approve, h.now.Add(time.Minute))})
	h.refuse(ErrApproval, "api", ChangeApprove{ID: c.ID, Approval: carol.sign(t, c.ID, c.PayloadHash(), quorum.Approve, h.now.Add(40*time.Hour))})
	h.must("api", ChangeApprove{ID: c.ID, Approval: carol.sign(t, c.ID, c.PayloadHash(), quorum.Approve, h.now.Add(time.Minute))})
}
