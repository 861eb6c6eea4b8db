package member_test

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// The tests of this file run the harness with node n3 Byzantine
// (docs/trust.md): a real member of the raft cluster that leads, stamps its
// own clock and appends what it likes; the orchestration runs on it. Nodes
// n1 and n2 are honest: their members read their own replicas (LocalLedger
// over their real stores, the read index from the leader) and judge time by
// the harness's clock. Every claim the Byzantine leader gets committed or
// makes up is handed to both honest members, and neither signs.

var (
	honestSigners = []pki.NodeID{"n1", "n2"}
	byzantineID   = pki.NodeID("n3")
)

// newByzantineHarness is newHarness with n3 Byzantine and leading, its
// clock set to the members' time. The Byzantine clock stands still from
// there unless a test moves it: moving only h.clock (the members' time) on
// makes whatever the leader stamps next backdated.
func newByzantineHarness(t *testing.T) (*harness, *ledgertest.Byzantine) {
	t.Helper()
	clock := ledgertest.NewClock(time.Now().UTC().Truncate(time.Second).Add(-3 * time.Hour))
	h := newHarness(t, ledgertest.NodeClock(byzantineID, clock, nil))
	b := ledgertest.NewByzantine(h.cluster, byzantineID, clock)
	b.Lead()
	h.orch = h.orchestrator(b.Node.Store, "node:"+string(byzantineID))
	b.Clock.Set(h.clock.Now())
	return h, b
}

// noHonestSigns hands c for request r to each honest member, which must
// refuse it with every error of want and reserve, unseal and start nothing.
func (h *harness) noHonestSigns(requestID string, nonce uint64, c member.Claim, want ...error) {
	h.t.Helper()
	for _, id := range honestSigners {
		mb := h.members[id]
		h.refused(mb, mb.m, requestID, nonce, c, want...)
	}
}

// grantedClaim creates a withdrawal of 1 ETH to dest approved by bob and
// carol and claims it for the honest signers: the ledger must approve it
// and grant the claim.
func (h *harness) grantedClaim(id string, dest common.Address) (*ledger.Request, member.Claim) {
	h.t.Helper()
	r := h.request(id, dest, ether(1, 0), bob, carol)
	if r.Status != ledger.StatusApproved {
		h.t.Fatalf("the ledger did not approve %s: %s (%s)", id, r.Status, r.Decision.Reason)
	}
	c, err := h.orch.Claim(h.ctx, r.ID, honestSigners)
	if err != nil {
		h.t.Fatalf("the ledger refused the claim of %s: %v", id, err)
	}
	return r, c
}

// appended has the Byzantine leader append cmd as actor; its FSM must
// accept it.
func appended(t *testing.T, b *ledgertest.Byzantine, actor string, cmd ledger.Command) ledger.Outcome {
	t.Helper()
	out, err := b.Append(actor, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd.Type(), err)
	}
	return out
}

// TestByzantineLeaderBackdatedUnlock (hole 3, SECURITY 29): the Byzantine
// leader's clock stands still while the members' runs on an hour; it stamps
// the operators' lock and unlock with its hour-old time, then stamps the
// members' time on a claim: in ledger time the unlock delay is over and the
// claim is granted. The honest members count the delay from when they
// first saw the unlock by their own clocks, and refuse.
func TestByzantineLeaderBackdatedUnlock(t *testing.T) {
	h, b := newByzantineHarness(t)
	r := h.request("wd-byz-unlock", h.dests[0], ether(1, 0), bob, carol)
	h.clock.Advance(time.Hour + time.Minute)
	lock := policy.Change{ID: "lock-byz", Kind: policy.ChangeLock, Reason: "drill"}
	appended(t, b, "bob", ledger.PolicyChange{Change: lock, Approvals: []quorum.Approval{bob.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve)}})
	unlock := policy.Change{ID: "unlock-byz", Kind: policy.ChangeUnlock}
	appended(t, b, "alice", ledger.PolicyChange{Change: unlock, Approvals: []quorum.Approval{
		alice.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve), carol.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve)}})
	h.observe()

	b.Clock.Set(h.clock.Now())
	c, err := h.orch.Claim(h.ctx, r.ID, honestSigners)
	if err != nil {
		t.Fatalf("the ledger refused the claim after the backdated unlock: %v", err)
	}
	h.noHonestSigns(r.ID, *r.Nonce, c, member.ErrPolicy, policy.ErrLocked)
}

