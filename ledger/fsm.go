package ledger

import (
	"context"
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

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Result of one Apply, returned to the proposer through raft's ApplyFuture.
type applyResult struct {
	req      *Request
	existing bool
	err      error
}

// FSM is the ledger's raft state machine. Apply is deterministic: the only
// inputs are the state, the log entry and its index/term; policy evaluation
// and approval verification are the pure functions of packages policy and
// quorum, called with the command's time.
type FSM struct {
	log    *slog.Logger
	onHalt func(error)

	mu     sync.RWMutex
	st     *State
	halted error
	// moved is closed (and replaced) whenever st.Index advances, the state
	// is restored or the FSM halts: waiters in ReadAtLeast wake up on it.
	moved chan struct{}
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM over an empty state. onHalt (may be nil) is called
// once, from the apply goroutine, when the FSM halts.
func NewFSM(logger *slog.Logger, onHalt func(error)) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{log: logger, onHalt: onHalt, st: NewState(), moved: make(chan struct{})}
}

// notifyLocked wakes every ReadAtLeast waiter; the caller holds f.mu.
func (f *FSM) notifyLocked() {
	close(f.moved)
	f.moved = make(chan struct{})
}

// Index returns the state's own index: the raft index of the last entry that
// changed the state. Unlike raft's applied index, which raft advances when it
// hands entries to the FSM, it moves only once Apply has finished, and every
// node that applied the same log prefix reports the same value.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Index
}

// ReadAtLeast waits until the state's index reaches idx (see [FSM.Index]),
// then calls fn under the read lock. It returns ctx's error, wrapped, when
// ctx ends first, and the halt error when the FSM halted.
func (f *FSM) ReadAtLeast(ctx context.Context, idx uint64, fn func(*State) error) error {
	for {
		f.mu.RLock()
		if f.halted != nil {
			f.mu.RUnlock()
			return f.halted
		}
		if f.st.Index >= idx {
			defer f.mu.RUnlock()
			return fn(f.st)
		}
		at, moved := f.st.Index, f.moved
		f.mu.RUnlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: local state at index %d, read needs %d: %w", ErrNotCaughtUp, at, idx, ctx.Err())
		case <-moved:
		}
	}
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
		f.notifyLocked()
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
		f.notifyLocked()
	}
	r := &applyResult{existing: out.existing}
	if out.req != nil {
		r.req = out.req.Clone()
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
		CmdGenesis:        applyGenesis,
		CmdMemberSet:      applyMemberSet,
		CmdMemberRemove:   applyMemberRemove,
		CmdRegistryChange: applyRegistryChange,
		CmdPolicyChange:   applyPolicyChange,
		CmdRulesSet:       applyRulesSet,
		CmdWalletSet:      applyWalletSet,
		CmdRequestCreate:  applyRequestCreate,
		CmdApprove:        applyApprove,
		CmdClaim:          applyClaim,
		CmdReclaim:        applyReclaim,
		CmdResult:         applyResultCmd,
		CmdExpire:         applyExpire,
		CmdColdExport:     applyColdExport,
		CmdColdImport:     applyColdImport,
	}
}

func changed(subject string) (applyOut, error) { return applyOut{changed: true, subject: subject}, nil }

func (c *applyCtx) needGenesis() error {
	if c.st.rules == nil || c.st.Registry.ClusterID == "" {
		return fmt.Errorf("%w: ledger not initialised (no genesis)", ErrInvalid)
	}
	return nil
}

func applyGenesis(c *applyCtx) (applyOut, error) {
	var p Genesis
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if c.st.Registry.ClusterID != "" {
		return applyOut{}, invalid("ledger already initialised for cluster %q", c.st.Registry.ClusterID)
	}
	reg, err := quorum.NewRegistry(p.ClusterID, p.AdminQuorum, p.Operators, p.Devices)
	if err != nil {
		return applyOut{}, fmt.Errorf("%w: genesis registry: %w", ErrInvalid, err)
	}
	rules, err := policy.ParseRules(p.Rules)
	if err != nil {
		return applyOut{}, fmt.Errorf("%w: genesis rules: %w", ErrInvalid, err)
	}
	c.st.Registry = reg
	c.st.Rules[rules.Hash()] = &RulesDoc{Hash: rules.Hash(), Body: slices.Clone(p.Rules)}
	c.st.ActiveRules, c.st.rules = rules.Hash(), rules
	return changed(p.ClusterID)
}

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

