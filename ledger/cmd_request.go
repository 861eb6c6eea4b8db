package ledger

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// RequestCreate submits a withdrawal. The initiator (the backend or an
// operator with the initiator role) signed the withdrawal under its request
// ID (Initiation, [policy.Withdrawal.IntentHash]); the leader built the
// payload (unsigned transaction) that carries it out, allocated Nonce or
// chose Outpoints; the FSM verifies the initiation, evaluates policy and
// records them, refusing a second allocation. The initiator is whoever
// signed the initiation, never the proposing node's word (SECURITY 31). A
// [Request] embeds the command as committed.
type RequestCreate struct {
	ID string `json:"id"`
	policy.Withdrawal
	Payload     []byte      `json:"payload"`
	PayloadHash quorum.Hash `json:"payload_hash"`
	Nonce       *uint64     `json:"nonce,omitempty"`
	Outpoints   []string    `json:"outpoints,omitempty"`
	// VSize is the leader's virtual size of the payload (Bitcoin, vbytes;
	// 0 elsewhere), for policy's fee-rate cap at create and claim. It is
	// the leader's word: the chain-agnostic FSM cannot check it, so it can
	// only make the ledger deny (a size too small); members evaluate the
	// cap with their own parse of the payload whatever it says.
	VSize      int64            `json:"vsize,omitempty"`
	ExpiresAt  time.Time        `json:"expires_at"`
	Initiation *quorum.Approval `json:"initiation,omitempty"`
}

// Type implements Command.
func (RequestCreate) Type() string { return CmdRequestCreate }

// sameAs reports whether c asks for exactly what the stored create asked for
// (the expiry aside), with the same initiation: a repeated create is
// idempotent only then. It compares the canonical encodings, so a field
// added to the withdrawal or the create command is compared without another
// edit here.
func (c RequestCreate) sameAs(stored RequestCreate) bool {
	c.ExpiresAt, stored.ExpiresAt = time.Time{}, time.Time{}
	a, err1 := json.Marshal(c)
	b, err2 := json.Marshal(stored)
	return err1 == nil && err2 == nil && string(a) == string(b)
}

func nonceKey(wallet string, n uint64) string { return wallet + "/" + strconv.FormatUint(n, 10) }