// TestByzantineLeaderBackdatedAllowlist (hole 3, SECURITY 29): an
// allowlist addition the Byzantine leader stamps an hour behind the
// members' clocks has cooled off in ledger time once it stamps their time:
// the ledger approves and claims a withdrawal to it. The honest members
// count the cooling-off from when they first saw the addition, and refuse.
func TestByzantineLeaderBackdatedAllowlist(t *testing.T) {
	h, b := newByzantineHarness(t)
	h.clock.Advance(time.Hour + time.Minute)
	fresh := h.allowlist("allow-byz")
	b.Clock.Set(h.clock.Now())
	r, c := h.grantedClaim("wd-byz-allow", fresh)
	h.noHonestSigns(r.ID, *r.Nonce, c, member.ErrPolicy, policy.ErrCoolingOff)
}

// TestByzantineLeaderFrozenClock (hole 3, SECURITY 29): the Byzantine
// leader's clock stands still while the members' runs on past the expiry
// of the approvals; the ledger still counts them and grants the claim. The
// honest members judge expiry on their own clocks: no quorum.
func TestByzantineLeaderFrozenClock(t *testing.T) {
	h, b := newByzantineHarness(t)
	r := h.request("wd-byz-frozen", h.dests[0], ether(1, 0))
	exp := h.clock.Now().Add(30 * time.Minute)
	for _, o := range []operator{bob, carol} {
		if _, err := h.orch.Approve(h.ctx, r.ID, o.Sign(t, clusterID, r.ID, r.PayloadHash, quorum.Approve, exp)); err != nil {
			t.Fatal(err)
		}
	}
	h.clock.Advance(time.Hour)
	c, err := h.orch.Claim(h.ctx, r.ID, honestSigners)
	if err != nil {
		t.Fatalf("the ledger refused the claim under the frozen clock: %v", err)
	}
	if at := h.read(r.ID).Claim.At; !at.Equal(b.Clock.Now()) {
		t.Fatalf("claimed at %s, want the leader's frozen time %s", at, b.Clock.Now())
	}
	h.noHonestSigns(r.ID, *r.Nonce, c, member.ErrQuorum)
}

// TestByzantineLeaderFutureClock (hole 3): the Byzantine leader stamps a
// time past a fresh allowlist entry's cooling-off, so the ledger approves
// and claims a withdrawal to it at once. The honest members refuse a ledger
// clock running ahead of theirs.
func TestByzantineLeaderFutureClock(t *testing.T) {
	h, b := newByzantineHarness(t)
	fresh := h.allowlist("allow-future")
	b.Clock.Set(h.clock.Now().Add(testCoolingOff + time.Minute))
	r, c := h.grantedClaim("wd-byz-future", fresh)
	h.noHonestSigns(r.ID, *r.Nonce, c, member.ErrLedgerClock)
}

