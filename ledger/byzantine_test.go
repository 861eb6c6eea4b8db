package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// byzHarness is a three-node cluster whose node n3 is Byzantine and leads
// (docs/trust.md, holes 2–6): every attack below is a command it appends
// to the real log, which every node applies with its own FSM.
type byzHarness struct {
	t *testing.T
	c *ledgertest.Cluster
	*ledgertest.Byzantine
	// honest is the clock the honest nodes stamp when they lead (they do
	// not here) and the time operators sign by.
	honest *ledgertest.Clock
}

func newByzHarness(t *testing.T) *byzHarness {
	t.Helper()
	t0 := time.Now().UTC().Truncate(time.Second)
	honest, clock := ledgertest.NewClock(t0), ledgertest.NewClock(t0)
	c := newCluster(t, 3, ledgertest.NodeClock("n3", clock, func(cfg *Config) { cfg.Clock = honest.Now }))
	seed(c)
	h := &byzHarness{t: t, c: c, Byzantine: ledgertest.NewByzantine(c, "n3", clock), honest: honest}
	h.Lead()
	return h
}

// must appends cmd as actor; the Byzantine node's FSM must accept it.
func (h *byzHarness) must(actor string, cmd Command) *Request {
	h.t.Helper()
	out, err := h.Append(actor, cmd)
	if err != nil {
		h.t.Fatalf("%s: %v", cmd.Type(), err)
	}
	return out.Request
}