func (p RequestCreate) apply(t *txn) (applyOut, error) {
	if old := t.request(p.ID); old != nil {
		// The same signed create again (a retry): the stored request. The
		// stored initiation was verified when it was created.
		if !p.sameAs(old.RequestCreate) {
			return applyOut{}, fmt.Errorf("%w: %q", ErrConflict, p.ID)
		}
		return applyOut{existing: true, req: old}, nil
	}
	if err := t.needGenesis(); err != nil {
		return applyOut{}, err
	}
	switch {
	case p.ID == "" || len(p.ID) > 128:
		return applyOut{}, invalid("request ID must be 1..128 bytes")
	case len(p.Payload) == 0 || p.PayloadHash == (quorum.Hash{}):
		return applyOut{}, invalid("request needs payload and payload hash")
	case policy.ValidNote(p.Note) != nil:
		return applyOut{}, invalid("%v", policy.ValidNote(p.Note))
	case !p.ExpiresAt.After(t.now):
		return applyOut{}, invalid("request expiry %s is not after %s", p.ExpiresAt.UTC().Format(time.RFC3339), t.now.Format(time.RFC3339))
	}
	if p.Initiation == nil {
		return applyOut{}, fmt.Errorf("%w: the create carries no initiation", ErrInitiation)
	}
	initiator, err := quorum.VerifyInitiation(t.registry(), *p.Initiation, p.ID, p.IntentHash(p.ID), t.now, true)
	if err != nil {
		return applyOut{}, fmt.Errorf("%w: %w", ErrInitiation, err)
	}
	if err := t.checkValidity([]quorum.Approval{*p.Initiation}); err != nil {
		return applyOut{}, err
	}
	w := t.wallet(p.Wallet)
	if w == nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q", ErrNotFound, p.Wallet)
	}
	if !w.Active() {
		return applyOut{}, fmt.Errorf("%w: wallet %q is %s: its committee has not attested its key", ErrWrongStatus, w.ID, w.Status)
	}
	if w.Chain != p.Chain || w.Network != p.Network {
		return applyOut{}, invalid("wallet %q is on %s/%s, not %s/%s", w.ID, w.Chain, w.Network, p.Chain, p.Network)
	}
	if p.Nonce != nil {
		if by := t.nonceHolder(nonceKey(p.Wallet, *p.Nonce)); by != "" {
			return applyOut{}, fmt.Errorf("%w: nonce %d of %s held by %q", ErrAllocated, *p.Nonce, p.Wallet, by)
		}
	}
	seen := map[string]bool{}
	for _, op := range p.Outpoints {
		if op == "" || seen[op] {
			return applyOut{}, invalid("empty or repeated outpoint %q", op)
		}
		seen[op] = true
		if by := t.outpointHolder(op); by != "" {
			return applyOut{}, fmt.Errorf("%w: outpoint %s held by %q", ErrAllocated, op, by)
		}
	}
	create := p
	create.Payload, create.Outpoints, create.ExpiresAt = slices.Clone(p.Payload), slices.Clone(p.Outpoints), p.ExpiresAt.UTC()
	r := &Request{RequestCreate: create, Initiator: initiator, Approvals: []quorum.Approval{},
		CreatedAt: t.now, CreatedIdx: t.index, UpdatedIdx: t.index}
	r.Decision = policy.Evaluate(t.activeRules(), t.policyState(), r.PolicyRequest(), t.now)
	if !r.Decision.Allowed {
		// A denial is recorded (and audited) so the backend gets the same
		// answer for the same request ID; nothing is allocated.
		r.Status = StatusRejected
	} else {
		r.Status = StatusAwaitingApprovals
		// A request routed cold on a wallet without a cold key can never be
		// signed here (nodes sign only the hot route; ceremonies only cold
		// wallets' requests): it holds no nonce and no outpoint, which would
		// otherwise stall every later withdrawal of the wallet until it
		// expires. A claim allocates what it spends (claimFor).
		if w := t.wallet(p.Wallet); r.Decision.Route == policy.RouteHot || (w != nil && w.Cold != nil) {
			t.allocate(r)
		}
	}
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// allocate holds the request's nonce and outpoints for it (the caller
// checked they are free).
func (t *txn) allocate(r *Request) {
	if r.Nonce != nil {
		t.holdNonce(nonceKey(r.Wallet, *r.Nonce), r.ID)
	}
	for _, op := range r.Outpoints {
		t.holdOutpoint(op, r.ID)
	}
}

// allocated makes sure the request holds its nonce and outpoints before it
// is signed: it takes those still free and refuses (ErrAllocated) when
// another request holds one (a request created on the cold route of a hot
// wallet holds none; rules that route it hot since then let it be claimed
// only while its nonce and outpoints are free).
func (t *txn) allocated(r *Request) error {
	if r.Nonce != nil {
		if by := t.nonceHolder(nonceKey(r.Wallet, *r.Nonce)); by != "" && by != r.ID {
			return fmt.Errorf("%w: nonce %d of %s held by %q", ErrAllocated, *r.Nonce, r.Wallet, by)
		}
	}
	for _, op := range r.Outpoints {
		if by := t.outpointHolder(op); by != "" && by != r.ID {
			return fmt.Errorf("%w: outpoint %s held by %q", ErrAllocated, op, by)
		}
	}
	t.allocate(r)
	return nil
}

// releaseAllocations frees a request's nonce and outpoints. Only for requests
// that can never have been signed (never claimed or exported).
func (t *txn) releaseAllocations(r *Request) {
	if r.Nonce != nil && t.nonceHolder(nonceKey(r.Wallet, *r.Nonce)) == r.ID {
		t.releaseNonce(nonceKey(r.Wallet, *r.Nonce))
	}
	for _, op := range r.Outpoints {
		if t.outpointHolder(op) == r.ID {
			t.releaseOutpoint(op)
		}
	}
}

func (t *txn) authorize(r *Request) policy.Decision {
	return policy.Authorize(t.activeRules(), t.policyState(), t.registry(), r.PolicyRequest(), r.Approvals, t.now)
}

