package ledger_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"

	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

var fsmT0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fsmHarness feeds log entries to a real FSM without raft: the FSM is a pure
// function of its entries, so most lifecycle rules are tested here.
type fsmHarness struct {
	t    testing.TB
	f    *FSM
	idx  uint64
	term uint64
	now  time.Time
}

func newHarness(t *testing.T) *fsmHarness {
	h := &fsmHarness{t: t, f: NewFSM(nil, nil), term: 1, now: fsmT0}
	h.must("ceremony", genesisCmd())
	for _, cmd := range testWalletCmds(t, h.now) {
		h.must("keygen", cmd)
	}
	return h
}

// applied is what the FSM returned for one entry.
type applied struct {
	req      *Request
	existing bool
	err      error
}

func (h *fsmHarness) raw(data []byte) applied {
	h.idx++
	var a applied
	a.req, a.existing, a.err = ApplyOutcome(h.f.Apply(&raft.Log{Index: h.idx, Term: h.term, Type: raft.LogCommand, Data: data}))
	return a
}

// rawEntry encodes a log entry by hand: any type name, any payload.
func rawEntry(typ, actor string, now time.Time, payload any) []byte {
	p, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	b, err := json.Marshal(Envelope{V: CommandVersion, Type: typ, Time: now, Actor: actor, Payload: p})
	if err != nil {
		panic(err)
	}
	return b
}

func (h *fsmHarness) apply(actor string, p Command) (*Request, error) {
	h.t.Helper()
	// A create the backend initiates (or nobody yet) is signed at the
	// harness's time; another initiator's signature is left as it is.
	if c, ok := p.(RequestCreate); ok && (c.Initiation == nil || c.Initiation.DeviceID == backend.Device().ID) {
		p = initiated(c, backend, h.now.Add(time.Hour))
	}
	b, err := EncodeCommand(actor, h.now, p)
	if err != nil {
		h.t.Fatal(err)
	}
	r := h.raw(b)
	return r.req, r.err
}

func (h *fsmHarness) must(actor string, p Command) *Request {
	h.t.Helper()
	r, err := h.apply(actor, p)
	if err != nil {
		h.t.Fatalf("%s: %v", p.Type(), err)
	}
	return r
}

// refuse applies a command that must fail with want and change nothing.
func (h *fsmHarness) refuse(want error, actor string, p Command) {
	h.t.Helper()
	before := h.hash()
	if _, err := h.apply(actor, p); !errors.Is(err, want) {
		h.t.Fatalf("%s: %v, want %v", p.Type(), err, want)
	}
	if h.hash() != before {
		h.t.Fatalf("refused %s changed the state", p.Type())
	}
}

func (h *fsmHarness) hash() [32]byte {
	x, err := h.f.Hash()
	if err != nil {
		h.t.Fatal(err)
	}
	return x
}

func (h *fsmHarness) req(id string) *Request {
	var r *Request
	_ = h.f.Read(func(st *State) error { r = st.Requests[id].Clone(); return nil })
	return r
}

func (h *fsmHarness) create(id string, nonce uint64) *Request {
	h.t.Helper()
	c := createCmd(id, nonce)
	c.ExpiresAt = h.now.Add(24 * time.Hour)
	return h.must("backend", c)
}

func (h *fsmHarness) approved(id string, nonce uint64) *Request {
	h.t.Helper()
	r := h.create(id, nonce)
	h.must("api", bob.approve(h.t, r, h.now.Add(24*time.Hour)))
	r = h.must("api", dave.approve(h.t, r, h.now.Add(24*time.Hour)))
	if r.Status != StatusApproved {
		h.t.Fatalf("%s is %s after two approvals", id, r.Status)
	}
	return r
}

func (h *fsmHarness) claimCmd(id string) ClaimSession {
	return ClaimSession{RequestID: id, ExpectStatus: StatusApproved, SessionID: "aa" + string(bytes.Repeat([]byte("0"), 62)), Term: h.term, Signers: allSigners}
}