// TestByzantineLeaderFee (hole 4, SECURITY 30): the Byzantine leader builds
// a 0.1 ETH transfer that may pay 0.021 ETH in gas (the rule caps 0.01).
// Naming that fee in the create gets it denied on the ledger, and its claim
// refused; naming a fee under the cap gets it approved and claimed, and the
// honest members, reading the fee from the transaction itself, refuse.
func TestByzantineLeaderFee(t *testing.T) {
	h, b := newByzantineHarness(t)
	create := func(id string, nonce uint64, named *big.Int) (ledger.RequestCreate, *eth.Unsigned) {
		u, err := eth.NewUnsigned(eth.Intent{ChainID: big.NewInt(simChainID), Nonce: nonce, To: h.dests[0], Asset: eth.Asset{Symbol: "ETH", Decimals: 18},
			Amount: ether(0, 1), GasLimit: 21000, Fees: eth.Fees{GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(1e12)}})
		if err != nil {
			t.Fatal(err)
		}
		amt, _ := amount.FromBig(ether(0, 1))
		fee, _ := amount.FromBig(named)
		init := h.initiate(id, h.dests[0], ether(0, 1))
		return ledger.RequestCreate{ID: id, Withdrawal: policy.Withdrawal{Wallet: walletID, Asset: "ETH", Chain: "eth", Network: network,
			To: h.dests[0].Hex(), Amount: amt, MaxFee: fee}, Payload: u.Bytes(), PayloadHash: u.PayloadHash(), Nonce: ptr(nonce),
			ExpiresAt: time.Now().Add(time.Hour), Initiation: &init}, u
	}

	honest, u := create("wd-byz-fee", 40, u256(21000*1e12))
	r := appended(t, b, "node:n3", honest).Request
	if r.Status != ledger.StatusRejected || r.Decision.Reason != policy.ReasonFeeOverCap {
		t.Fatalf("create naming a fee over the cap: %s (%s)", r.Status, r.Decision.Reason)
	}
	c, _ := claimAnyway(t, b, r.ID, r.PayloadHash, u.SigningHash(), ledger.ErrWrongStatus)
	h.noHonestSigns(r.ID, 40, c, member.ErrClaimMismatch)

	lying, _ := create("wd-byz-fee-lie", 41, u256(1e15))
	r = appended(t, b, "node:n3", lying).Request
	var err error
	for _, o := range []operator{bob, carol} {
		if r, err = h.orch.Approve(h.ctx, r.ID, o.sign(t, r.ID, r.PayloadHash, quorum.Approve)); err != nil {
			t.Fatal(err)
		}
	}
	if r.Status != ledger.StatusApproved {
		t.Fatalf("create naming a fee under the cap: %s (%s)", r.Status, r.Decision.Reason)
	}
	if c, err = h.orch.Claim(h.ctx, r.ID, honestSigners); err != nil {
		t.Fatal(err)
	}
	h.noHonestSigns(r.ID, 41, c, member.ErrPayload)
}

func u256(n uint64) *big.Int { return new(big.Int).SetUint64(n) }

