package ledger

import (
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Genesis initialises an empty ledger from the cluster's init ceremony: the
// first registry (see [quorum.NewRegistry]) and rules file. Refused once the
// ledger has a registry.
type Genesis struct {
	ClusterID   string            `json:"cluster_id"`
	AdminQuorum int               `json:"admin_quorum"`
	Operators   []quorum.Operator `json:"operators"`
	Devices     []quorum.Device   `json:"devices"`
	Rules       []byte            `json:"rules"`
	// MaxApprovalValidity is the ceiling on any approval's lifetime (its
	// expiry minus the time it is recorded): 1 minute to 30 days.
	MaxApprovalValidity time.Duration `json:"max_approval_validity"`
}

// Bounds of Genesis.MaxApprovalValidity.
const (
	MinApprovalValidity = time.Minute
	MaxApprovalCeiling  = 30 * 24 * time.Hour
)

// Type implements Command.
func (Genesis) Type() string { return CmdGenesis }

func (p Genesis) apply(t *txn) (applyOut, error) {
	if id := t.registry().ClusterID; id != "" {
		return applyOut{}, invalid("ledger already initialised for cluster %q", id)
	}
	if p.MaxApprovalValidity < MinApprovalValidity || p.MaxApprovalValidity > MaxApprovalCeiling {
		return applyOut{}, invalid("genesis max_approval_validity %s is outside %s..%s", p.MaxApprovalValidity, MinApprovalValidity, MaxApprovalCeiling)
	}
	reg, err := quorum.NewRegistry(p.ClusterID, p.AdminQuorum, p.Operators, p.Devices)
	if err != nil {
		return applyOut{}, fmt.Errorf("%w: genesis registry: %w", ErrInvalid, err)
	}
	rules, err := policy.ParseRules(p.Rules)
	if err != nil {
		return applyOut{}, fmt.Errorf("%w: genesis rules: %w", ErrInvalid, err)
	}
	t.setRegistry(reg)
	t.setApprovalCeiling(p.MaxApprovalValidity)
	t.setRules(RulesDoc{Hash: rules.Hash(), Body: slices.Clone(p.Rules)}, rules)
	return changed(p.ClusterID)
}

// checkValidity refuses approvals that expire further in the future than
// the cluster's ceiling allows (an approval hoarded for a later replay).
func (t *txn) checkValidity(approvals []quorum.Approval) error {
	ceiling := t.approvalCeiling()
	for i, a := range approvals {
		if left := a.Expiry.Sub(t.now); left > ceiling {
			return fmt.Errorf("%w: approval %d expires in %s, beyond the cluster's ceiling of %s", ErrApproval, i, left.Round(time.Second), ceiling)
		}
	}
	return nil
}

// governance is what every governance change checks first: the ledger
// has a genesis, the change ID was never applied, and no approval outlives
// the ceiling.
func (t *txn) governance(id string, approvals []quorum.Approval) error {
	if err := t.needGenesis(); err != nil {
		return err
	}
	if t.changeApplied(id) {
		return fmt.Errorf("%w: change %q", ErrReplayed, id)
	}
	return t.checkValidity(approvals)
}

// needGenesis refuses every command but genesis on an uninitialised ledger.
func (t *txn) needGenesis() error {
	if t.activeRules() == nil || t.registry().ClusterID == "" {
		return fmt.Errorf("%w: ledger not initialised (no genesis)", ErrInvalid)
	}
	return nil
}
