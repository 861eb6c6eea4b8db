package member_test

import (
	"errors"
	"testing"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// TestCompromisedLeaderCannotMakeMemberSign drives an honest member with
// the claims a compromised leader (or a rewritten ledger) could present.
// Every refusal must leave no watermark reservation, unseal no share and
// start no tss session. Then the genuine claim still signs, and a lock
// committed before a claim stops everything (invariant 5).
func TestCompromisedLeaderCannotMakeMemberSign(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	signers := []pki.NodeID{"n1", "n2"}

	// (a) A request lacking the quorum: one approval of two.
	q := h.request("wd-q", h.dests[0], ether(1, 0), bob)
	if q.Status != ledger.StatusAwaitingApprovals {
		t.Fatalf("wd-q: %s", q.Status)
	}
	uq := h.unsigned(*q.Nonce, h.dests[0], ether(1, 0))
	fabricated := member.Claim{SessionID: tss.NewSessionID(), Index: q.CreatedIdx, Signers: signers, PayloadHash: q.PayloadHash, Digest: uq.SigningHash()}
	t.Run("fabricated claim", func(t *testing.T) {
		h.refused(n1, n1.m, "wd-q", *q.Nonce, fabricated, member.ErrClaimMismatch)
	})
	t.Run("claimed in a forged ledger without quorum", func(t *testing.T) {
		sess := tss.NewSessionID()
		forgedClaim := func(st *ledger.State) {
			r := st.Requests["wd-q"]
			r.Status = ledger.StatusClaimed
			r.Claim = &ledger.Claim{SessionID: sess.String(), Signers: []pki.NodeID{"n1", "n2"}, Index: 1, Term: 1, At: st.Clock}
		}
		c := member.Claim{SessionID: sess, Index: 1, Signers: signers, PayloadHash: q.PayloadHash, Digest: uq.SigningHash()}
		m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: forgedClaim})
		h.refused(n1, m, "wd-q", *q.Nonce, c, member.ErrQuorum, quorum.ErrInsufficientApprovals)

		// Plus a second "approval" whose signature does not verify.
		bad := carol.sign(t, "wd-q", q.PayloadHash, quorum.Approve)
		bad.Signature[0] ^= 1
		m = h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) {
			forgedClaim(st)
			st.Requests["wd-q"].Approvals = append(st.Requests["wd-q"].Approvals, bad)
		}})
		h.refused(n1, m, "wd-q", *q.Nonce, c, member.ErrQuorum)
	})

	// (b) A genuinely claimed request; the leader asks for another tx.
	b := h.request("wd-b", h.dests[0], ether(1, 0), bob, carol)
	claimB, err := h.orch.Claim(h.ctx, "wd-b", signers)
	if err != nil {
		t.Fatal(err)
	}
	altered := h.unsigned(*b.Nonce, h.dests[1], ether(9, 0))
	t.Run("other digest", func(t *testing.T) {
		c := claimB
		c.Digest = altered.SigningHash()
		h.refused(n1, n1.m, "wd-b", *b.Nonce, c, member.ErrPayload)
	})
	t.Run("signers other than the ledger's claim", func(t *testing.T) {
		c := claimB
		c.Signers = []pki.NodeID{"n1", "n3"}
		h.refused(n1, n1.m, "wd-b", *b.Nonce, c, member.ErrClaimMismatch)
		c.Signers = []pki.NodeID{"n1", "n2", "n3"}
		h.refused(n1, n1.m, "wd-b", *b.Nonce, c, member.ErrClaimMismatch)
	})
	t.Run("other payload hash", func(t *testing.T) {
		c := claimB
		c.PayloadHash, c.Digest = altered.PayloadHash(), altered.SigningHash()
		h.refused(n1, n1.m, "wd-b", *b.Nonce, c, member.ErrPayload)
	})
	t.Run("stored tx swapped after approval", func(t *testing.T) {
		m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) {
			st.Requests["wd-b"].Payload = altered.Bytes()
		}})
		h.refused(n1, m, "wd-b", *b.Nonce, claimB, member.ErrPayload)
	})
	t.Run("stored tx and hash swapped after approval", func(t *testing.T) {
		m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) {
			r := st.Requests["wd-b"]
			r.Payload, r.PayloadHash = altered.Bytes(), altered.PayloadHash()
			r.To = h.dests[1].Hex()
			r.Amount, _ = amount.ParseBase(ether(9, 0).String())
		}})
		c := claimB
		c.PayloadHash, c.Digest = altered.PayloadHash(), altered.SigningHash()
		h.refused(n1, m, "wd-b", *b.Nonce, c, member.ErrQuorum)
	})
	t.Run("tx may pay a higher fee than the request names", func(t *testing.T) {
		m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) {
			st.Requests["wd-b"].MaxFee = amount.FromUint64(1)
		}})
		h.refused(n1, m, "wd-b", *b.Nonce, claimB, member.ErrPayload)
	})
	t.Run("tx pays another address than the request", func(t *testing.T) {
		m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) {
			st.Requests["wd-b"].To = h.dests[1].Hex()
		}})
		h.refused(n1, m, "wd-b", *b.Nonce, claimB, member.ErrPayload)
	})
	// None of that left anything behind: the genuine claim signs.
	signedB, err := h.orch.Collect(h.ctx, "wd-b", claimB)
	if err != nil {
		t.Fatalf("genuine claim after the refusals: %v", err)
	}
	if got := h.read("wd-b"); got.Status != ledger.StatusSigned || string(got.Result.Signed) != string(signedB.Raw) {
		t.Fatalf("wd-b: %s", got.Status)
	}

	// (c) Claimed, then the destination leaves the allowlist.
	c := h.request("wd-c", h.dests[1], ether(1, 0), bob, carol)
	claimC, err := h.orch.Claim(h.ctx, "wd-c", signers)
	if err != nil {
		t.Fatal(err)
	}
	d := h.request("wd-d", h.dests[0], ether(1, 0), bob, carol)
	claimD, err := h.orch.Claim(h.ctx, "wd-d", signers)
	if err != nil {
		t.Fatal(err)
	}
	rm := policy.Change{ID: "remove-1", Kind: policy.ChangeAllowlistRemove, Wallet: walletID, Chain: "eth", Network: network, Address: h.dests[1].Hex()}
	h.propose("bob", ledger.PolicyChange{Change: rm, Approvals: []quorum.Approval{bob.sign(t, rm.ID, rm.PayloadHash(), quorum.Approve)}})
	t.Run("destination removed from the allowlist after the claim", func(t *testing.T) {
		h.refused(n1, n1.m, "wd-c", *c.Nonce, claimC, member.ErrPolicy, policy.ErrNotAllowlisted)
	})

	// (c, 4) The account is locked: a claimed request and an approved one.
	l := h.request("wd-l", h.dests[0], ether(1, 0), bob, carol)
	lock := policy.Change{ID: "lock-1", Kind: policy.ChangeLock, Reason: "suspected takeover"}
	h.propose("carol", ledger.PolicyChange{Change: lock, Approvals: []quorum.Approval{carol.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve)}})
	t.Run("account locked after the claim", func(t *testing.T) {
		h.refused(n1, n1.m, "wd-d", *d.Nonce, claimD, member.ErrPolicy, policy.ErrLocked)
		h.refused(h.members["n2"], h.members["n2"].m, "wd-d", *d.Nonce, claimD, member.ErrPolicy, policy.ErrLocked)
	})
	t.Run("account locked before the claim", func(t *testing.T) {
		if _, err := h.orch.Claim(h.ctx, "wd-l", signers); !errors.Is(err, ledger.ErrLocked) {
			t.Fatalf("claim while locked: %v, want ledger.ErrLocked", err)
		}
		ul := h.unsigned(*l.Nonce, h.dests[0], ether(1, 0))
		c := member.Claim{SessionID: tss.NewSessionID(), Index: l.UpdatedIdx, Signers: signers, PayloadHash: l.PayloadHash, Digest: ul.SigningHash()}
		h.refused(n1, n1.m, "wd-l", *l.Nonce, c, member.ErrClaimMismatch)
		if got := h.read("wd-l"); got.Status != ledger.StatusApproved || got.Result != nil {
			t.Fatalf("wd-l after the refused claim: %s", got.Status)
		}
	})
}