// claimAnyway has the Byzantine leader append a claim of request id for the
// honest signers, expects its FSM's refusal want, and returns the member
// claim the leader hands out for it all the same, over payload hash ph and
// digest, at the ledger's current index (which the members can read; the
// refused entry's own index, also returned, is beyond what they can read:
// no state ever reaches it).
func claimAnyway(t *testing.T, b *ledgertest.Byzantine, id string, ph quorum.Hash, digest [32]byte, want error) (c member.Claim, refusedAt uint64) {
	t.Helper()
	cl, err := b.Node.Store.PrepareClaim(id, honestSigners)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Append("node:"+string(byzantineID), cl)
	if !errors.Is(err, want) {
		t.Fatalf("claim of %s: %v, want %v", id, err, want)
	}
	sid, err := tss.ParseSessionID(cl.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	return member.Claim{SessionID: sid, Index: b.Node.Store.StateIndex(), Signers: honestSigners, PayloadHash: ph, Digest: digest}, out.Index
}

// TestByzantineLeaderClaimAfterRefusedAttacks (holes 2, 5, 6): the
// Byzantine leader tries to get a claim through the ledger after a
// rejection that followed the quorum (SECURITY 32), after replaying an
// applied unlock over a new lock (SECURITY 28), and for a create it
// appended without the initiator's signature (SECURITY 31). The ledger
// refuses each; the leader then hands the honest members the claim anyway:
// neither signs. A genuine request still signs on the same members.
func TestByzantineLeaderClaimAfterRefusedAttacks(t *testing.T) {
	h, b := newByzantineHarness(t)
	h.request("wd-byz-genuine", h.dests[0], ether(1, 0), bob, carol)
	if _, err := h.orch.Sign(h.ctx, "wd-byz-genuine", honestSigners); err != nil {
		t.Fatalf("a genuine request under the Byzantine leader: %v", err)
	}

	// Hole 5: rejected after the quorum, then claimed.
	r := h.request("wd-byz-rejected", h.dests[0], ether(1, 0), bob, carol)
	if got, err := h.orch.Approve(h.ctx, r.ID, alice.sign(t, r.ID, r.PayloadHash, quorum.Reject)); err != nil || got.Status != ledger.StatusRejected {
		t.Fatalf("rejection after the quorum: %v", err)
	}
	u := h.unsigned(*r.Nonce, h.dests[0], ether(1, 0))
	c, refusedAt := claimAnyway(t, b, r.ID, r.PayloadHash, u.SigningHash(), ledger.ErrWrongStatus)
	h.noHonestSigns(r.ID, *r.Nonce, c, member.ErrClaimMismatch)
	c.Index = refusedAt
	h.noHonestSigns(r.ID, *r.Nonce, c, member.ErrLedgerRead)

	// Hole 2: an old unlock replayed over a new lock, then a claim.
	r = h.request("wd-byz-replay", h.dests[0], ether(1, 0), bob, carol)
	lock := func(id string) {
		ch := policy.Change{ID: id, Kind: policy.ChangeLock, Reason: "drill"}
		appended(t, b, "bob", ledger.PolicyChange{Change: ch, Approvals: []quorum.Approval{bob.sign(t, ch.ID, ch.PayloadHash(), quorum.Approve)}})
	}
	lock("lock-byz-1")
	unlock := policy.Change{ID: "unlock-byz-1", Kind: policy.ChangeUnlock}
	unlockCmd := ledger.PolicyChange{Change: unlock, Approvals: []quorum.Approval{
		alice.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve), carol.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve)}}
	appended(t, b, "alice", unlockCmd)
	h.clock.Advance(testCoolingOff + time.Minute) // past the unlock's delay, on every clock
	b.Clock.Set(h.clock.Now())
	lock("lock-byz-2")
	if _, err := b.Append("alice", unlockCmd); !errors.Is(err, ledger.ErrReplayed) {
		t.Fatalf("replayed unlock: %v, want ErrReplayed", err)
	}
	u = h.unsigned(*r.Nonce, h.dests[0], ether(1, 0))
	c, _ = claimAnyway(t, b, r.ID, r.PayloadHash, u.SigningHash(), ledger.ErrLocked)
	h.noHonestSigns(r.ID, *r.Nonce, c, member.ErrClaimMismatch)

	// Hole 6: a create without the initiator's signature.
	nonce := *r.Nonce + 1
	u = h.unsigned(nonce, h.dests[0], ether(1, 0))
	amt, _ := amount.FromBig(ether(1, 0))
	maxFee, _ := amount.FromBig(u.Description().MaxFee())
	uninitiated := ledger.RequestCreate{ID: "wd-byz-uninitiated", Withdrawal: policy.Withdrawal{Wallet: walletID, Asset: "ETH", Chain: "eth",
		Network: network, To: h.dests[0].Hex(), Amount: amt, MaxFee: maxFee}, Payload: u.Bytes(), PayloadHash: u.PayloadHash(), Nonce: &nonce,
		ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := b.Append("backend", uninitiated); !errors.Is(err, ledger.ErrInitiation) {
		t.Fatalf("create without an initiation: %v, want ErrInitiation", err)
	}
	c, _ = claimAnyway(t, b, uninitiated.ID, u.PayloadHash(), u.SigningHash(), ledger.ErrNotFound)
	h.noHonestSigns(uninitiated.ID, nonce, c, member.ErrUnknownRequest)
}

