package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Evaluator is the policy seam: a deterministic function of the replicated
// state, the request and the command time. It must not read clocks, disks or
// the network, and every node must run the same implementation.
type Evaluator interface {
	Evaluate(st *State, req *Request, now time.Time) (Decision, error)
}

// Verifier is the approval seam: it checks one approval's signature against
// the device key enrolled in st (domain-separated digest of cluster, request
// ID, payload hash, decision and expiry). Enrollment, revocation, expiry,
// initiator and distinctness are checked by the FSM itself.
type Verifier interface {
	VerifyApproval(st *State, req *Request, a *Approval, now time.Time) error
}

// Result of one Apply, returned to the proposer through raft's ApplyFuture.
type applyResult struct {
	req      *Request
	existing bool
	err      error
}

// FSM is the ledger's raft state machine. Apply is deterministic: the only
// inputs are the state, the log entry and its index/term.
type FSM struct {
	eval   Evaluator
	verify Verifier
	log    *slog.Logger
	onHalt func(error)

	mu     sync.RWMutex
	st     *State
	halted error
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM over an empty state. onHalt (may be nil) is called
// once, from the apply goroutine, when the FSM halts.
func NewFSM(eval Evaluator, verify Verifier, logger *slog.Logger, onHalt func(error)) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{eval: eval, verify: verify, log: logger, onHalt: onHalt, st: NewState()}
}

// Halted returns the error that halted the FSM, or nil.
func (f *FSM) Halted() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.halted
}

// Read calls fn with the local state under the read lock. This is NOT a
// linearizable read (see Store.ReadLinearizable); it is for tests, offline
// tools and the node's own progress checks.
func (f *FSM) Read(fn func(*State) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return fn(f.st)
}

// Hash returns the SHA-256 of the canonical state.
func (f *FSM) Hash() ([32]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Hash()
}

// Apply applies one committed entry.
//
// An entry this build cannot decode (unknown version, unknown type, unknown
// field) halts the FSM: it logs, records the cause, applies nothing more and
// calls onHalt (the Store then refuses all work). Skipping the entry would let this
// node diverge silently from nodes that understood it; halting keeps the state
// at a prefix every node agrees on, and a restarted node halts again at the
// same index until it runs a build that knows the command.
func (f *FSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.halted != nil {
		return &applyResult{err: f.halted}
	}
	res, fatal := f.applyLocked(l)
	if fatal != nil {
		f.halted = fmt.Errorf("%w at index %d: %v", ErrHalted, l.Index, fatal)
		f.log.Error("ledger: FSM halted; refusing to apply further entries", "index", l.Index, "err", fatal)
		if f.onHalt != nil {
			go f.onHalt(f.halted)
		}
		return &applyResult{err: f.halted}
	}
	return res
}

func (f *FSM) applyLocked(l *raft.Log) (res *applyResult, fatal error) {
	defer func() {
		if r := recover(); r != nil {
			res, fatal = nil, fmt.Errorf("panic in apply: %v", r)
		}
	}()
	var env Envelope
	if err := decodeStrict(l.Data, &env); err != nil {
		return nil, fmt.Errorf("undecodable entry: %v", err)
	}
	if env.V != CommandVersion {
		return nil, fmt.Errorf("unknown command version %d (this build applies %d)", env.V, CommandVersion)
	}
	h, ok := handlers[env.Type]
	if !ok {
		return nil, fmt.Errorf("unknown command type %q", env.Type)
	}
	st := f.st
	now := env.Time.UTC()
	if now.Before(st.Clock) {
		now = st.Clock
	}
	c := &applyCtx{f: f, st: st, l: l, env: &env, now: now}
	out, err := h(c)
	if errors.Is(err, errFatal) {
		return nil, err
	}
	if err != nil {
		// A refusal changes nothing, not even the clock or index.
		return &applyResult{err: err}, nil
	}
	if out.changed {
		st.Index = l.Index
		st.Clock = now
		st.appendAudit(l.Index, now, env.Actor, env.Type, out.subject, l.Data)
	}
	r := &applyResult{existing: out.existing}
	if out.req != nil {
		r.req = out.req.clone()
	}
	return r, nil
}

