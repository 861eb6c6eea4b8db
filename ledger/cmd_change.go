package ledger

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Staged governance changes: how several operators' approvals of one change
// are collected over time.
//
// A governance command (policy.change, registry.change, wallet.create,
// wallet.reshare) carries ALL its approvals at once. Operators approve at
// different times and on their own devices, so the ledger keeps a staging
// area: ChangePropose records a proposed change with its proposer's signed
// approval, ChangeApprove adds another operator's; each approval is verified
// in the FSM (an active device of an active operator of a role that counts
// for the change, over the change's ID and payload hash, within the
// cluster's ceiling, one per operator). A proposal authorizes nothing by
// itself: nothing but the API reads State.Proposals, and once the collected
// approvals satisfy the quorum (Proposal.Ready) the API submits the real
// command with them, which the FSM and every member verify exactly as a
// command submitted directly. Applying the real command (any governance
// command recording the change ID) removes the proposal.

// MaxProposals bounds the open proposals; expired ones are dropped by the
// next ChangePropose.
const MaxProposals = 256

// MaxProposalsPerOperator bounds the open proposals one operator proposed
// (changes the proposer's approval alone completes are never capped).
const MaxProposalsPerOperator = 32

// ProposedChange is one governance change of a kind the staging area
// collects approvals for: exactly one field is set.
type ProposedChange struct {
	Policy        *policy.Change `json:"policy,omitempty"`
	Registry      *quorum.Change `json:"registry,omitempty"`
	WalletCreate  *WalletSpec    `json:"wallet_create,omitempty"`
	WalletReshare *ReshareSpec   `json:"wallet_reshare,omitempty"`
	// WalletRegister is a cold wallet from an offline keygen ceremony
	// (admin quorum, like WalletCreate).
	WalletRegister *ColdWalletSpec `json:"wallet_register,omitempty"`
}

// validate reports an error unless exactly one change is set.
func (c ProposedChange) validate() error {
	n := 0
	for _, set := range []bool{c.Policy != nil, c.Registry != nil, c.WalletCreate != nil, c.WalletReshare != nil, c.WalletRegister != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return invalid("a proposed change names exactly one change, got %d", n)
	}
	return nil
}

// ID is the change ID (single-use, shared by every governance change).
func (c ProposedChange) ID() string {
	switch {
	case c.Policy != nil:
		return c.Policy.ID
	case c.Registry != nil:
		return c.Registry.ID
	case c.WalletCreate != nil:
		return c.WalletCreate.ID
	case c.WalletReshare != nil:
		return c.WalletReshare.ID
	case c.WalletRegister != nil:
		return c.WalletRegister.ID
	}
	return ""
}

// Kind is the command type the change is applied with, and for policy and
// registry changes its kind ("policy.change/allowlist_add").
func (c ProposedChange) Kind() string {
	switch {
	case c.Policy != nil:
		return CmdPolicyChange + "/" + string(c.Policy.Kind)
	case c.Registry != nil:
		return CmdRegistryChange + "/" + string(c.Registry.Kind)
	case c.WalletCreate != nil:
		return CmdWalletCreate
	case c.WalletReshare != nil:
		return CmdWalletReshare
	case c.WalletRegister != nil:
		return CmdWalletRegister
	}
	return ""
}

// PayloadHash is the hash approvers sign: the change's own (the same the
// real command counts approvals over).
func (c ProposedChange) PayloadHash() quorum.Hash {
	switch {
	case c.Policy != nil:
		return c.Policy.PayloadHash()
	case c.Registry != nil:
		return c.Registry.PayloadHash()
	case c.WalletCreate != nil:
		return c.WalletCreate.PayloadHash()
	case c.WalletReshare != nil:
		return c.WalletReshare.PayloadHash()
	case c.WalletRegister != nil:
		return c.WalletRegister.PayloadHash()
	}
	return quorum.Hash{}
}

// Command is the real governance command carrying approvals.
func (c ProposedChange) Command(approvals []quorum.Approval) Command {
	as := slices.Clone(approvals)
	switch {
	case c.Policy != nil:
		return PolicyChange{Change: *c.Policy, Approvals: as}
	case c.Registry != nil:
		return RegistryChange{Change: *c.Registry, Approvals: as}
	case c.WalletCreate != nil:
		return WalletCreate{Change: *c.WalletCreate, Approvals: as}
	case c.WalletReshare != nil:
		return WalletReshare{Change: *c.WalletReshare, Approvals: as}
	case c.WalletRegister != nil:
		spec := *c.WalletRegister
		spec.PubKey, spec.Custodians = slices.Clone(spec.PubKey), slices.Clone(spec.Custodians)
		return WalletRegister{Change: spec, Approvals: as}
	}
	return nil
}