// TestByzantineLeaderEquivocates: the Byzantine leader stops replicating to
// n1, gets an operator's lock committed by itself and n2, and tells n1 over
// raft's AppendEntries that the entry at the lock's index is its claim of an
// approved request, with the commit index past it. n1's raft stores and
// applies it (a follower checks the leader's term and the previous entry,
// never that a majority holds an entry), so n1's replica has the request
// claimed and no lock, and its linearizable read (the leader's read index,
// then its own state at that index) shows exactly that. Asked to sign with
// the Byzantine node's own share, n1 must refuse: the cluster committed the
// lock. It does, because it signs only a claim a checkpoint quorum of the
// node set attested (3 of 3 here), and n2 never attests a claim its
// replica does not hold: ErrNotAttested, nothing signed.
func TestByzantineLeaderEquivocates(t *testing.T) {
	h, b := newByzantineHarness(t)
	n1 := h.cluster.Nodes[0]
	signers := []pki.NodeID{"n1", byzantineID}
	r := h.request("wd-byz-equivocate", h.dests[0], ether(1, 0), bob, carol)
	h.cluster.WaitConverged(h.cluster.Nodes...)

	b.Node.Fault.SetBlocked(n1.Addr, true)
	prevIndex := n1.Store.LastIndex()
	prevTerm, err := strconv.ParseUint(n1.Store.RaftStats()["last_log_term"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	lock := policy.Change{ID: "lock-equivocate", Kind: policy.ChangeLock, Reason: "suspected takeover"}
	locked := appended(t, b, "carol", ledger.PolicyChange{Change: lock, Approvals: []quorum.Approval{carol.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve)}})

	sid := tss.NewSessionID()
	claim, err := ledger.EncodeCommand("node:n3", b.Clock.Now(), ledger.ClaimSession{RequestID: r.ID, ExpectStatus: ledger.StatusApproved,
		SessionID: sid.String(), Term: b.Term(), Signers: signers})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := b.AppendEntries(n1, b.Term(), prevIndex, prevTerm,
		[]*raft.Log{{Index: locked.Index, Term: b.Term(), Type: raft.LogCommand, Data: claim}}, locked.Index)
	if err != nil || !ok {
		t.Fatalf("n1 did not take the forged entry: %v, %v", ok, err)
	}
	views := map[pki.NodeID]string{}
	for _, n := range h.cluster.Nodes[:2] {
		if err := n.Store.ReadAtLeast(h.ctx, locked.Index, func(st *ledger.State) error {
			_, isLocked := st.Policy.LockedAt(walletID, st.Clock)
			views[n.ID] = fmt.Sprintf("%s locked=%v", st.Requests[r.ID].Status, isLocked)
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", n.ID, err)
		}
	}
	if views["n1"] != "claimed locked=false" || views["n2"] != "approved locked=true" {
		t.Fatalf("the honest replicas: %v, want n1 claimed and unlocked, n2 approved and locked", views)
	}

	u := h.unsigned(*r.Nonce, h.dests[0], ether(1, 0))
	c := member.Claim{SessionID: sid, Index: locked.Index, Signers: signers, PayloadHash: r.PayloadHash, Digest: u.SigningHash()}
	accomplice := h.newMember(h.members[byzantineID], h.members["n1"].ledger) // n3's share signs what n1 is shown
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = accomplice.SignClaimed(h.ctx, r.ID, c) }()
	s, err := h.members["n1"].m.SignClaimed(h.ctx, r.ID, c)
	wg.Wait()
	if err == nil {
		t.Fatalf("n1 signed %s, which the cluster had locked: %x", r.ID, s.Raw)
	}
	if !errors.Is(err, member.ErrNotAttested) {
		t.Fatalf("n1 refused with %v, want ErrNotAttested", err)
	}
}