func TestFSMClaimFencingAndResult(t *testing.T) {
	h := newHarness(t)
	r := h.approved("r1", 1)
	cl := h.claimCmd(r.ID)
	stale := cl
	stale.Term = h.term - 1
	h.refuse(ErrStaleLeader, "n1", stale)
	bad := cl
	bad.SessionID = "short"
	h.refuse(ErrInvalid, "n1", bad)
	wrongExpect := cl
	wrongExpect.ExpectStatus = StatusAwaitingApprovals
	h.refuse(ErrWrongStatus, "n1", wrongExpect)
	got := h.must("n1", cl)
	if got.Status != StatusClaimed || got.Claim.Index != h.idx || got.Claim.Term != h.term {
		t.Fatalf("claim: %+v", got.Claim)
	}
	h.refuse(ErrWrongStatus, "n1", cl)
	h.refuse(ErrStaleSession, "n1", RecordResult{RequestID: r.ID, SessionID: "bb" + cl.SessionID[2:], Signed: []byte("x")})
	h.refuse(ErrInvalid, "n1", RecordResult{RequestID: r.ID, SessionID: cl.SessionID})
	done := h.must("n1", RecordResult{RequestID: r.ID, SessionID: cl.SessionID, Error: "peer n3 aborted"})
	if done.Status != StatusFailed {
		t.Fatalf("failed session left %s", done.Status)
	}
	// The nonce of a failed session stays allocated.
	h.refuse(ErrAllocated, "backend", func() RequestCreate { c := createCmd("r2", 1); c.ExpiresAt = h.now.Add(time.Hour); return c }())
	h.refuse(ErrNotFound, "n1", h.claimCmd("nope"))
}

func TestFSMIdempotentCreateAndConflict(t *testing.T) {
	h := newHarness(t)
	c := createCmd("r1", 7)
	c.ExpiresAt = h.now.Add(time.Hour)
	c = initiated(c, backend, h.now.Add(time.Hour))
	first := h.must("backend", c)
	if first.Initiator != backend.ID {
		t.Fatalf("initiator %q, want the signer %q", first.Initiator, backend.ID)
	}
	before := h.hash()
	// The same signed create, proposed by another node: the stored request.
	b, _ := EncodeCommand("n2", h.now, c)
	res := h.raw(b)
	if res.err != nil || !res.existing || res.req.CreatedIdx != first.CreatedIdx || res.req.Initiator != backend.ID {
		t.Fatalf("resubmit: %+v", res)
	}
	if h.hash() != before {
		t.Fatal("idempotent resubmit changed the state")
	}
	other := c
	other.Payload = []byte("another tx")
	h.refuse(ErrConflict, "backend", other)
	h.refuse(ErrConflict, "backend", initiated(c, dave, h.now.Add(time.Hour))) // same payload, other initiator

	// The initiation is what makes the initiator (SECURITY 31): none, a
	// signature over another withdrawal, a signer without the initiator
	// role, an expired one, or one beyond the validity ceiling is refused.
	fresh := createCmd("r9", 9)
	fresh.ExpiresAt = h.now.Add(time.Hour)
	none := fresh
	none.Initiation = nil
	b, _ = EncodeCommand("backend", h.now, none)
	if res := h.raw(b); !errors.Is(res.err, ErrInitiation) || h.hash() != before {
		t.Fatalf("create without initiation: %v", res.err)
	}
	tampered := initiated(fresh, dave, h.now.Add(time.Hour))
	tampered.Amount = amount.FromUint64(999_999)
	h.refuse(ErrInitiation, "backend", tampered)
	h.refuse(ErrInitiation, "backend", initiated(fresh, bob, h.now.Add(time.Hour)))
	h.refuse(ErrInitiation, "backend", initiated(fresh, dave, h.now.Add(-time.Second)))
	h.refuse(ErrApproval, "backend", initiated(fresh, dave, h.now.Add(49*time.Hour)))
	if r := h.must("leader-says-mallory", initiated(fresh, dave, h.now.Add(time.Hour))); r.Initiator != dave.ID {
		t.Fatalf("initiator %q: the proposer's word counted, not the signature", r.Initiator)
	}
	c2 := createCmd("r2", 7)
	c2.ExpiresAt = h.now.Add(time.Hour)
	h.refuse(ErrAllocated, "backend", c2)
	bad := createCmd("r3", 8)
	bad.ExpiresAt = h.now.Add(-time.Second)
	h.refuse(ErrInvalid, "backend", bad)
	bad = createCmd("r3", 8)
	bad.Wallet = "nope"
	h.refuse(ErrNotFound, "backend", bad)
	bad = createCmd("", 8)
	h.refuse(ErrInvalid, "backend", bad)
}