// errFatal marks a decode failure of a known command's payload: the same
// version-skew situation as an unknown type.
var errFatal = errors.New("undecodable payload")

type applyCtx struct {
	f   *FSM
	st  *State
	l   *raft.Log
	env *Envelope
	now time.Time
}

type applyOut struct {
	changed  bool
	existing bool
	subject  string
	req      *Request
}

func (c *applyCtx) decode(v any) error {
	if err := decodeStrict(c.env.Payload, v); err != nil {
		return fmt.Errorf("%w: %s: %v", errFatal, c.env.Type, err)
	}
	return nil
}

var handlers map[string]func(*applyCtx) (applyOut, error)

func init() {
	handlers = map[string]func(*applyCtx) (applyOut, error){
		CmdMemberSet:      applyMemberSet,
		CmdMemberRemove:   applyMemberRemove,
		CmdOperatorEnroll: applyOperatorEnroll,
		CmdOperatorRevoke: applyOperatorRevoke,
		CmdDeviceAdd:      applyDeviceAdd,
		CmdDeviceRevoke:   applyDeviceRevoke,
		CmdRulesSet:       applyRulesSet,
		CmdWalletSet:      applyWalletSet,
		CmdAllowAdd:       applyAllowAdd,
		CmdAllowRemove:    applyAllowRemove,
		CmdLock:           applyLock,
		CmdUnlock:         applyUnlock,
		CmdRequestCreate:  applyRequestCreate,
		CmdApprove:        applyApprove,
		CmdClaim:          applyClaim,
		CmdResult:         applyResult_,
		CmdExpire:         applyExpire,
		CmdColdExport:     applyColdExport,
		CmdColdImport:     applyColdImport,
	}
}

func changed(subject string) (applyOut, error) { return applyOut{changed: true, subject: subject}, nil }

func applyMemberSet(c *applyCtx) (applyOut, error) {
	var p MemberSet
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if p.ID == "" || p.Address == "" {
		return applyOut{}, invalid("member needs id and address")
	}
	if m := c.st.Members[p.ID]; m != nil && m.Address == p.Address {
		return applyOut{}, nil // idempotent re-join
	}
	c.st.Members[p.ID] = &Member{ID: p.ID, Address: p.Address}
	return changed(p.ID)
}

func applyMemberRemove(c *applyCtx) (applyOut, error) {
	var p MemberRemove
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if _, ok := c.st.Members[p.ID]; !ok {
		return applyOut{}, nil
	}
	delete(c.st.Members, p.ID)
	return changed(p.ID)
}

func applyOperatorEnroll(c *applyCtx) (applyOut, error) {
	var p OperatorEnroll
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if p.ID == "" || p.Device == "" || len(p.Key) == 0 {
		return applyOut{}, invalid("operator needs id, device and key")
	}
	if _, ok := c.st.Operators[p.ID]; ok {
		return applyOut{}, invalid("operator %q already enrolled", p.ID)
	}
	c.st.Operators[p.ID] = &Operator{
		ID: p.ID, Roles: slices.Clone(p.Roles),
		Devices: map[string]*Device{p.Device: {ID: p.Device, PublicKey: slices.Clone(p.Key), AddedAt: c.now}},
	}
	return changed(p.ID)
}

func applyOperatorRevoke(c *applyCtx) (applyOut, error) {
	var p OperatorRevoke
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	op := c.st.Operators[p.ID]
	if op == nil {
		return applyOut{}, fmt.Errorf("%w: operator %q", ErrNotFound, p.ID)
	}
	if op.Revoked {
		return applyOut{}, nil
	}
	op.Revoked = true
	return changed(p.ID)
}

func applyDeviceAdd(c *applyCtx) (applyOut, error) {
	var p DeviceAdd
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	op := c.st.Operators[p.Operator]
	if op == nil || op.Revoked {
		return applyOut{}, fmt.Errorf("%w: operator %q", ErrNotFound, p.Operator)
	}
	if p.Device == "" || len(p.Key) == 0 {
		return applyOut{}, invalid("device needs id and key")
	}
	if _, ok := op.Devices[p.Device]; ok {
		return applyOut{}, invalid("device %q already exists", p.Device)
	}
	op.Devices[p.Device] = &Device{ID: p.Device, PublicKey: slices.Clone(p.Key), AddedAt: c.now}
	return changed(p.Operator + "/" + p.Device)
}

