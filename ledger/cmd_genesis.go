package ledger

import (
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Genesis initialises an empty ledger from the cluster's genesis file
// ([GenesisCommand] builds it from a genesis.Genesis): the first
// registry (see [quorum.NewRegistry]), rules file, approval-validity
// ceiling and node set, and the genesis hash they came from. Refused once
// the ledger has a registry.
type Genesis struct {
	ClusterID   string            `json:"cluster_id"`
	AdminQuorum int               `json:"admin_quorum"`
	Operators   []quorum.Operator `json:"operators"`
	Devices     []quorum.Device   `json:"devices"`
	Rules       []byte            `json:"rules"`
	// MaxApprovalValidity is the ceiling on any approval's lifetime (its
	// expiry minus the time it is recorded): 1 minute to 30 days.
	MaxApprovalValidity time.Duration `json:"max_approval_validity"`
	// Nodes is the cluster's node set: at least one node, distinct IDs
	// (each valid under [pki.NodeID.Validate]) and distinct key
	// fingerprints ([pki.KeyFingerprint] form).
	Nodes []Node `json:"nodes"`
	// Hash is the genesis hash (lowercase hex SHA-256, see docs/genesis.md)
	// of the genesis file this command was built from, the value every node
	// pins in its config. The ledger records it (State.GenesisHash) but
	// cannot recompute it: [VerifyGenesisCommand] checks a command
	// against a pinned hash.
	Hash string `json:"hash"`
	// CheckpointInterval is the number of raft indices between checkpoints
	// (see CheckpointSign); 0 means DefaultCheckpointInterval. It must be
	// one value cluster-wide, so it travels in the log's genesis entry
	// rather than in each node's config. It is not part of the genesis
	// file (it decides snapshot sizes, not trust): tests set small ones.
	CheckpointInterval uint64 `json:"checkpoint_interval,omitempty"`
}

// MaxCheckpointInterval bounds Genesis.CheckpointInterval.
const MaxCheckpointInterval = 1 << 20

// Node is one node of the cluster's node set ([pki.Node]).
type Node = pki.Node

// Bounds of Genesis.MaxApprovalValidity ([quorum.MinApprovalValidity],
// [quorum.MaxApprovalCeiling]).
const (
	MinApprovalValidity = quorum.MinApprovalValidity
	MaxApprovalCeiling  = quorum.MaxApprovalCeiling
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
	if err := validGenesisHash(p.Hash); err != nil {
		return applyOut{}, err
	}
	if err := validNodes(p.Nodes); err != nil {
		return applyOut{}, err
	}
	if p.CheckpointInterval == 1 || p.CheckpointInterval > MaxCheckpointInterval {
		return applyOut{}, invalid("genesis checkpoint_interval %d is outside 2..%d (0: the default)", p.CheckpointInterval, MaxCheckpointInterval)
	}
	t.setRegistry(reg)
	t.setGenesis(p.Hash, p.Nodes, p.CheckpointInterval)
	t.setApprovalCeiling(p.MaxApprovalValidity)
	t.setRules(RulesDoc{Hash: rules.Hash(), Body: slices.Clone(p.Rules)}, rules)
	return changed(p.ClusterID)
}

// validGenesisHash accepts exactly 64 lowercase hex digits.
func validGenesisHash(h string) error {
	ok := len(h) == 64
	for i := 0; ok && i < len(h); i++ {
		ok = h[i] >= '0' && h[i] <= '9' || h[i] >= 'a' && h[i] <= 'f'
	}
	if !ok {
		return invalid("genesis hash %q is not 64 lowercase hex digits", h)
	}
	return nil
}

// validNodes checks a genesis node set: not empty, IDs and fingerprints
// well formed and distinct.
func validNodes(nodes []Node) error {
	if len(nodes) == 0 {
		return invalid("genesis has no nodes")
	}
	ids := map[pki.NodeID]bool{}
	keys := map[string]bool{}
	for i, n := range nodes {
		if err := n.ID.Validate(); err != nil {
			return fmt.Errorf("%w: genesis node %d: %w", ErrInvalid, i, err)
		}
		if err := pki.ValidKeyFingerprint(n.KeyFingerprint); err != nil {
			return fmt.Errorf("%w: genesis node %q: %w", ErrInvalid, n.ID, err)
		}
		if ids[n.ID] {
			return invalid("genesis node %q is listed twice", n.ID)
		}
		if keys[n.KeyFingerprint] {
			return invalid("genesis node %q: key %s belongs to another node too", n.ID, n.KeyFingerprint)
		}
		ids[n.ID], keys[n.KeyFingerprint] = true, true
	}
	return nil
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
	if id == "" {
		return invalid("a governance change needs an ID")
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