func TestFSMOutpointsAndRelease(t *testing.T) {
	h := newHarness(t)
	mk := func(id string, ops ...string) RequestCreate {
		p := []byte("psbt:" + id)
		return RequestCreate{
			ID:          id,
			Withdrawal:  policy.Withdrawal{Wallet: "cold", Asset: "BTC", Chain: "btc", Network: "regtest", To: "bcrt1qdest", Amount: amount.FromUint64(5000)},
			Payload:     p,
			PayloadHash: quorum.Hash{byte(len(id)), 1},
			Outpoints:   ops,
			ExpiresAt:   h.now.Add(time.Hour),
		}
	}
	r := h.must("backend", mk("b1", "aa:0", "bb:1"))
	if r.Status != StatusAwaitingApprovals || r.Decision.Route != policy.RouteCold {
		t.Fatalf("cold request: %s %s", r.Status, r.Decision.Route)
	}
	h.refuse(ErrAllocated, "backend", mk("b22", "cc:0", "bb:1"))
	h.refuse(ErrInvalid, "backend", mk("b22", "cc:0", "cc:0"))
	// One valid rejection cancels and frees the outpoints.
	got := h.must("api", alice.reject(t, r, h.now.Add(time.Hour)))
	if got.Status != StatusRejected {
		t.Fatalf("after rejection: %s", got.Status)
	}
	h.must("backend", mk("b333", "cc:0", "bb:1"))
}

func TestFSMColdExportImportAndExpire(t *testing.T) {
	h := newHarness(t)
	p := []byte("psbt")
	c := RequestCreate{
		ID:          "c1",
		Withdrawal:  policy.Withdrawal{Wallet: "cold", Asset: "BTC", Chain: "btc", Network: "regtest", To: "bcrt1qdest", Amount: amount.FromUint64(5000)},
		Payload:     p,
		PayloadHash: quorum.Hash{9},
		Outpoints:   []string{"aa:0"},
		ExpiresAt:   h.now.Add(time.Hour),
	}
	r := h.must("backend", c)
	// Cold needs two admins: dave (approver only) does not count.
	h.refuse(ErrApproval, "api", dave.approve(t, r, h.now.Add(time.Hour)))
	h.must("api", alice.approve(t, r, h.now.Add(time.Hour)))
	r = h.must("api", carol.approve(t, r, h.now.Add(time.Hour)))
	if r.Status != StatusApproved {
		t.Fatalf("cold after 2 admins: %s", r.Status)
	}
	h.refuse(ErrWrongStatus, "n1", h.claimCmd("c1"))
	h.refuse(ErrInvalid, "n1", ColdExport{RequestID: "c1"})
	if r = h.exported("c1"); r.Status != StatusExported {
		t.Fatalf("export: %s", r.Status)
	}
	h.refuse(ErrInvalid, "n1", ColdImport{RequestID: "c1"})
	if r = h.must("n1", h.importCmd("c1", []byte("signed psbt"), "")); r.Status != StatusImported {
		t.Fatalf("import: %s", r.Status)
	}

	// Expiry: refused before ExpiresAt, then frees the nonce.
	e := h.create("e1", 3)
	h.refuse(ErrInvalid, "n1", ExpireRequest{RequestID: "e1"})
	h.now = h.now.Add(25 * time.Hour)
	if got := h.must("n1", ExpireRequest{RequestID: e.ID}); got.Status != StatusExpired {
		t.Fatalf("expire: %s", got.Status)
	}
	h.refuse(ErrWrongStatus, "n1", ExpireRequest{RequestID: e.ID})
	h.create("e2", 3)
}

