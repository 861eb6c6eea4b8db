package ledger

import (
	"fmt"
	"slices"

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
}

// Type implements Command.
func (Genesis) Type() string { return CmdGenesis }

func (p Genesis) apply(t *txn) (applyOut, error) {
	if id := t.registry().ClusterID; id != "" {
		return applyOut{}, invalid("ledger already initialised for cluster %q", id)
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
	t.setRules(RulesDoc{Hash: rules.Hash(), Body: slices.Clone(p.Rules)}, rules)
	return changed(p.ClusterID)
}

// needGenesis refuses every command but genesis on an uninitialised ledger.
func (t *txn) needGenesis() error {
	if t.activeRules() == nil || t.registry().ClusterID == "" {
		return fmt.Errorf("%w: ledger not initialised (no genesis)", ErrInvalid)
	}
	return nil
}