// approvalErr classifies an approvals/content error from quorum or policy.
func approvalErr(err error) error {
	switch {
	case errors.Is(err, policy.ErrLocked):
		return fmt.Errorf("%w: %w", ErrLocked, err)
	case errors.Is(err, quorum.ErrInsufficientApprovals), errors.Is(err, quorum.ErrRejected):
		return fmt.Errorf("%w: %w", ErrQuorum, err)
	}
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}

func applyRegistryChange(c *applyCtx) (applyOut, error) {
	var p RegistryChange
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if err := c.needGenesis(); err != nil {
		return applyOut{}, err
	}
	next, _, err := c.st.Registry.Apply(p.Change, p.Approvals, c.now)
	if err != nil {
		return applyOut{}, approvalErr(err)
	}
	c.st.Registry = next
	return changed(string(p.Change.Kind) + ":" + p.Change.ID)
}

func applyPolicyChange(c *applyCtx) (applyOut, error) {
	var p PolicyChange
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if err := c.needGenesis(); err != nil {
		return applyOut{}, err
	}
	next, _, err := c.st.Policy.Apply(c.st.rules, c.st.Registry, p.Change, p.Approvals, nil, c.now)
	if err != nil {
		return applyOut{}, approvalErr(err)
	}
	c.st.Policy = next
	return changed(string(p.Change.Kind) + ":" + p.Change.ID)
}