func TestFSMLockAndRevocationStopClaims(t *testing.T) {
	h := newHarness(t)
	r1 := h.approved("r1", 1)
	r2 := h.approved("r2", 2)
	exp := h.now.Add(time.Hour)

	// Any one operator locks, immediately.
	lock := policy.Change{ID: "lock-1", Kind: policy.ChangeLock, Reason: "phone stolen"}
	h.refuse(ErrQuorum, "api", PolicyChange{Change: lock})
	h.must("api", PolicyChange{Change: lock, Approvals: []quorum.Approval{dave.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve, exp)}})
	h.refuse(ErrLocked, "n1", h.claimCmd(r1.ID))
	// Unlock needs the admin quorum, and lifts only after the delay.
	unlock := policy.Change{ID: "unlock-1", Kind: policy.ChangeUnlock}
	h.refuse(ErrQuorum, "api", PolicyChange{Change: unlock, Approvals: []quorum.Approval{alice.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve, exp)}})
	h.must("api", PolicyChange{Change: unlock, Approvals: []quorum.Approval{
		alice.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve, exp), carol.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve, exp)}})
	h.refuse(ErrLocked, "n1", h.claimCmd(r1.ID))
	h.now = h.now.Add(61 * time.Minute)
	h.must("n1", h.claimCmd(r1.ID))

	// Revoking bob's device (one admin) takes effect at the next claim.
	rev := quorum.Change{ID: "revoke-bob", Kind: quorum.ChangeRevokeDevice, DeviceID: bob.device().ID}
	h.must("api", RegistryChange{Change: rev, Approvals: []quorum.Approval{alice.sign(t, rev.ID, rev.PayloadHash(), quorum.Approve, h.now.Add(time.Hour))}})
	h.refuse(ErrQuorum, "n1", h.claimCmd(r2.ID))
	h.refuse(ErrApproval, "api", bob.approve(t, h.create("r3", 3), h.now.Add(time.Hour)))
}

func TestFSMAllowlistCoolingOff(t *testing.T) {
	h := newHarness(t)
	mk := func(id string) RequestCreate {
		c := createCmd(id, 0)
		c.Wallet, c.Nonce, c.ExpiresAt = "allow", nil, h.now.Add(time.Hour)
		return c
	}
	if r := h.must("backend", mk("a1")); r.Status != StatusRejected || r.Decision.Reason != policy.ReasonNotAllowlisted {
		t.Fatalf("not allowlisted: %s %s", r.Status, r.Decision.Reason)
	}
	add := policy.Change{ID: "allow-1", Kind: policy.ChangeAllowlistAdd, Wallet: "allow", Chain: "eth", Network: "devnet", Address: "0xdest"}
	exp := h.now.Add(time.Hour)
	h.refuse(ErrQuorum, "api", PolicyChange{Change: add, Approvals: []quorum.Approval{bob.sign(t, add.ID, add.PayloadHash(), quorum.Approve, exp)}})
	h.must("api", PolicyChange{Change: add, Approvals: []quorum.Approval{
		bob.sign(t, add.ID, add.PayloadHash(), quorum.Approve, exp), dave.sign(t, add.ID, add.PayloadHash(), quorum.Approve, exp)}})
	if r := h.must("backend", mk("a2")); r.Decision.Reason != policy.ReasonCoolingOff {
		t.Fatalf("during cooling-off: %s", r.Decision.Reason)
	}
	h.now = h.now.Add(61 * time.Minute)
	if r := h.must("backend", mk("a3")); r.Status != StatusAwaitingApprovals {
		t.Fatalf("after cooling-off: %s %s", r.Status, r.Decision.Detail)
	}
}