// Approve records one operator's signed approval or rejection. Approvals
// are accepted while the request awaits approvals; a rejection also after
// it is approved, until its claim (hot) or export (cold), and also from an
// operator who approved it before.
//
// Reason is the rejecting operator's words (at most MaxReasonLen bytes of
// printable UTF-8, only with a rejection), recorded as Request.RejectReason
// when the rejection cancels the request. It is not covered by the
// operator's signature: a label the answering node carries, never an input
// to any decision.
type Approve struct {
	RequestID string          `json:"request_id"`
	Approval  quorum.Approval `json:"approval"`
	Reason    string          `json:"reason,omitempty"`
}

// MaxReasonLen bounds a rejection's reason.
const MaxReasonLen = 256

// validReason reports whether s is at most MaxReasonLen bytes of UTF-8
// without control or format characters (a bidi override could make the
// text read otherwise on an operator's screen).
func validReason(s string) bool {
	if len(s) > MaxReasonLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

// Type implements Command.
func (Approve) Type() string { return CmdApprove }

func (p Approve) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	a := p.Approval
	if p.Reason != "" && (a.Decision != quorum.Reject || !validReason(p.Reason)) {
		return applyOut{}, invalid("a reason goes with a rejection, as at most %d bytes of printable UTF-8", MaxReasonLen)
	}
	switch {
	case r.Status == StatusAwaitingApprovals:
	case r.Status == StatusApproved && a.Decision == quorum.Reject:
		// A rejection cancels until the point of no return: a hot request's
		// claim, a cold request's export (SECURITY 32). Both move the
		// request out of approved.
	case r.Status == StatusApproved:
		return applyOut{}, fmt.Errorf("%w: %q is already approved; only a rejection is accepted until it is claimed or exported", ErrWrongStatus, r.ID)
	default:
		return applyOut{}, fmt.Errorf("%w: %q is %s", ErrWrongStatus, r.ID, r.Status)
	}
	if err := t.checkValidity([]quorum.Approval{a}); err != nil {
		return applyOut{}, err
	}
	reg := t.registry()
	// This approval alone must pass every check quorum.Count makes; an
	// approval that would be ignored is refused instead of stored.
	tally := quorum.Count(reg,
		quorum.Subject{RequestID: r.ID, PayloadHash: r.PayloadHash, Initiator: r.Initiator},
		quorum.Requirement{Required: 1, Roles: r.Decision.Roles}, []quorum.Approval{a}, t.now)
	if len(tally.Ignored) > 0 {
		return applyOut{}, fmt.Errorf("%w: %s", ErrApproval, tally.Ignored[0].Reason)
	}
	op := reg.Devices[a.DeviceID].OperatorID
	for _, old := range r.Approvals {
		if reg.Devices[old.DeviceID].OperatorID != op {
			continue
		}
		// An operator may turn an approval into a rejection (stopping is
		// always allowed), never the other way round, and answers once.
		if a.Decision != quorum.Reject || old.Decision == quorum.Reject {
			return applyOut{}, fmt.Errorf("%w: operator %q already answered %q", ErrApproval, op, r.ID)
		}
	}
	r.Approvals = append(r.Approvals, a)
	r.UpdatedIdx = t.index
	d := t.authorize(r)
	switch {
	case d.Reason == policy.ReasonRejected:
		r.Status = StatusRejected
		r.Decision = d
		r.RejectReason = p.Reason
		t.releaseAllocations(r)
	case d.Approved:
		r.Status = StatusApproved
		r.Decision = d
	}
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// ExpireRequest expires a request whose ExpiresAt passed.
type ExpireRequest struct {
	RequestID string `json:"request_id"`
}

// Type implements Command.
func (ExpireRequest) Type() string { return CmdExpire }

func (p ExpireRequest) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	switch r.Status {
	case StatusAwaitingApprovals, StatusApproved, StatusExported:
	default:
		return applyOut{}, fmt.Errorf("%w: %q is %s", ErrWrongStatus, r.ID, r.Status)
	}
	if t.now.Before(r.ExpiresAt) {
		return applyOut{}, invalid("%q expires at %s", r.ID, r.ExpiresAt.Format(time.RFC3339))
	}
	if r.Status != StatusExported {
		// An exported bundle may be signed offline: its allocations stay.
		t.releaseAllocations(r)
	}
	r.Status = StatusExpired
	r.UpdatedIdx = t.index
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}
