package ledger

import (
	"fmt"
	"maps"
	"slices"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// NodeChangeKind names a change to the node set.
type NodeChangeKind string

// Node set changes; both need the registry's admin quorum.
const (
	NodeAdd    NodeChangeKind = "add"
	NodeRemove NodeChangeKind = "remove"
)

// NodeSetChange is a proposed change to the cluster's node set: add Node,
// or remove it (Node then names the ID and the key the set pins for it).
// Approvals sign a quorum.Statement with RequestID = ID and PayloadHash =
// PayloadHash().
//
// ReducedTolerance must be set, and so signed by the admins, on a removal
// that leaves fewer than MinTolerantNodes nodes: below four, the node set
// no longer tolerates one compromised node while another is down (the
// checkpoint quorum of three is all three), so shrinking there is a
// decision the admins take knowingly, never a side effect.
type NodeSetChange struct {
	ID               string         `json:"id"`
	Kind             NodeChangeKind `json:"kind"`
	Node             Node           `json:"node"`
	ReducedTolerance bool           `json:"reduced_tolerance,omitempty"`
}

// MinTolerantNodes is pki.MinTolerantNodes.
const MinTolerantNodes = pki.MinTolerantNodes

// PayloadHash is SHA-256 of "custody/node-change/v1" 0x00 and the change's
// JSON (fields in declaration order): admins approve the exact node ID and
// key.
func (c NodeSetChange) PayloadHash() quorum.Hash {
	return quorum.DomainHash("custody/node-change/v1", c)
}

// NodeChange changes the node set (State.Nodes) after the registry's admin
// quorum approved it, like every governance change: its ID is single-use
// forever and no approval outlives the genesis's ceiling. The node set is
// who may be a raft voter (Store.Join), who may speak raft (NodeGate) and
// whose signatures certify checkpoints.
type NodeChange struct {
	Change    NodeSetChange     `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
}

// Type implements Command.
func (NodeChange) Type() string { return CmdNodeChange }

func (p NodeChange) apply(t *txn) (applyOut, error) {
	c := p.Change
	if err := t.governance(c.ID, p.Approvals); err != nil {
		return applyOut{}, err
	}
	if err := c.Node.ID.Validate(); err != nil {
		return applyOut{}, fmt.Errorf("%w: node change %s: %w", ErrInvalid, c.ID, err)
	}
	if err := pki.ValidKeyFingerprint(c.Node.KeyFingerprint); err != nil {
		return applyOut{}, fmt.Errorf("%w: node change %s: %w", ErrInvalid, c.ID, err)
	}
	nodes := t.nodeSet()
	cur := nodes[c.Node.ID]
	switch c.Kind {
	case NodeAdd:
		if cur != nil {
			return applyOut{}, invalid("node change %s: node %q is already in the node set", c.ID, c.Node.ID)
		}
		for _, n := range nodes {
			if n.KeyFingerprint == c.Node.KeyFingerprint {
				return applyOut{}, invalid("node change %s: key %s belongs to node %q", c.ID, short(c.Node.KeyFingerprint), n.ID)
			}
		}
	case NodeRemove:
		if cur == nil || cur.KeyFingerprint != c.Node.KeyFingerprint {
			return applyOut{}, fmt.Errorf("%w: node change %s: node %q with key %s is not in the node set", ErrNotFound, c.ID, c.Node.ID, short(c.Node.KeyFingerprint))
		}
		if len(nodes) == 1 {
			return applyOut{}, invalid("node change %s: removing %q would leave the node set empty", c.ID, c.Node.ID)
		}
		if left := len(nodes) - 1; left < MinTolerantNodes && !c.ReducedTolerance {
			return applyOut{}, invalid("node change %s: removing %q leaves %d nodes, fewer than %d: the set no longer tolerates one compromised node while another is down; sign the change with reduced_tolerance to accept that", c.ID, c.Node.ID, left, MinTolerantNodes)
		}
	default:
		return applyOut{}, invalid("node change %s: unknown kind %q", c.ID, c.Kind)
	}
	reg := t.registry()
	tally := quorum.Count(reg, quorum.Subject{RequestID: c.ID, PayloadHash: c.PayloadHash()},
		quorum.Requirement{Required: reg.AdminQuorum, Roles: []quorum.Role{quorum.RoleAdmin}}, p.Approvals, t.now)
	if err := tally.Err(); err != nil {
		return applyOut{}, approvalErr(fmt.Errorf("node change %s: %w", c.ID, err))
	}
	if c.Kind == NodeAdd {
		t.putNode(c.Node)
	} else {
		t.removeNode(c.Node.ID)
	}
	t.reattestClaims()
	t.recordChange(c.ID)
	return changed(string(c.Kind) + ":" + string(c.Node.ID))
}

// reattestClaims recounts every open claim's attestations against the node
// set this change leaves. Members verify a claim's attestations against
// the current node set before they sign (Request.VerifyAttestation), so a
// claim latched Attested under a smaller set (adding a node can raise the
// quorum: 4 → 5 nodes, 3 → 4 signatures) would be refused by every member
// until it timed out; un-latched, the nodes attest it again (new members
// too) and it signs. A removal can complete a quorum of the remaining
// members. Exports are not recounted: the offline signer checks their
// attestations against the node set at the bundle's governance head.
// Chain witnesses are recounted too (OnChain.Witnessed; the nodes witness
// an un-latched status again).
func (t *txn) reattestClaims() {
	nodes := t.nodeSet()
	need := CheckpointQuorum(len(nodes))
	// recount keeps the signatures by members with the keys the set pins
	// now (a node removed, or added again under a new key, must not count
	// and must be able to sign again) and says whether they make a quorum
	// and whether anything changed.
	recount := func(sigs []CheckpointSig, latched bool) ([]CheckpointSig, bool, bool) {
		kept := pinnedSigs(sigs, nodes)
		ok := len(kept) >= need
		return kept, ok, ok != latched || len(kept) != len(sigs)
	}
	for _, id := range slices.Sorted(maps.Keys(t.st.Requests)) {
		cur := t.st.Requests[id]
		if cur.Status == StatusClaimed && cur.Claim != nil && cur.Claim.AuditHead != "" {
			if kept, ok, changed := recount(cur.Claim.Attestations, cur.Claim.Attested); changed {
				r := t.request(id)
				r.Claim.Attestations, r.Claim.Attested = kept, ok
				t.putRequest(r)
			}
		}
		// Chain witnesses the same way: a status witnessed under the old
		// set is witnessed only by a quorum of the new one.
		if cur.OnChain != nil && len(cur.OnChain.Witnesses) > 0 {
			if kept, ok, changed := recount(cur.OnChain.Witnesses, cur.OnChain.Witnessed); changed {
				r := t.request(id)
				r.OnChain.Witnesses, r.OnChain.Witnessed = kept, ok
				t.putRequest(r)
			}
		}
	}
}