// TestFSMClockNeverGoesBack: a leader with a slow clock cannot move "now"
// backwards (expiry and cooling-off use the largest time seen).
func TestFSMClockNeverGoesBack(t *testing.T) {
	h := newHarness(t)
	h.create("r1", 1)
	h.now = h.now.Add(-24 * time.Hour)
	c := createCmd("r2", 2)
	c.ExpiresAt = h.now.Add(time.Hour) // after the skewed clock, before the ledger's
	h.refuse(ErrInvalid, "backend", c)
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

// TestFSMSnapshotRestoreRoundTrip: a snapshot restores the state at its
// certified checkpoint (nothing of the prior state survives, the parsed
// rules are back, the audit chain verifies); a node whose history forks
// from it refuses it; the restored FSM goes on checking claims as before.
func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	h := newPinnedHarness(t)
	r := h.approved("r1", 1)
	h.must("n1", h.claimCmd(r.ID))
	for _, p := range h.f.Pending() { // a checkpoint reached before r2
		h.certify(p)
	}
	h.create("r2", 2)
	idx := h.toCheckpoint()
	head, _ := h.f.PendingHead(idx)
	h.certify(idx)
	b := h.snapshotBytes()
	h.create("after-snapshot", 3) // must not leak into the snapshot

	// A node whose history forks from the snapshot's refuses it (it would
	// lose its own records); an empty node takes it.
	forked := newPinnedHarness(t)
	forked.create("garbage", 99)
	forkedHash := forked.hash()
	if err := forked.f.RestoreAt(b, head.Index, head.Term); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("restore over a forked history: %v", err)
	}
	if forked.hash() != forkedHash {
		t.Fatal("a refused restore changed the state")
	}
	g := genesisEvery(cpInterval)
	other := &fsmHarness{t: t, f: NewPinnedFSM(&g), term: 1, now: fsmT0}
	if err := other.f.RestoreAt(b, head.Index, head.Term); err != nil {
		t.Fatal(err)
	}
	if got := other.hash(); hex.EncodeToString(got[:]) != head.StateHash {
		t.Fatal("restored state is not the checkpoint's")
	}
	_ = other.f.Read(func(st *State) error {
		if st.Requests["garbage"] != nil || st.Requests["after-snapshot"] != nil || st.Requests["r2"] == nil || st.ActivePolicy() == nil {
			t.Fatal("restore kept prior state, lost a record or lost the parsed rules")
		}
		return VerifyChain(st.Audit)
	})
	// The restored FSM keeps working: claims of r2 are checked as before.
	other.idx = h.idx + 10
	other.approvedFrom("r2")
	// Snapshot forgeries: TestSnapshotRestoreVerified.
}

func (h *fsmHarness) approvedFrom(id string) {
	h.t.Helper()
	r := h.req(id)
	h.must("api", bob.approve(h.t, r, h.now.Add(time.Hour)))
	if r = h.must("api", dave.approve(h.t, r, h.now.Add(time.Hour))); r.Status != StatusApproved {
		h.t.Fatalf("%s: %s", id, r.Status)
	}
}

