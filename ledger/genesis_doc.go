package ledger

import (
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/policy"
)

// GenesisCommand is the ledger command that initialises a cluster's FSM
// from genesis document g, with its sets in canonical order and Hash set to
// g.Hash(). It carries everything of the document but the version and the
// rules hash (which follows from the rules), so [GenesisDocument] rebuilds
// the document.
func GenesisCommand(g *genesis.Genesis) Genesis {
	s := g.Sorted()
	return Genesis{
		ClusterID:           s.ClusterID,
		AdminQuorum:         s.AdminQuorum,
		Operators:           s.Operators,
		Devices:             s.Devices,
		Rules:               []byte(s.Rules),
		MaxApprovalValidity: time.Duration(s.MaxApprovalValidity),
		Nodes:               s.Nodes,
		Hash:                g.Hash(),
	}
}

// GenesisDocument rebuilds and validates the genesis document a ledger
// genesis command was made from. When c names a hash, the rebuilt document
// must hash to it (genesis.ErrHashMismatch otherwise).
func GenesisDocument(c Genesis) (*genesis.Genesis, error) {
	g := &genesis.Genesis{
		Version:             genesis.Version,
		ClusterID:           c.ClusterID,
		AdminQuorum:         c.AdminQuorum,
		MaxApprovalValidity: genesis.Duration(c.MaxApprovalValidity),
		Operators:           slices.Clone(c.Operators),
		Devices:             slices.Clone(c.Devices),
		Nodes:               slices.Clone(c.Nodes),
		Rules:               string(c.Rules),
	}
	if r, err := policy.ParseRules(c.Rules); err == nil {
		g.RulesHash = r.Hash()
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	g = g.Sorted()
	if c.Hash != "" && c.Hash != g.Hash() {
		return nil, fmt.Errorf("%w: the command names genesis %s but its content hashes to %s", genesis.ErrHashMismatch, c.Hash, g.Hash())
	}
	return g, nil
}

// VerifyGenesisCommand checks that a ledger genesis command is exactly the
// genesis pinned by hash: it names that hash and its content hashes to it.
// A node runs it on the genesis command it applied before trusting its
// ledger.
func VerifyGenesisCommand(c Genesis, pinned string) error {
	if c.Hash != pinned {
		return fmt.Errorf("%w: the ledger's genesis is %q, this node pins %s", genesis.ErrHashMismatch, c.Hash, pinned)
	}
	_, err := GenesisDocument(c)
	return err
}