// refused appends cmd as actor and checks that the Byzantine node's FSM
// refuses it with want and that every node refused it: a marker committed
// behind it reaches every node, whose audit chain goes straight from the
// last change before the attack to the marker (the attack changed nothing,
// not even the index or the clock), and all nodes hold the same state.
func (h *byzHarness) refused(what, actor string, cmd Command, want error) {
	h.t.Helper()
	last := h.Node.Store.StateIndex()
	_, err := h.Append(actor, cmd)
	h.t.Logf("%s: %v", what, err)
	if !errors.Is(err, want) {
		h.t.Fatalf("%s: %v, want %v", what, err, want)
	}
	mark, err := h.Append("ledger-test", WalletSet{Wallet{ID: fmt.Sprintf("marker-%d", last), Chain: "eth", Network: "devnet",
		Committee: allSigners, Threshold: 2}})
	if err != nil {
		h.t.Fatalf("marker after %s: %v", what, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ledgertest.Wait)
	defer cancel()
	for _, n := range h.c.Nodes {
		if err := n.Store.ReadAtLeast(ctx, mark.Index, func(st *State) error {
			if k := len(st.Audit); k < 2 || st.Audit[k-1].Index != mark.Index || st.Audit[k-2].Index != last {
				return fmt.Errorf("%s recorded something between index %d and the marker at %d", n.ID, last, mark.Index)
			}
			return nil
		}); err != nil {
			h.t.Fatalf("%s: %v", what, err)
		}
	}
	h.c.WaitConverged(h.c.Nodes...)
}

// read returns what fn computes from every node's state, checking that the
// nodes agree (after converging).
func (h *byzHarness) read(what string, fn func(*State) string) string {
	h.t.Helper()
	h.c.WaitConverged(h.c.Nodes...)
	var first string
	for i, n := range h.c.Nodes {
		var got string
		_ = n.Store.ReadLocal(func(st *State) error { got = fn(st); return nil })
		if i == 0 {
			first = got
		} else if got != first {
			h.t.Fatalf("%s: %s has %q, %s has %q", what, h.c.Nodes[0].ID, first, n.ID, got)
		}
	}
	return first
}

// exp is an approval expiry an hour after the honest clock.
func (h *byzHarness) exp() time.Time { return h.honest.Now().Add(time.Hour) }

func (h *byzHarness) create(id string, nonce uint64) *Request {
	h.t.Helper()
	c := createCmd(id, nonce)
	c.ExpiresAt = h.honest.Now().Add(24 * time.Hour)
	return h.must("backend", initiated(c, backend, h.exp()))
}

func (h *byzHarness) approved(id string, nonce uint64) *Request {
	h.t.Helper()
	r := h.create(id, nonce)
	h.must("api", bob.approve(h.t, r, h.exp()))
	if r = h.must("api", dave.approve(h.t, r, h.exp())); r.Status != StatusApproved {
		h.t.Fatalf("%s is %s after two approvals", id, r.Status)
	}
	return r
}

func (h *byzHarness) claim(id string) ClaimSession {
	h.t.Helper()
	c, err := h.Node.Store.PrepareClaim(id, allSigners)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *byzHarness) policyChange(c policy.Change, ops ...operator) PolicyChange {
	p := PolicyChange{Change: c}
	for _, o := range ops {
		p.Approvals = append(p.Approvals, o.sign(h.t, c.ID, c.PayloadHash(), quorum.Approve, h.exp()))
	}
	return p
}

func (h *byzHarness) registryChange(c quorum.Change, ops ...operator) RegistryChange {
	p := RegistryChange{Change: c}
	for _, o := range ops {
		p.Approvals = append(p.Approvals, o.sign(h.t, c.ID, c.PayloadHash(), quorum.Approve, h.exp()))
	}
	return p
}

// TestByzantineLeaderReplayRefused (hole 2, SECURITY 28): the Byzantine
// leader appends applied governance changes again after their
// counter-changes (an allowlist add after its removal, an unlock after a new
// lock, a reactivation after a new suspension), an old unlock's approvals
// under a fresh change ID, and a second genesis naming its own operator.
// Every node refuses each one and the state stays what the operators made it.
func TestByzantineLeaderReplayRefused(t *testing.T) {
	h := newByzHarness(t)
	dest := policy.Change{Kind: policy.ChangeAllowlistAdd, Wallet: "allow", Chain: "eth", Network: "devnet", Address: "0xdest"}
	add := dest
	add.ID = "allow-1"
	addCmd := h.policyChange(add, alice, carol)
	h.must("api", addCmd)
	remove := dest
	remove.ID, remove.Kind = "remove-1", policy.ChangeAllowlistRemove
	h.must("api", h.policyChange(remove, dave))

	h.must("api", h.policyChange(policy.Change{ID: "lock-1", Kind: policy.ChangeLock, Reason: "drill"}, dave))
	unlock := policy.Change{ID: "unlock-1", Kind: policy.ChangeUnlock}
	unlockCmd := h.policyChange(unlock, alice, carol)
	h.must("api", unlockCmd)
	h.honest.Advance(61 * time.Minute)
	h.Clock.Set(h.honest.Now())
	h.must("api", h.policyChange(policy.Change{ID: "lock-2", Kind: policy.ChangeLock, Reason: "incident"}, dave))

	h.must("api", h.registryChange(quorum.Change{ID: "suspend-bob-1", Kind: quorum.ChangeSuspendOperator, OperatorID: bob.ID}, alice))
	reactivate := h.registryChange(quorum.Change{ID: "reactivate-bob", Kind: quorum.ChangeReactivateOperator, OperatorID: bob.ID}, alice, carol)
	h.must("api", reactivate)
	h.must("api", h.registryChange(quorum.Change{ID: "suspend-bob-2", Kind: quorum.ChangeSuspendOperator, OperatorID: bob.ID}, alice))

	h.refused("old allowlist add after the removal", "api", addCmd, ErrReplayed)
	h.refused("old unlock after a new lock", "api", unlockCmd, ErrReplayed)
	h.refused("old reactivation after a new suspension", "api", reactivate, ErrReplayed)
	renamed := unlockCmd
	renamed.Change.ID = "unlock-1-again"
	h.refused("old unlock's approvals under a new change ID", "api", renamed, ErrQuorum)
	g := genesisCmd()
	mallory := ledgertest.NewOperator("mallory", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	g.Operators = append(g.Operators, quorum.Operator{ID: mallory.ID, Name: mallory.ID, Kind: mallory.Kind, Roles: mallory.Roles, Status: quorum.StatusActive})
	g.Devices = append(g.Devices, mallory.Device())
	h.refused("a second genesis with the leader's own operator", "ceremony", g, ErrGenesisMismatch)

	got := h.read("state after the replays", func(st *State) string {
		_, locked := st.Policy.LockedAt("hot", st.Clock)
		_, hasMallory := st.Registry.Operators[mallory.ID]
		return fmt.Sprintf("locked=%v allowlist=%d bob=%s mallory=%v", locked, len(st.Policy.Allowlist()),
			st.Registry.Operators[bob.ID].Status, hasMallory)
	})
	if want := "locked=true allowlist=0 bob=suspended mallory=false"; got != want {
		t.Fatalf("state after the refused replays: %s, want %s", got, want)
	}
}

// TestByzantineLeaderClock (hole 3, SECURITY 29): the ledger's clock is
// the leader's word, so what the ledger does with a Byzantine leader's
// times is only bounded, never trusted. A backdated stamp does not move the
// ledger's clock back on any node (the entry is applied at the ledger's
// clock); a frozen clock is accepted: the ledger keeps counting approvals
// that expired by the operators' clock and grants a claim (members judge
// expiry on their own clocks and refuse: signer/member
// TestByzantineLeaderFrozenClock); a future stamp moves the ledger's clock
// forward on every node, and it stays there (members refuse a ledger clock
// ahead of theirs: TestByzantineLeaderFutureClock).
func TestByzantineLeaderClock(t *testing.T) {
	h := newByzHarness(t)
	t0 := h.honest.Now()
	clock := func() string {
		return h.read("ledger clock", func(st *State) string {
			last := st.Audit[len(st.Audit)-1]
			return st.Clock.Format(time.RFC3339) + " audit " + last.Time.Format(time.RFC3339)
		})
	}
	at := func(tm time.Time) string { return tm.Format(time.RFC3339) + " audit " + tm.Format(time.RFC3339) }

	// Backdated: a lock stamped a day ago is applied at the ledger's clock.
	h.Clock.Set(t0.Add(-24 * time.Hour))
	lock := h.policyChange(policy.Change{ID: "lock-backdated", Kind: policy.ChangeLock, Reason: "drill"}, dave)
	h.must("api", lock)
	if got := clock(); got != at(t0) {
		t.Fatalf("after a backdated lock the ledger clock is %s, want %s", got, at(t0))
	}
	lockedAt := h.read("lock time", func(st *State) string {
		l, _ := st.Policy.LockedAt("hot", st.Clock)
		return l.LockedAt.UTC().Format(time.RFC3339)
	})
	if lockedAt != t0.Format(time.RFC3339) {
		t.Fatalf("lock recorded at %s, want the ledger clock %s", lockedAt, t0.Format(time.RFC3339))
	}
	h.honest.Advance(61 * time.Minute)
	h.Clock.Set(h.honest.Now())
	h.must("api", h.policyChange(policy.Change{ID: "unlock-backdated", Kind: policy.ChangeUnlock}, alice, carol))
	h.honest.Advance(61 * time.Minute)
	h.Clock.Set(h.honest.Now())

	// Frozen: approvals expiring in 30 minutes, then the operators' clock
	// moves an hour on while the leader's stands still.
	t1 := h.honest.Now()
	r := h.create("frozen", 1)
	h.must("api", bob.approve(t, r, t1.Add(30*time.Minute)))
	h.must("api", dave.approve(t, r, t1.Add(30*time.Minute)))
	h.honest.Advance(time.Hour)
	claimed := h.must("n3", h.claim(r.ID))
	if claimed.Status != StatusClaimed {
		t.Fatalf("claim under a frozen clock: %s", claimed.Status)
	}
	if got := clock(); got != at(t1) {
		t.Fatalf("under a frozen leader clock the ledger clock is %s, want %s", got, at(t1))
	}

	// Future: a day ahead, then back; the ledger's clock stays ahead.
	future := h.honest.Now().Add(24 * time.Hour)
	h.Clock.Set(future)
	h.must("keygen", WalletSet{Wallet{ID: "future", Chain: "eth", Network: "devnet", Committee: allSigners, Threshold: 2}})
	h.Clock.Set(h.honest.Now())
	h.must("keygen", WalletSet{Wallet{ID: "after-future", Chain: "eth", Network: "devnet", Committee: allSigners, Threshold: 2}})
	if got := clock(); got != at(future) {
		t.Fatalf("after a future stamp the ledger clock is %s, want it to stay at %s", got, at(future))
	}
}

// TestByzantineLeaderFeeOverCap (hole 4, SECURITY 30): the Byzantine leader
// appends a create whose maximum fee is over the rule's cap. Every node
// records it denied (fee_over_cap) and allocates nothing; its claim, an
// approval of it, and the same request ID again with the fee lowered are
// refused everywhere. (A leader naming a lower fee than its transaction
// pays is refused by members: signer/member TestByzantineLeaderFee.)
func TestByzantineLeaderFeeOverCap(t *testing.T) {
	h := newByzHarness(t)
	c := createCmd("fee-over", 1)
	c.ExpiresAt = h.honest.Now().Add(24 * time.Hour)
	c.MaxFee, _ = amount.ParseUnits("0.5", 18) // the "hot" rule caps 0.01 ETH
	c = initiated(c, backend, h.exp())
	r := h.must("backend", c)
	got := h.read("fee-over", func(st *State) string {
		x := st.Requests["fee-over"]
		return fmt.Sprintf("%s/%s nonce held by %q", x.Status, x.Decision.Reason, st.Nonces[NonceKey("hot", 1)])
	})
	if want := fmt.Sprintf("%s/%s nonce held by \"\"", StatusRejected, policy.ReasonFeeOverCap); got != want {
		t.Fatalf("create with a fee over the cap: %s, want %s", got, want)
	}
	h.refused("claim of the denied request", "n3", h.claim(r.ID), ErrWrongStatus)
	h.refused("approval of the denied request", "api", bob.approve(t, r, h.exp()), ErrWrongStatus)
	lower := c
	lower.MaxFee, _ = amount.ParseUnits("0.001", 18)
	h.refused("the denied request ID again with a lower fee", "backend", lower, ErrConflict)
}

// TestByzantineLeaderRejectionCancels (hole 5, SECURITY 32): an operator
// rejects a request after its quorum was met; every node cancels it. The
// Byzantine leader then claims it, claims it expecting its rejected status,
// re-appends the approvals, re-claims it as if a session had failed, and
// re-creates it under a new ID with the old initiation: every node refuses
// each one. A rejection after the claim is refused: the point of no return.
func TestByzantineLeaderRejectionCancels(t *testing.T) {
	h := newByzHarness(t)
	r := h.approved("rejected", 1)
	bobsApproval := r.Approvals[0]
	if got := h.must("api", bob.reject(t, r, h.exp())); got.Status != StatusRejected {
		t.Fatalf("rejection after the quorum: %s", got.Status)
	}
	if got := h.read("nonce", func(st *State) string { return st.Nonces[NonceKey("hot", 1)] }); got != "" {
		t.Fatalf("the rejected request's nonce is still held by %q", got)
	}

	h.refused("claim after the rejection", "n3", h.claim(r.ID), ErrWrongStatus)
	asRejected := h.claim(r.ID)
	asRejected.ExpectStatus = StatusRejected
	h.refused("claim expecting the rejected status", "n3", asRejected, ErrWrongStatus)
	h.refused("bob's approval appended again", "api", Approve{RequestID: r.ID, Approval: bobsApproval}, ErrWrongStatus)
	h.refused("a new approval after the rejection", "api", alice.approve(t, r, h.exp()), ErrWrongStatus)
	h.refused("reclaim of the rejected request", "n3", ReclaimSession{RequestID: r.ID, FailedSession: asRejected.SessionID,
		SessionID: h.claim(r.ID).SessionID, Term: h.Term(), Signers: allSigners}, ErrWrongStatus)
	again := r.RequestCreate
	again.ID = "rejected-again"
	h.refused("re-created under a new ID with the old initiation", "backend", again, ErrInitiation)
	if got := h.read("status", func(st *State) string { return string(st.Requests[r.ID].Status) }); got != string(StatusRejected) {
		t.Fatalf("after the attacks the request is %s", got)
	}

	// After the claim a rejection no longer cancels.
	c := h.approved("claimed", 2)
	h.must("n3", h.claim(c.ID))
	// The nodes attest the claim (entries of their own); let them land
	// before the attempt, whose check is that nothing lands beside it.
	ledgertest.Poll(t, "the claim attested on every node", func() error {
		for _, n := range h.c.Nodes {
			var ok bool
			_ = n.Store.ReadLocal(func(st *State) error {
				r := st.Requests[c.ID]
				ok = r != nil && r.Claim != nil && r.Claim.Attested
				return nil
			})
			if !ok {
				return fmt.Errorf("%s: not attested", n.ID)
			}
		}
		return nil
	})
	h.refused("rejection after the claim", "api", bob.reject(t, c, h.exp()), ErrWrongStatus)
}

// TestByzantineLeaderInitiator (hole 6, SECURITY 31): the initiator is
// whoever signed the create, never the leader's word. The Byzantine leader
// appends creates without an initiation, with another request's, and with
// the backend's initiation over an amount it changed: refused everywhere.
// A create initiated by dave that the leader labels as the backend's is
// recorded as dave's on every node, and dave's approval of it is refused.
func TestByzantineLeaderInitiator(t *testing.T) {
	h := newByzHarness(t)
	fresh := createCmd("init-1", 1)
	fresh.ExpiresAt = h.honest.Now().Add(24 * time.Hour)
	none := fresh
	none.Initiation = nil
	h.refused("create without an initiation", "backend", none, ErrInitiation)
	other := initiated(createCmd("init-other", 1), backend, h.exp())
	borrowed := fresh
	borrowed.Initiation = other.Initiation
	h.refused("create with another request's initiation", "backend", borrowed, ErrInitiation)
	tampered := initiated(fresh, backend, h.exp())
	tampered.Amount = amount.FromUint64(999_999)
	h.refused("create with the amount changed after the initiator signed", "backend", tampered, ErrInitiation)

	r := h.must("backend", initiated(fresh, dave, h.exp()))
	if got := h.read("initiator", func(st *State) string { return st.Requests[r.ID].Initiator }); got != dave.ID {
		t.Fatalf("initiator %q, want the signer %q", got, dave.ID)
	}
	h.refused("the initiator's own approval", "api", dave.approve(t, r, h.exp()), ErrApproval)
}