func TestFSMUnknownEntriesHalt(t *testing.T) {
	good, _ := EncodeCommand("n1", fsmT0, VoterSet{ID: "x", Address: "a"})
	unknownType := rawEntry("request.teleport", "n1", fsmT0, map[string]int{})
	unknownField := rawEntry(CmdVoterSet, "n1", fsmT0, map[string]string{"id": "x", "address": "a", "weight": "3"})
	v2 := bytes.Replace(good, []byte(`"v":1`), []byte(`"v":2`), 1)
	for name, entry := range map[string][]byte{
		"unknown type":    unknownType,
		"unknown version": v2,
		"unknown field":   unknownField,
		"garbage":         []byte("\x00\x01not json"),
		"trailing data":   append(append([]byte{}, good...), []byte(` {"v":1}`)...),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			before := h.hash()
			if res := h.raw(entry); !errors.Is(res.err, ErrHalted) {
				t.Fatalf("applied: %+v", res)
			}
			if h.f.Halted() == nil {
				t.Fatal("FSM did not halt")
			}
			if res := h.raw(good); !errors.Is(res.err, ErrHalted) {
				t.Fatal("halted FSM applied a later entry")
			}
			if _, err := h.f.Snapshot(); !errors.Is(err, ErrHalted) {
				t.Fatalf("halted FSM took a snapshot: %v", err)
			}
			x, _ := h.f.Hash()
			if x != before {
				t.Fatal("halting changed the state")
			}
		})
	}
}

// TestFSMDeterministicReplay: two FSMs fed the same entries agree, and the
// audit chain has one event per state change.
func TestFSMDeterministicReplay(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	for _, h := range []*fsmHarness{a, b} {
		r := h.approved("r1", 1)
		h.must("n1", h.claimCmd(r.ID))
		h.refuse(ErrWrongStatus, "n1", h.claimCmd(r.ID))
	}
	if a.hash() != b.hash() {
		t.Fatal("same entries, different states")
	}
	_ = a.f.Read(func(st *State) error {
		// genesis + 3 wallets + create + 2 approvals + claim
		if len(st.Audit) != 8 {
			t.Fatalf("%d audit events, want 8", len(st.Audit))
		}
		return VerifyChain(st.Audit)
	})
}

// TestFSMClaimSigners: the claim records its signer set (sorted); fewer than
// threshold+1, repeated or non-committee signers are refused unchanged.
func TestFSMClaimSigners(t *testing.T) {
	h := newHarness(t)
	r := h.approved("r1", 1)
	for name, signers := range map[string][]pki.NodeID{
		"none":          nil,
		"threshold":     {"n1", "n2"},
		"repeated":      {"n1", "n2", "n2"},
		"not committee": {"n1", "n2", "c1"},
	} {
		cl := h.claimCmd(r.ID)
		cl.Signers = signers
		t.Run(name, func(t *testing.T) { h.refuse(ErrInvalid, "n1", cl) })
	}
	cl := h.claimCmd(r.ID)
	cl.Signers = []pki.NodeID{"n3", "n1", "n2"}
	got := h.must("n1", cl)
	if !slices.Equal(got.Claim.Signers, []pki.NodeID{"n1", "n2", "n3"}) {
		t.Fatalf("claim signers %v, want [n1 n2 n3]", got.Claim.Signers)
	}
}

