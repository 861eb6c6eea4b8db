package ledger

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// ClaimSession is the compare-and-set claim of a signing session. Term is
// the proposer's raft term when it built the command; an entry committed in
// any other term was proposed by a deposed leader and is refused. Signers
// names the nodes that run the session: distinct members of the wallet's
// committee, at least threshold+1 of them (any such set can sign; more than
// threshold+1 only adds parties that can abort). Build it with
// [Store.PrepareClaim].
type ClaimSession struct {
	RequestID    string       `json:"request_id"`
	ExpectStatus Status       `json:"expect_status"`
	SessionID    string       `json:"session_id"`
	Term         uint64       `json:"term"`
	Signers      []pki.NodeID `json:"signers"`
}

// Type implements Command.
func (ClaimSession) Type() string { return CmdClaim }

func (p ClaimSession) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if err := t.fence("claim", p.Term, p.SessionID); err != nil {
		return applyOut{}, err
	}
	if r.Status != p.ExpectStatus || r.Status != StatusApproved {
		return applyOut{}, fmt.Errorf("%w: %q is %s, claim expected %s", ErrWrongStatus, r.ID, r.Status, p.ExpectStatus)
	}
	if err := t.claimFor(r, p.SessionID, p.Signers); err != nil {
		return applyOut{}, err
	}
	t.recordSpend(r)
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// ReclaimSession grants a new signing session to a request whose session
// failed: same payload, same nonce/outpoints, a fresh SessionID and signer
// set. It is a compare-and-set on the failed claim: FailedSession must be
// the session of the request's current (failed) claim, so two leaders
// retrying the same failure cannot both win; Term fences a deposed leader as
// for a claim.
type ReclaimSession struct {
	RequestID     string       `json:"request_id"`
	FailedSession string       `json:"failed_session"`
	SessionID     string       `json:"session_id"`
	Term          uint64       `json:"term"`
	Signers       []pki.NodeID `json:"signers"`
}

// Type implements Command.
func (ReclaimSession) Type() string { return CmdReclaim }

// apply re-opens a failed hot request under a new session. The payload and
// its allocations never changed (failed keeps them), so every member's
// watermark accepts the same message again; policy and approvals are checked
// again at this index exactly as for a claim (policy does not count the
// request's own recorded spend twice).
func (p ReclaimSession) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if err := t.fence("reclaim", p.Term, p.SessionID); err != nil {
		return applyOut{}, err
	}
	if r.Status != StatusFailed || r.Claim == nil {
		return applyOut{}, fmt.Errorf("%w: %q is %s; only a failed session is reclaimed", ErrWrongStatus, r.ID, r.Status)
	}
	if r.Claim.SessionID != p.FailedSession {
		return applyOut{}, fmt.Errorf("%w: %q failed in session %s, reclaim names %s", ErrStaleSession, r.ID, r.Claim.SessionID, p.FailedSession)
	}
	if err := t.claimFor(r, p.SessionID, p.Signers); err != nil {
		return applyOut{}, err
	}
	r.Result = nil
	// The first claim recorded the spend; record it again only if it has
	// since aged out of the kept history.
	if !slices.ContainsFunc(t.policyState().History(), func(sp policy.Spend) bool { return sp.RequestID == r.ID }) {
		t.recordSpend(r)
	}
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// RecordResult records the outcome of the session named by SessionID.
type RecordResult struct {
	RequestID string `json:"request_id"`
	SessionID string `json:"session_id"`
	Signed    []byte `json:"signed,omitempty"`
	TxHash    string `json:"tx_hash,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Type implements Command.
func (RecordResult) Type() string { return CmdResult }

func (p RecordResult) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
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
	r.Result = &Result{SessionID: p.SessionID, Signed: slices.Clone(p.Signed), TxHash: p.TxHash, Error: p.Error, Index: t.index, At: t.now}
	if p.Error != "" {
		// Allocations stay taken: a failed session may have produced a
		// signature somewhere; the nonce/outpoint must not be reused blindly.
		r.Status = StatusFailed
	} else {
		r.Status = StatusSigned
	}
	r.UpdatedIdx = t.index
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// newSessionID returns a fresh 256-bit session ID in the ledger's lowercase
// hex form (signer/tss parses it with tss.ParseSessionID).
func newSessionID() (string, error) {
	var sid [32]byte
	if _, err := rand.Read(sid[:]); err != nil {
		return "", fmt.Errorf("ledger: session id: %w", err)
	}
	return hex.EncodeToString(sid[:]), nil
}

func validSession(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32 && s == hex.EncodeToString(b)
}

// recheck runs policy and the approval count again at this index: a lock, a
// revoked device, a suspended operator or a rules change since approval stops
// the request here.
func (t *txn) recheck(r *Request) (policy.Decision, error) {
	if !t.now.Before(r.ExpiresAt) {
		return policy.Decision{}, fmt.Errorf("%w: request %q expired", ErrPolicy, r.ID)
	}
	d := t.authorize(r)
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

func (t *txn) recordSpend(r *Request) {
	// The spend is the request's charge: its amount, plus its maximum fee
	// when the fee is paid in the withdrawn asset.
	rules := t.activeRules()
	t.setPolicy(t.policyState().RecordSpend(policy.Spend{RequestID: r.ID, Wallet: r.Wallet, Asset: r.Asset, Amount: rules.Charge(r.PolicyRequest()), At: t.now}, rules.MaxWindow()))
}

// checkSigners returns the signer set sorted, or ErrInvalid unless it is at
// least threshold+1 distinct members of the request's wallet committee.
func (t *txn) checkSigners(r *Request, signers []pki.NodeID) ([]pki.NodeID, error) {
	w := t.wallet(r.Wallet)
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
func (t *txn) fence(verb string, term uint64, session string) error {
	if term != t.term {
		return fmt.Errorf("%w: %s built in term %d, committed in term %d", ErrStaleLeader, verb, term, t.term)
	}
	if !validSession(session) {
		return invalid("session ID must be 32 bytes in lowercase hex")
	}
	return nil
}

// claimFor is what a claim and a reclaim share once the request's status was
// checked: only hot requests, signers from the committee, policy and approvals
// re-checked at this index; then the request is claimed under session, with
// this entry's index as the fencing token. The caller puts r back.
func (t *txn) claimFor(r *Request, session string, signers []pki.NodeID) error {
	if r.Decision.Route != policy.RouteHot {
		return fmt.Errorf("%w: %q is routed %q; only hot requests are claimed", ErrWrongStatus, r.ID, r.Decision.Route)
	}
	signers, err := t.checkSigners(r, signers)
	if err != nil {
		return err
	}
	d, err := t.recheck(r)
	if err != nil {
		return err
	}
	if d.Route != policy.RouteHot {
		return fmt.Errorf("%w: %q is routed %q under the rules in force; only hot requests are claimed", ErrPolicy, r.ID, d.Route)
	}
	if err := t.allocated(r); err != nil {
		return err
	}
	// A session ID is claimed once, ever (State.Sessions), so a reclaim never
	// reuses its failed session nor anyone else's.
	if by := t.sessionClaimedBy(session); by != "" {
		return invalid("session %s was already claimed for %q; every claim needs a fresh session", session, by)
	}
	r.Decision = d
	r.Claim = &Claim{SessionID: session, Signers: signers, Index: t.index, Term: t.term, By: t.actor, At: t.now}
	r.Status, r.UpdatedIdx = StatusClaimed, t.index
	t.recordSession(session, r.ID)
	return nil
}
