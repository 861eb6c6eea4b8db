package ledger

import "github.com/custody-dev/custody/pki"

// VoterSet records a raft voter (after the raft configuration change).
type VoterSet struct {
	ID      pki.NodeID `json:"id"`
	Address string     `json:"address"`
}

// Type implements Command.
func (VoterSet) Type() string { return CmdVoterSet }

func (p VoterSet) apply(t *txn) (applyOut, error) {
	if p.ID == "" || p.Address == "" {
		return applyOut{}, invalid("voter needs id and address")
	}
	if v := t.voter(p.ID); v != nil && v.Address == p.Address {
		return applyOut{}, nil // idempotent re-join
	}
	t.putVoter(Voter(p))
	return changed(string(p.ID))
}

// VoterRemove records a removed voter.
type VoterRemove struct {
	ID pki.NodeID `json:"id"`
}

// Type implements Command.
func (VoterRemove) Type() string { return CmdVoterRemove }

func (p VoterRemove) apply(t *txn) (applyOut, error) {
	if p.ID == "" {
		return applyOut{}, invalid("voter removal needs an id")
	}
	if t.voter(p.ID) == nil {
		return applyOut{}, nil
	}
	t.removeVoter(p.ID)
	return changed(string(p.ID))
}