// TestFSMReclaimFailedSession: a failed session is reclaimed under a new
// session with the same payload and nonce (compare-and-set on the failed
// session, term-fenced, policy and approvals re-checked); its result is then
// accepted only for the new session.
func TestFSMReclaimFailedSession(t *testing.T) {
	h := newHarness(t)
	r := h.approved("r1", 1)
	cl := h.claimCmd(r.ID)
	rc := ReclaimSession{RequestID: r.ID, FailedSession: cl.SessionID, SessionID: "bb" + cl.SessionID[2:], Term: h.term, Signers: allSigners}
	h.refuse(ErrWrongStatus, "n1", rc) // approved, not failed
	h.must("n1", cl)
	h.refuse(ErrWrongStatus, "n1", rc) // claimed, not failed
	h.must("n1", RecordResult{RequestID: r.ID, SessionID: cl.SessionID, Error: "tss: peer n3 timed out"})
	var history int
	_ = h.f.Read(func(st *State) error { history = len(st.Policy.History()); return nil })

	for name, edit := range map[string]func(*ReclaimSession) error{
		"unknown request": func(c *ReclaimSession) error { c.RequestID = "nope"; return ErrNotFound },
		"stale term":      func(c *ReclaimSession) error { c.Term = h.term - 1; return ErrStaleLeader },
		"bad session":     func(c *ReclaimSession) error { c.SessionID = "short"; return ErrInvalid },
		"same session":    func(c *ReclaimSession) error { c.SessionID = c.FailedSession; return ErrInvalid },
		"other failed":    func(c *ReclaimSession) error { c.FailedSession = "cc" + c.FailedSession[2:]; return ErrStaleSession },
		"too few signers": func(c *ReclaimSession) error { c.Signers = []pki.NodeID{"n1"}; return ErrInvalid },
		"foreign signer":  func(c *ReclaimSession) error { c.Signers = []pki.NodeID{"n1", "n2", "x"}; return ErrInvalid },
	} {
		bad := rc
		want := edit(&bad)
		t.Run(name, func(t *testing.T) { h.refuse(want, "n1", bad) })
	}
	got := h.must("n2", rc)
	if got.Status != StatusClaimed || got.Claim.SessionID != rc.SessionID || got.Claim.Index != h.idx || got.Result != nil {
		t.Fatalf("after reclaim: %s claim %+v result %+v", got.Status, got.Claim, got.Result)
	}
	if string(got.Payload) != string(r.Payload) || got.Nonce == nil || *got.Nonce != 1 {
		t.Fatal("reclaim changed the payload or nonce")
	}
	_ = h.f.Read(func(st *State) error {
		if n := len(st.Policy.History()); n != history {
			t.Errorf("reclaim recorded the spend again: %d spends, want %d", n, history)
		}
		if st.Nonces[NonceKey("hot", 1)] != r.ID {
			t.Errorf("nonce 1 held by %q", st.Nonces[NonceKey("hot", 1)])
		}
		return nil
	})
	// The same reclaim again (a second leader retrying the same failure):
	// the compare-and-set fails.
	h.refuse(ErrWrongStatus, "n1", rc)
	h.refuse(ErrStaleSession, "n1", RecordResult{RequestID: r.ID, SessionID: cl.SessionID, Signed: []byte("x")})
	done := h.must("n1", RecordResult{RequestID: r.ID, SessionID: rc.SessionID, Signed: []byte("signed")})
	if done.Status != StatusSigned {
		t.Fatalf("result of the new session: %s", done.Status)
	}
	h.refuse(ErrWrongStatus, "n1", ReclaimSession{RequestID: r.ID, FailedSession: rc.SessionID, SessionID: cl.SessionID, Term: h.term, Signers: allSigners})
}

// TestFSMSessionNeverClaimedTwice: a session ID already claimed, for this or
// any other request, is refused, whatever the request's state (SECURITY 1:
// tss-lib v2.0.2 proofs replay across sessions; members forget old IDs).
func TestFSMSessionNeverClaimedTwice(t *testing.T) {
	h := newHarness(t)
	a := h.approved("a", 1)
	b := h.approved("b", 2)
	clA := h.claimCmd(a.ID)
	h.must("n1", clA)
	reuse := h.claimCmd(b.ID)
	reuse.SessionID = clA.SessionID
	before, err := h.f.Hash()
	if err != nil {
		t.Fatal(err)
	}
	h.refuse(ErrInvalid, "n1", reuse)
	after, err := h.f.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if before != after {
		t.Fatal("a refused claim changed the state")
	}
	// A reclaim of A after a failure cannot reuse B's session either.
	clB := h.claimCmd(b.ID)
	clB.SessionID = "ee" + clA.SessionID[2:]
	h.must("n1", clB)
	h.must("n1", RecordResult{RequestID: a.ID, SessionID: clA.SessionID, Error: "tss: timeout"})
	h.refuse(ErrInvalid, "n1", ReclaimSession{RequestID: a.ID, FailedSession: clA.SessionID, SessionID: clB.SessionID, Term: h.term, Signers: allSigners})
	h.must("n1", ReclaimSession{RequestID: a.ID, FailedSession: clA.SessionID, SessionID: "ff" + clA.SessionID[2:], Term: h.term, Signers: allSigners})
}