func applyDeviceRevoke(c *applyCtx) (applyOut, error) {
	var p DeviceRevoke
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	op := c.st.Operators[p.Operator]
	if op == nil || op.Devices[p.Device] == nil {
		return applyOut{}, fmt.Errorf("%w: device %s/%s", ErrNotFound, p.Operator, p.Device)
	}
	d := op.Devices[p.Device]
	if d.Revoked {
		return applyOut{}, nil
	}
	d.Revoked, d.RevokedAt = true, c.now
	return changed(p.Operator + "/" + p.Device)
}

func applyRulesSet(c *applyCtx) (applyOut, error) {
	var p RulesSet
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if len(p.Body) == 0 {
		return applyOut{}, invalid("empty rules")
	}
	sum := sha256.Sum256(p.Body)
	h := hex.EncodeToString(sum[:])
	if c.st.ActiveRules == h {
		return applyOut{}, nil
	}
	c.st.Rules[h] = &Rules{Hash: h, Body: slices.Clone(p.Body)}
	c.st.ActiveRules = h
	return changed(h)
}

func applyWalletSet(c *applyCtx) (applyOut, error) {
	var p WalletSet
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	w := p.Wallet
	if w.ID == "" || w.Chain == "" || len(w.Committee) == 0 || w.Threshold < 1 || w.Threshold >= len(w.Committee)+1 {
		return applyOut{}, invalid("wallet needs id, chain, committee and 1 <= threshold <= committee size")
	}
	w.Committee = slices.Clone(w.Committee)
	c.st.Wallets[w.ID] = &w
	return changed(w.ID)
}

func allowKey(wallet, addr string) string { return wallet + "/" + addr }

func applyAllowAdd(c *applyCtx) (applyOut, error) {
	var p AllowAdd
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if c.st.Lock.Locked {
		return applyOut{}, ErrLocked
	}
	if c.st.Wallets[p.Wallet] == nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q", ErrNotFound, p.Wallet)
	}
	if p.Address == "" {
		return applyOut{}, invalid("allowlist entry needs an address")
	}
	eff := p.EffectiveAt.UTC()
	if eff.Before(c.now) {
		eff = c.now
	}
	k := allowKey(p.Wallet, p.Address)
	c.st.Allowlist[k] = &AllowEntry{Wallet: p.Wallet, Address: p.Address, Label: p.Label, AddedAt: c.now, EffectiveAt: eff}
	return changed(k)
}

func applyAllowRemove(c *applyCtx) (applyOut, error) {
	var p AllowRemove
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	k := allowKey(p.Wallet, p.Address)
	if c.st.Allowlist[k] == nil {
		return applyOut{}, fmt.Errorf("%w: allowlist entry %s", ErrNotFound, k)
	}
	delete(c.st.Allowlist, k)
	return changed(k)
}

func applyLock(c *applyCtx) (applyOut, error) {
	var p LockCmd
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if op := c.st.Operators[c.env.Actor]; op == nil || op.Revoked {
		return applyOut{}, fmt.Errorf("%w: lock needs an enrolled operator, not %q", ErrInvalid, c.env.Actor)
	}
	if c.st.Lock.Locked {
		return applyOut{}, nil
	}
	c.st.Lock = Lock{Locked: true, By: c.env.Actor, Reason: p.Reason, At: c.now}
	return changed("account")
}

func applyUnlock(c *applyCtx) (applyOut, error) {
	var p UnlockCmd
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if !c.st.Lock.Locked {
		return applyOut{}, nil
	}
	c.st.Lock = Lock{}
	return changed("account")
}

func nonceKey(wallet string, n uint64) string { return wallet + "/" + strconv.FormatUint(n, 10) }

