package ledger

import (
	"errors"
	"fmt"
	"slices"

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// RegistryChange applies a quorum-approved registry change
// ([quorum.Registry.Apply]).
type RegistryChange struct {
	Change    quorum.Change     `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
}

// Type implements Command.
func (RegistryChange) Type() string { return CmdRegistryChange }

func (p RegistryChange) apply(t *txn) (applyOut, error) {
	if err := t.governance(p.Change.ID, p.Approvals); err != nil {
		return applyOut{}, err
	}
	next, _, err := t.registry().Apply(p.Change, p.Approvals, t.now)
	if err != nil {
		return applyOut{}, approvalErr(err)
	}
	t.setRegistry(next)
	t.recordChange(p.Change.ID)
	return changed(string(p.Change.Kind) + ":" + p.Change.ID)
}

// PolicyChange applies an approved allowlist or lock change
// ([policy.State.Apply]). The leader canonicalised the address first.
type PolicyChange struct {
	Change    policy.Change     `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
}

// Type implements Command.
func (PolicyChange) Type() string { return CmdPolicyChange }

func (p PolicyChange) apply(t *txn) (applyOut, error) {
	if err := t.governance(p.Change.ID, p.Approvals); err != nil {
		return applyOut{}, err
	}
	next, _, err := t.policyState().Apply(t.activeRules(), t.registry(), p.Change, p.Approvals, nil, t.now)
	if err != nil {
		return applyOut{}, approvalErr(err)
	}
	t.setPolicy(next)
	t.recordChange(p.Change.ID)
	return changed(string(p.Change.Kind) + ":" + p.Change.ID)
}

// RulesSet replaces the rules with Body after the admin quorum approved it
// ([policy.AuthorizeRulesChange]) under change ID.
type RulesSet struct {
	ID        string            `json:"id"`
	Body      []byte            `json:"body"`
	Approvals []quorum.Approval `json:"approvals"`
}

// Type implements Command.
func (RulesSet) Type() string { return CmdRulesSet }

func (p RulesSet) apply(t *txn) (applyOut, error) {
	if err := t.needGenesis(); err != nil {
		return applyOut{}, err
	}
	next, err := policy.ParseRules(p.Body)
	if err != nil {
		return applyOut{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if next.Hash() == t.activeRules().Hash() {
		return applyOut{}, nil
	}
	if err := t.governance(p.ID, p.Approvals); err != nil {
		return applyOut{}, err
	}
	if _, err := policy.AuthorizeRulesChange(t.registry(), p.ID, next, p.Approvals, t.now); err != nil {
		return applyOut{}, approvalErr(err)
	}
	t.setRules(RulesDoc{Hash: next.Hash(), Body: slices.Clone(p.Body)}, next)
	t.recordChange(p.ID)
	return changed(next.Hash())
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