func applyRulesSet(c *applyCtx) (applyOut, error) {
	var p RulesSet
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	if err := c.needGenesis(); err != nil {
		return applyOut{}, err
	}
	next, err := policy.ParseRules(p.Body)
	if err != nil {
		return applyOut{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if next.Hash() == c.st.ActiveRules {
		return applyOut{}, nil
	}
	if _, err := policy.AuthorizeRulesChange(c.st.Registry, p.ID, next, p.Approvals, c.now); err != nil {
		return applyOut{}, approvalErr(err)
	}
	c.st.Rules[next.Hash()] = &RulesDoc{Hash: next.Hash(), Body: slices.Clone(p.Body)}
	c.st.ActiveRules, c.st.rules = next.Hash(), next
	return changed(next.Hash())
}

func applyWalletSet(c *applyCtx) (applyOut, error) {
	var p WalletSet
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	w := p.Wallet
	if w.ID == "" || w.Chain == "" || w.Network == "" || len(w.Committee) == 0 || w.Threshold < 1 || w.Threshold > len(w.Committee) {
		return applyOut{}, invalid("wallet needs id, chain, network, committee and 1 <= threshold <= committee size")
	}
	if old := c.st.Wallets[w.ID]; old != nil {
		if old.Chain == w.Chain && old.Network == w.Network && old.Threshold == w.Threshold && slices.Equal(old.Committee, w.Committee) {
			return applyOut{}, nil
		}
		// A wallet is a key: its committee changes only by a reshare, which
		// is a different command.
		return applyOut{}, fmt.Errorf("%w: wallet %q exists with a different description", ErrConflict, w.ID)
	}
	w.Committee = slices.Clone(w.Committee)
	c.st.Wallets[w.ID] = &w
	return changed(w.ID)
}

func nonceKey(wallet string, n uint64) string { return wallet + "/" + strconv.FormatUint(n, 10) }

func sameCreate(r *Request, p *RequestCreate, initiator string) bool {
	return r.Wallet == p.Wallet && r.Asset == p.Asset && r.Chain == p.Chain && r.Network == p.Network &&
		r.To == p.To && r.Amount.Cmp(p.Amount) == 0 && r.PayloadHash == p.PayloadHash &&
		string(r.Payload) == string(p.Payload) && r.Initiator == initiator &&
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
		if !sameCreate(old, &p, c.env.Actor) {
			return applyOut{}, fmt.Errorf("%w: %q", ErrConflict, p.ID)
		}
		return applyOut{existing: true, req: old}, nil
	}
	if err := c.needGenesis(); err != nil {
		return applyOut{}, err
	}
	switch {
	case p.ID == "" || len(p.ID) > 128:
		return applyOut{}, invalid("request ID must be 1..128 bytes")
	case len(p.Payload) == 0 || p.PayloadHash == (quorum.Hash{}):
		return applyOut{}, invalid("request needs payload and payload hash")
	case !p.ExpiresAt.After(c.now):
		return applyOut{}, invalid("request expiry %s is not after %s", p.ExpiresAt.UTC().Format(time.RFC3339), c.now.Format(time.RFC3339))
	}
	w := st.Wallets[p.Wallet]
	if w == nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q", ErrNotFound, p.Wallet)
	}
	if w.Chain != p.Chain || w.Network != p.Network {
		return applyOut{}, invalid("wallet %q is on %s/%s, not %s/%s", w.ID, w.Chain, w.Network, p.Chain, p.Network)
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
		ID: p.ID, Wallet: p.Wallet, Asset: p.Asset, Chain: p.Chain, Network: p.Network, To: p.To,
		Amount: p.Amount, Initiator: c.env.Actor, Payload: slices.Clone(p.Payload), PayloadHash: p.PayloadHash,
		Nonce: p.Nonce, Outpoints: slices.Clone(p.Outpoints), Approvals: []quorum.Approval{},
		CreatedAt: c.now, ExpiresAt: p.ExpiresAt.UTC(), CreatedIdx: c.l.Index, UpdatedIdx: c.l.Index,
	}
	r.Decision = policy.Evaluate(st.rules, st.Policy, r.PolicyRequest(), c.now)
	if !r.Decision.Allowed {
		// A denial is recorded (and audited) so the backend gets the same
		// answer for the same request ID; nothing is allocated.
		r.Status = StatusRejected
	} else {
		r.Status = StatusAwaitingApprovals
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

func (c *applyCtx) authorize(r *Request) policy.Decision {
	return policy.Authorize(c.st.rules, c.st.Policy, c.st.Registry, r.PolicyRequest(), r.Approvals, c.now)
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
	a := p.Approval
	// This approval alone must pass every check quorum.Count makes; an
	// approval that would be ignored is refused instead of stored.
	t := quorum.Count(c.st.Registry,
		quorum.Subject{RequestID: r.ID, PayloadHash: r.PayloadHash, Initiator: r.Initiator},
		quorum.Requirement{Required: 1, Roles: r.Decision.Roles}, []quorum.Approval{a}, c.now)
	if len(t.Ignored) > 0 {
		return applyOut{}, fmt.Errorf("%w: %s", ErrApproval, t.Ignored[0].Reason)
	}
	op := c.st.Registry.Devices[a.DeviceID].OperatorID
	for _, old := range r.Approvals {
		if c.st.Registry.Devices[old.DeviceID].OperatorID == op {
			return applyOut{}, fmt.Errorf("%w: operator %q already answered %q", ErrApproval, op, r.ID)
		}
	}
	r.Approvals = append(r.Approvals, a)
	r.UpdatedIdx = c.l.Index
	d := c.authorize(r)
	switch {
	case d.Reason == policy.ReasonRejected:
		r.Status = StatusRejected
		r.Decision = d
		c.st.releaseAllocations(r)
	case d.Approved:
		r.Status = StatusApproved
		r.Decision = d
	}
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// recheck runs policy and the approval count again at this index: a lock, a
// revoked device, a suspended operator or a rules change since approval stops
// the request here.
func (c *applyCtx) recheck(r *Request) (policy.Decision, error) {
	if !c.now.Before(r.ExpiresAt) {
		return policy.Decision{}, fmt.Errorf("%w: request %q expired", ErrPolicy, r.ID)
	}
	d := c.authorize(r)
	if d.Approved {
		return d, nil
	}
	err := d.Err()
	switch {
	case errors.Is(err, policy.ErrLocked):
		return d, fmt.Errorf("%w: %w", ErrLocked, err)
	case errors.Is(err, quorum.ErrInsufficientApprovals), errors.Is(err, quorum.ErrRejected):
		return d, fmt.Errorf("%w: %w", ErrQuorum, err)
	}
	return d, fmt.Errorf("%w: %w", ErrPolicy, err)
}

func (c *applyCtx) recordSpend(r *Request) {
	c.st.Policy = c.st.Policy.RecordSpend(policy.Spend{RequestID: r.ID, Wallet: r.Wallet, Asset: r.Asset, Amount: r.Amount, At: c.now}, c.st.rules.MaxWindow())
}

func validSession(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32 && s == hex.EncodeToString(b)
}

// checkSigners returns the signer set sorted, or ErrInvalid unless it is at
// least threshold+1 distinct members of the request's wallet committee.
func (c *applyCtx) checkSigners(r *Request, signers []string) ([]string, error) {
	w := c.st.Wallets[r.Wallet]
	if w == nil {
		return nil, fmt.Errorf("%w: wallet %q", ErrNotFound, r.Wallet)
	}
	out := slices.Clone(signers)
	slices.Sort(out)
	for i, s := range out {
		if !slices.Contains(w.Committee, s) {
			return nil, invalid("signer %q is not in the committee of wallet %q", s, w.ID)
		}
		if i > 0 && out[i-1] == s {
			return nil, invalid("signer %q named twice", s)
		}
	}
	if len(out) < w.Threshold+1 {
		return nil, invalid("%d signers; wallet %q needs at least %d", len(out), w.ID, w.Threshold+1)
	}
	return out, nil
}

// fence is the first check of a claim or reclaim: the command must commit in
// the term its leader built it in (a deposed leader's claim is refused), and
// name a well-formed session. verb names the command in errors.
func (c *applyCtx) fence(verb string, term uint64, session string) error {
	if term != c.l.Term {
		return fmt.Errorf("%w: %s built in term %d, committed in term %d", ErrStaleLeader, verb, term, c.l.Term)
	}
	if !validSession(session) {
		return invalid("session ID must be 32 bytes in lowercase hex")
	}
	return nil
}

// claimFor is what a claim and a reclaim share once the request's status was
// checked: only hot requests, signers from the committee, policy and approvals
// re-checked at this index; then the request is claimed under session, with
// this entry's index as the fencing token.
func (c *applyCtx) claimFor(r *Request, session string, signers []string) error {
	if r.Decision.Route != policy.RouteHot {
		return fmt.Errorf("%w: %q is routed %q; only hot requests are claimed", ErrWrongStatus, r.ID, r.Decision.Route)
	}
	signers, err := c.checkSigners(r, signers)
	if err != nil {
		return err
	}
	d, err := c.recheck(r)
	if err != nil {
		return err
	}
	// A session ID is claimed once, ever (State.Sessions), so a reclaim never
	// reuses its failed session nor anyone else's.
	if by, used := c.st.Sessions[session]; used {
		return invalid("session %s was already claimed for %q; every claim needs a fresh session", session, by)
	}
	r.Decision = d
	r.Claim = &Claim{SessionID: session, Signers: signers, Index: c.l.Index, Term: c.l.Term, By: c.env.Actor, At: c.now}
	r.Status, r.UpdatedIdx = StatusClaimed, c.l.Index
	c.st.Sessions[session] = r.ID
	return nil
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
	if err := c.fence("claim", p.Term, p.SessionID); err != nil {
		return applyOut{}, err
	}
	if r.Status != p.ExpectStatus || r.Status != StatusApproved {
		return applyOut{}, fmt.Errorf("%w: %q is %s, claim expected %s", ErrWrongStatus, r.ID, r.Status, p.ExpectStatus)
	}
	if err := c.claimFor(r, p.SessionID, p.Signers); err != nil {
		return applyOut{}, err
	}
	c.recordSpend(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// applyReclaim re-opens a failed hot request under a new session. The
// payload and its allocations never changed (failed keeps them), so every
// member's watermark accepts the same message again; policy and approvals
// are checked again at this index exactly as for a claim (policy does not
// count the request's own recorded spend twice).
func applyReclaim(c *applyCtx) (applyOut, error) {
	var p ReclaimCmd
	if err := c.decode(&p); err != nil {
		return applyOut{}, err
	}
	r := c.st.Requests[p.RequestID]
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if err := c.fence("reclaim", p.Term, p.SessionID); err != nil {
		return applyOut{}, err
	}
	if r.Status != StatusFailed || r.Claim == nil {
		return applyOut{}, fmt.Errorf("%w: %q is %s; only a failed session is reclaimed", ErrWrongStatus, r.ID, r.Status)
	}
	if r.Claim.SessionID != p.FailedSession {
		return applyOut{}, fmt.Errorf("%w: %q failed in session %s, reclaim names %s", ErrStaleSession, r.ID, r.Claim.SessionID, p.FailedSession)
	}
	if err := c.claimFor(r, p.SessionID, p.Signers); err != nil {
		return applyOut{}, err
	}
	r.Result = nil
	// The first claim recorded the spend; record it again only if it has
	// since aged out of the kept history.
	if !slices.ContainsFunc(c.st.Policy.History(), func(sp policy.Spend) bool { return sp.RequestID == r.ID }) {
		c.recordSpend(r)
	}
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

func applyResultCmd(c *applyCtx) (applyOut, error) {
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
	if r.Status != StatusApproved || r.Decision.Route != policy.RouteCold {
		return applyOut{}, fmt.Errorf("%w: %q is %s/%s, export needs approved/cold", ErrWrongStatus, r.ID, r.Status, r.Decision.Route)
	}
	if p.BundleHash == "" {
		return applyOut{}, invalid("export needs the bundle hash")
	}
	d, err := c.recheck(r)
	if err != nil {
		return applyOut{}, err
	}
	r.Decision = d
	r.Status, r.BundleHash, r.UpdatedIdx = StatusExported, p.BundleHash, c.l.Index
	c.recordSpend(r)
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
	f.notifyLocked()
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