func sameCreate(r *Request, p *RequestCreate) bool {
	return r.Wallet == p.Wallet && r.PayloadHash == p.PayloadHash && string(r.Payload) == string(p.Payload) &&
		r.Destination == p.Destination && r.Amount == p.Amount &&
		((r.Nonce == nil) == (p.Nonce == nil)) && (r.Nonce == nil || *r.Nonce == *p.Nonce) &&
		slices.Equal(r.Outpoints, p.Outpoints)
}

func applyRequestCreate(c *applyCtx) (applyOut, error) {
	var p RequestCreate
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	st := c.st
	if old := st.Requests[p.ID]; old != nil {
		if !sameCreate(old, &p) {
			return applyOut{}, fmt.Errorf("%w: %q", ErrConflict, p.ID)
		}
		return applyOut{existing: true, req: old}, nil
	}
	switch {
	case p.ID == "" || len(p.ID) > 128:
		return applyOut{}, invalid("request ID must be 1..128 bytes")
	case len(p.Payload) == 0 || p.PayloadHash == "":
		return applyOut{}, invalid("request needs payload and payload hash")
	case !p.ExpiresAt.After(c.now):
		return applyOut{}, invalid("request expiry %s is not after %s", p.ExpiresAt.UTC().Format(time.RFC3339), c.now.Format(time.RFC3339))
	}
	if st.Wallets[p.Wallet] == nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q", ErrNotFound, p.Wallet)
	}
	if p.Nonce != nil {
		if by, ok := st.Nonces[nonceKey(p.Wallet, *p.Nonce)]; ok {
			return applyOut{}, fmt.Errorf("%w: nonce %d of %s held by %q", ErrAllocated, *p.Nonce, p.Wallet, by)
		}
	}
	seen := map[string]bool{}
	for _, op := range p.Outpoints {
		if op == "" || seen[op] {
			return applyOut{}, invalid("empty or repeated outpoint %q", op)
		}
		seen[op] = true
		if by, ok := st.Outpoints[op]; ok {
			return applyOut{}, fmt.Errorf("%w: outpoint %s held by %q", ErrAllocated, op, by)
		}
	}
	r := &Request{
		ID: p.ID, Wallet: p.Wallet, Initiator: c.env.Actor, Destination: p.Destination, Amount: p.Amount,
		Payload: slices.Clone(p.Payload), PayloadHash: p.PayloadHash, Nonce: p.Nonce,
		Outpoints: slices.Clone(p.Outpoints), Approvals: []Approval{},
		CreatedAt: c.now, ExpiresAt: p.ExpiresAt.UTC(), CreatedIdx: c.l.Index, UpdatedIdx: c.l.Index,
	}
	d, err := c.f.eval.Evaluate(st, r, c.now)
	if err != nil {
		return applyOut{}, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	r.Decision = d
	switch {
	case !d.Allow:
		r.Status = StatusRejected
	case d.ApprovalsRequired <= 0:
		r.Status = StatusApproved
	default:
		r.Status = StatusAwaitingApprovals
	}
	if d.Allow {
		if p.Nonce != nil {
			st.Nonces[nonceKey(p.Wallet, *p.Nonce)] = r.ID
		}
		for _, op := range r.Outpoints {
			st.Outpoints[op] = r.ID
		}
	}
	st.Requests[r.ID] = r
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// releaseAllocations frees a request's nonce and outpoints. Only for requests
// that can never have been signed (never claimed or exported).
func (st *State) releaseAllocations(r *Request) {
	if r.Nonce != nil && st.Nonces[nonceKey(r.Wallet, *r.Nonce)] == r.ID {
		delete(st.Nonces, nonceKey(r.Wallet, *r.Nonce))
	}
	for _, op := range r.Outpoints {
		if st.Outpoints[op] == r.ID {
			delete(st.Outpoints, op)
		}
	}
}

// approvalValid checks what the FSM owns (enrollment, revocation, expiry,
// initiator) and then the signature through the Verifier.
func (c *applyCtx) approvalValid(r *Request, a *Approval) error {
	op := c.st.Operators[a.Operator]
	switch {
	case op == nil || op.Revoked:
		return fmt.Errorf("%w: operator %q not enrolled", ErrApproval, a.Operator)
	case op.Devices[a.Device] == nil || op.Devices[a.Device].Revoked:
		return fmt.Errorf("%w: device %s/%s not enrolled", ErrApproval, a.Operator, a.Device)
	case a.Operator == r.Initiator:
		return fmt.Errorf("%w: the initiator %q cannot approve", ErrApproval, a.Operator)
	case !c.now.Before(a.Expiry):
		return fmt.Errorf("%w: approval by %q expired", ErrApproval, a.Operator)
	}
	if err := c.f.verify.VerifyApproval(c.st, r, a, c.now); err != nil {
		return fmt.Errorf("%w: %v", ErrApproval, err)
	}
	return nil
}

// countApprovals counts distinct operators whose approval is valid now.
func (c *applyCtx) countApprovals(r *Request) int {
	seen := map[string]bool{}
	for i := range r.Approvals {
		a := &r.Approvals[i]
		if a.Reject || seen[a.Operator] || c.approvalValid(r, a) != nil {
			continue
		}
		seen[a.Operator] = true
	}
	return len(seen)
}

func applyApprove(c *applyCtx) (applyOut, error) {
	var p Approve
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	r := c.st.Requests[p.RequestID]
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if r.Status != StatusAwaitingApprovals {
		return applyOut{}, fmt.Errorf("%w: %q is %s", ErrWrongStatus, r.ID, r.Status)
	}
	a := Approval{Operator: p.Operator, Device: p.Device, Reject: p.Reject, Signature: slices.Clone(p.Signature),
		Expiry: p.Expiry.UTC(), Index: c.l.Index, At: c.now}
	for _, old := range r.Approvals {
		if old.Operator == a.Operator {
			return applyOut{}, fmt.Errorf("%w: %q already answered this request", ErrApproval, a.Operator)
		}
	}
	if err := c.approvalValid(r, &a); err != nil {
		return applyOut{}, err
	}
	r.Approvals = append(r.Approvals, a)
	r.UpdatedIdx = c.l.Index
	if a.Reject {
		r.Status = StatusRejected
		c.st.releaseAllocations(r)
	} else if c.countApprovals(r) >= r.Decision.ApprovalsRequired {
		r.Status = StatusApproved
	}
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// recheck re-evaluates policy and recounts approvals at this index: a lock,
// a revoked device or a rules change since approval stops the request here.
func (c *applyCtx) recheck(r *Request) error {
	if c.st.Lock.Locked {
		return ErrLocked
	}
	if !c.now.Before(r.ExpiresAt) {
		return fmt.Errorf("%w: request %q expired", ErrPolicy, r.ID)
	}
	d, err := c.f.eval.Evaluate(c.st, r, c.now)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if !d.Allow {
		return fmt.Errorf("%w: %s", ErrPolicy, d.Reason)
	}
	need := max(d.ApprovalsRequired, r.Decision.ApprovalsRequired)
	if got := c.countApprovals(r); got < need {
		return fmt.Errorf("%w: %d valid approvals, need %d", ErrQuorum, got, need)
	}
	return nil
}

func validSession(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

func applyClaim(c *applyCtx) (applyOut, error) {
	var p ClaimCmd
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	r := c.st.Requests[p.RequestID]
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if p.Term != c.l.Term {
		return applyOut{}, fmt.Errorf("%w: claim built in term %d, committed in term %d", ErrStaleLeader, p.Term, c.l.Term)
	}
	if !validSession(p.SessionID) {
		return applyOut{}, invalid("session ID must be 32 bytes hex")
	}
	if r.Status != p.ExpectStatus || r.Status != StatusApproved {
		return applyOut{}, fmt.Errorf("%w: %q is %s, claim expected %s", ErrWrongStatus, r.ID, r.Status, p.ExpectStatus)
	}
	if r.Decision.Route != RouteHot {
		return applyOut{}, fmt.Errorf("%w: %q is routed %q; only hot requests are claimed", ErrWrongStatus, r.ID, r.Decision.Route)
	}
	if err := c.recheck(r); err != nil {
		return applyOut{}, err
	}
	r.Claim = &Claim{SessionID: p.SessionID, Index: c.l.Index, Term: c.l.Term, By: c.env.Actor, At: c.now}
	r.Status = StatusClaimed
	r.UpdatedIdx = c.l.Index
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

func applyResult_(c *applyCtx) (applyOut, error) {
	var p ResultCmd
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	r := c.st.Requests[p.RequestID]
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if r.Status != StatusClaimed {
		return applyOut{}, fmt.Errorf("%w: %q is %s", ErrWrongStatus, r.ID, r.Status)
	}
	if r.Claim == nil || r.Claim.SessionID != p.SessionID {
		return applyOut{}, ErrStaleSession
	}
	if (len(p.Signed) == 0) == (p.Error == "") {
		return applyOut{}, invalid("a result has exactly one of signed or error")
	}
	r.Result = &Result{SessionID: p.SessionID, Signed: slices.Clone(p.Signed), TxHash: p.TxHash, Error: p.Error, Index: c.l.Index, At: c.now}
	if p.Error != "" {
		// Allocations stay taken: a failed session may have produced a
		// signature somewhere; the nonce/outpoint must not be reused blindly.
		r.Status = StatusFailed
	} else {
		r.Status = StatusSigned
	}
	r.UpdatedIdx = c.l.Index
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

func applyExpire(c *applyCtx) (applyOut, error) {
	var p ExpireCmd
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	r := c.st.Requests[p.RequestID]
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	switch r.Status {
	case StatusAwaitingApprovals, StatusApproved, StatusExported:
	default:
		return applyOut{}, fmt.Errorf("%w: %q is %s", ErrWrongStatus, r.ID, r.Status)
	}
	if c.now.Before(r.ExpiresAt) {
		return applyOut{}, invalid("%q expires at %s", r.ID, r.ExpiresAt.Format(time.RFC3339))
	}
	if r.Status != StatusExported {
		// An exported bundle may be signed offline: its allocations stay.
		c.st.releaseAllocations(r)
	}
	r.Status = StatusExpired
	r.UpdatedIdx = c.l.Index
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

func applyColdExport(c *applyCtx) (applyOut, error) {
	var p ColdExport
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	r := c.st.Requests[p.RequestID]
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if r.Status != StatusApproved || r.Decision.Route != RouteCold {
		return applyOut{}, fmt.Errorf("%w: %q is %s/%s, export needs approved/cold", ErrWrongStatus, r.ID, r.Status, r.Decision.Route)
	}
	if p.BundleHash == "" {
		return applyOut{}, invalid("export needs the bundle hash")
	}
	if err := c.recheck(r); err != nil {
		return applyOut{}, err
	}
	r.Status, r.BundleHash, r.UpdatedIdx = StatusExported, p.BundleHash, c.l.Index
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

func applyColdImport(c *applyCtx) (applyOut, error) {
	var p ColdImport
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	r := c.st.Requests[p.RequestID]
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if r.Status != StatusExported {
		return applyOut{}, fmt.Errorf("%w: %q is %s", ErrWrongStatus, r.ID, r.Status)
	}
	if len(p.Signed) == 0 {
		return applyOut{}, invalid("import needs the signed transaction")
	}
	r.Result = &Result{Signed: slices.Clone(p.Signed), TxHash: p.TxHash, Index: c.l.Index, At: c.now}
	r.Status, r.UpdatedIdx = StatusImported, c.l.Index
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// Snapshot serialises the state under the lock; Persist only writes bytes.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.halted != nil {
		return nil, f.halted
	}
	b, err := f.st.Encode()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{b: b}, nil
}

// Restore replaces the whole state with the snapshot's; nothing of the prior
// state survives. A snapshot whose audit chain does not verify is refused.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("ledger: restore: %w", err)
	}
	st, err := DecodeState(b)
	if err != nil {
		return fmt.Errorf("ledger: restore: %w", err)
	}
	if err := VerifyChain(st.Audit); err != nil {
		return fmt.Errorf("ledger: restore: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	return nil
}

type fsmSnapshot struct{ b []byte }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.b); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("ledger: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