// Requirement is who may approve the change under rules and reg (the roles
// that count, how many) and the operator whose approval never counts for it
// (a registry change's target).
func (c ProposedChange) Requirement(rules *policy.Rules, reg quorum.Registry) (quorum.Requirement, string) {
	switch {
	case c.Policy != nil:
		return c.Policy.Requirement(rules, reg), ""
	case c.Registry != nil:
		return reg.Requirement(*c.Registry)
	}
	return quorum.Requirement{Required: reg.AdminQuorum, Roles: []quorum.Role{quorum.RoleAdmin}}, ""
}

// Proposal is a staged governance change and the approvals collected for
// it so far, in the order they were recorded.
type Proposal struct {
	Change    ProposedChange    `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
	// ProposedBy is the operator whose approval opened the proposal.
	ProposedBy string    `json:"proposed_by"`
	ProposedAt time.Time `json:"proposed_at"`
	// ApprovedAt are the ledger times the approvals were recorded, one per
	// approval.
	ApprovedAt []time.Time `json:"approved_at"`
	// ExpiresAt is when the proposer's approval expires: no approval is
	// added after it, and a new proposal may then reuse the ID.
	ExpiresAt time.Time `json:"expires_at"`
	// Required and Roles are what the change needs (at the last approval).
	Required int           `json:"required"`
	Roles    []quorum.Role `json:"roles"`
	// Ready: the real command with these approvals passed the FSM's checks
	// when the last approval was recorded (a dry run on the state at that
	// index; nothing applied). The API then submits it.
	Ready bool   `json:"ready"`
	Index uint64 `json:"index"`
}

// Clone deep-copies the proposal (nil for nil).
func (p *Proposal) Clone() *Proposal { return cloneJSON(p) }

// Operators are the operators whose approvals the proposal holds, in order.
func (p *Proposal) Operators(reg quorum.Registry) []string {
	var out []string
	for _, a := range p.Approvals {
		out = append(out, reg.Devices[a.DeviceID].OperatorID)
	}
	return out
}

// ChangePropose opens a proposal: the change and its proposer's approval.
// The change ID must never have been applied (ErrReplayed) nor be open in
// another live proposal (ErrConflict); the change must be one the real
// command would accept but for missing approvals (its content is checked by
// a dry run of the real command: ErrInvalid, ErrLocked, ErrWrongStatus,
// ErrNotFound, ErrConflict as that command would refuse it).
type ChangePropose struct {
	Change   ProposedChange  `json:"change"`
	Approval quorum.Approval `json:"approval"`
}

// Type implements Command.
func (ChangePropose) Type() string { return CmdChangePropose }

func (p ChangePropose) apply(t *txn) (applyOut, error) {
	if err := p.Change.validate(); err != nil {
		return applyOut{}, err
	}
	id := p.Change.ID()
	if err := t.governance(id, []quorum.Approval{p.Approval}); err != nil {
		return applyOut{}, err
	}
	if old := t.proposal(id); old != nil && t.now.Before(old.ExpiresAt) {
		return applyOut{}, fmt.Errorf("%w: change %q is already proposed (add an approval with %s)", ErrConflict, id, CmdChangeApprove)
	}
	// The content must pass the real command's checks; only the quorum
	// may be missing.
	if err := dryRun(t, p.Change.Command(nil)); err != nil && !isQuorumErr(err) {
		return applyOut{}, err
	}
	proposer := t.registry().Devices[p.Approval.DeviceID].OperatorID
	open, mine := 0, 0
	for pid, pr := range t.st.Proposals {
		if !t.now.Before(pr.ExpiresAt) {
			t.dropProposal(pid) // expired: nothing can be added to it
			continue
		}
		open++
		if pr.ProposedBy == proposer {
			mine++
		}
	}
	// A change its proposer's approval alone completes (a lock, a
	// suspension, a device revocation, an allowlist removal) is never
	// capped: the API applies it at once, and no one may block it by
	// filling the staging area. Others are capped overall and per proposer
	// (one operator cannot take the whole area).
	if dryRun(t, p.Change.Command([]quorum.Approval{p.Approval})) != nil {
		if open >= MaxProposals {
			return applyOut{}, invalid("%d proposals are open; let some expire or complete", open)
		}
		if mine >= MaxProposalsPerOperator {
			return applyOut{}, invalid("operator %q has %d proposals open (at most %d); let some expire or complete", proposer, mine, MaxProposalsPerOperator)
		}
	}
	pr := &Proposal{Change: p.Change, ProposedAt: t.now, ExpiresAt: p.Approval.Expiry.UTC()}
	op, err := pr.add(t, p.Approval)
	if err != nil {
		return applyOut{}, err
	}
	pr.ProposedBy = op
	t.putProposal(pr)
	return changed(p.Change.Kind() + ":" + id)
}

// ChangeApprove adds one operator's approval to an open proposal: before
// the proposal expires, at most once per operator, each approval verified
// as ChangePropose verifies the proposer's.
type ChangeApprove struct {
	ID       string          `json:"id"`
	Approval quorum.Approval `json:"approval"`
}

// Type implements Command.
func (ChangeApprove) Type() string { return CmdChangeApprove }

func (p ChangeApprove) apply(t *txn) (applyOut, error) {
	if err := t.governance(p.ID, []quorum.Approval{p.Approval}); err != nil {
		return applyOut{}, err
	}
	pr := t.proposal(p.ID)
	if pr == nil {
		return applyOut{}, fmt.Errorf("%w: no proposal %q", ErrNotFound, p.ID)
	}
	if !t.now.Before(pr.ExpiresAt) {
		return applyOut{}, fmt.Errorf("%w: proposal %q expired at %s", ErrWrongStatus, p.ID, pr.ExpiresAt.Format(time.RFC3339))
	}
	if _, err := pr.add(t, p.Approval); err != nil {
		return applyOut{}, err
	}
	t.putProposal(pr)
	return changed(pr.Change.Kind() + ":" + p.ID)
}

// add verifies a and appends it, then records whether the real command
// would now pass (Ready). It returns a's operator.
func (pr *Proposal) add(t *txn, a quorum.Approval) (string, error) {
	if a.Decision != quorum.Approve {
		return "", fmt.Errorf("%w: a proposal collects approvals, not %s", ErrApproval, a.Decision)
	}
	req, target := pr.Change.Requirement(t.activeRules(), t.registry())
	reg := t.registry()
	tally := quorum.Count(reg, quorum.Subject{RequestID: pr.Change.ID(), PayloadHash: pr.Change.PayloadHash(), Initiator: target},
		quorum.Requirement{Required: 1, Roles: req.Roles}, []quorum.Approval{a}, t.now)
	if len(tally.Ignored) > 0 {
		return "", fmt.Errorf("%w: %s", ErrApproval, tally.Ignored[0].Reason)
	}
	// Every approval dies with its proposal: one that outlives it could be
	// harvested from the staging area and submitted later, in another
	// state, by anyone who reads the ledger.
	if len(pr.Approvals) > 0 && a.Expiry.After(pr.ExpiresAt) {
		return "", fmt.Errorf("%w: the approval expires at %s, after the proposal (%s): sign with an expiry no later than the proposal's",
			ErrApproval, a.Expiry.UTC().Format(time.RFC3339), pr.ExpiresAt.UTC().Format(time.RFC3339))
	}
	op := reg.Devices[a.DeviceID].OperatorID
	if slices.Contains(pr.Operators(reg), op) {
		return "", fmt.Errorf("%w: operator %q already approved change %q", ErrApproval, op, pr.Change.ID())
	}
	pr.Approvals = append(pr.Approvals, a)
	pr.ApprovedAt = append(pr.ApprovedAt, t.now)
	pr.Required, pr.Roles = req.Required, slices.Clone(req.Roles)
	pr.Index = t.index
	pr.Ready = dryRun(t, pr.Change.Command(pr.Approvals)) == nil
	return op, nil
}

// dryRun applies cmd to a scratch txn over the same state and discards it:
// what the FSM would say to cmd now, with nothing staged.
func dryRun(t *txn, cmd Command) error {
	scratch := newTxn(t.st, t.index, t.term, t.now, t.actor)
	_, err := cmd.apply(scratch)
	return err
}

func isQuorumErr(err error) bool { return errors.Is(err, ErrQuorum) }
