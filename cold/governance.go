package cold

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Governance command types a bundle carries (the ledger's names).
const (
	TypeRegistryChange = "registry.change"
	TypePolicyChange   = "policy.change"
	TypeRulesSet       = "rules.set"
	TypeWalletRegister = "wallet.register"
	TypeNodeChange     = "node.change"
)

// Errors a caller branches on. Every refusal of Verify wraps one.
var (
	// ErrBundle: the bundle does not parse or is not well formed.
	ErrBundle = errors.New("cold: malformed bundle")
	// ErrGenesis: the bundle is for another genesis than the pinned one.
	ErrGenesis = errors.New("cold: bundle is for another genesis")
	// ErrEvidence: the governance evidence does not chain from the pinned
	// genesis to the head the bundle names, or a change in it does not
	// verify under the state folded before it.
	ErrEvidence = errors.New("cold: governance evidence refused")
	// ErrAttestation: a checkpoint quorum of the node set did not attest
	// the export of this bundle under its governance head.
	ErrAttestation = errors.New("cold: export not attested by the node set")
	// ErrPayload: the transaction is not exactly the approved request.
	ErrPayload = errors.New("cold: transaction is not the approved request")
	// ErrApprovals: the approvals do not meet the policy's requirement.
	ErrApprovals = errors.New("cold: approvals refused")
	// ErrPolicy: policy refuses the request (lock, allowlist, cooling-off,
	// fee cap, limits, expiry, route).
	ErrPolicy = errors.New("cold: policy refuses the request")
)

// Change is one governance command as the ledger applied it: its type, the
// ledger time it was applied at and its JSON payload, verbatim.
type Change struct {
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	Payload []byte    `json:"payload"`
}

// ChainHash is the governance chain's next head after prev
// ([genesis.GovernanceHash]; the chain starts at the genesis hash).
func ChainHash(prev string, c Change) string {
	return genesis.GovernanceHash(prev, c.Type, c.Time, c.Payload)
}

// The payloads of the governance commands, as the ledger encodes them
// (ledger.RegistryChange, ledger.PolicyChange, ledger.RulesSet,
// ledger.WalletRegister). The package cannot import the ledger (raft);
// cold's tests check the encodings agree.
type (
	registryChange struct {
		Change    quorum.Change     `json:"change"`
		Approvals []quorum.Approval `json:"approvals"`
	}
	policyChange struct {
		Change    policy.Change     `json:"change"`
		Approvals []quorum.Approval `json:"approvals"`
	}
	rulesSet struct {
		ID        string            `json:"id"`
		Body      []byte            `json:"body"`
		Approvals []quorum.Approval `json:"approvals"`
	}
	walletRegister struct {
		Change    WalletSpec        `json:"change"`
		Approvals []quorum.Approval `json:"approvals"`
	}
	nodeChange struct {
		Change    nodeSetChange     `json:"change"`
		Approvals []quorum.Approval `json:"approvals"`
	}
	// nodeSetChange is ledger.NodeSetChange: add or remove Node.
	nodeSetChange struct {
		ID               string   `json:"id"`
		Kind             string   `json:"kind"`
		Node             pki.Node `json:"node"`
		ReducedTolerance bool     `json:"reduced_tolerance,omitempty"`
	}
)

// payloadHash is ledger.NodeSetChange.PayloadHash.
func (c nodeSetChange) payloadHash() quorum.Hash {
	return quorum.DomainHash("custody/node-change/v1", c)
}

// WalletSpec is a cold wallet as the admins register it (wallet.register):
// genesis.ColdWallet, the one type the ledger records (ledger.ColdWalletSpec)
// and the offline signer folds.
type WalletSpec = genesis.ColdWallet

// State is what folding the evidence from the genesis gives: the registry,
// rules, allowlist and locks, and the registered cold wallets.
type State struct {
	Genesis *genesis.Genesis
	// Head is the governance chain head after the last change.
	Head     string
	Registry quorum.Registry
	Rules    *policy.Rules
	Policy   policy.State
	Wallets  map[string]WalletSpec
	// Nodes is the node set: the genesis's, with every node.change
	// applied. Its checkpoint quorum must attest the export.
	Nodes   map[pki.NodeID]*pki.Node
	applied map[string]bool
	ceiling time.Duration
	clock   time.Time
}

// Fold starts from genesis g and applies every change in order, with the
// ledger's checks (each change ID once; approvals within the genesis's
// ceiling; the registry's quorum for registry changes, rules and wallet
// registrations; policy.State.Apply for allowlist and lock changes). The
// ledger's times never go back. A change that does not apply is refused
// with ErrEvidence naming its position.
func Fold(g *genesis.Genesis, changes []Change) (*State, error) {
	reg, err := quorum.NewRegistry(g.ClusterID, g.AdminQuorum, g.Operators, g.Devices)
	if err != nil {
		return nil, fmt.Errorf("%w: genesis registry: %w", ErrEvidence, err)
	}
	rules, err := policy.ParseRules([]byte(g.Rules))
	if err != nil {
		return nil, fmt.Errorf("%w: genesis rules: %w", ErrEvidence, err)
	}
	pst, err := policy.NewState(nil, nil, nil)
	if err != nil {
		return nil, err
	}
	st := &State{Genesis: g, Head: g.Hash(), Registry: reg, Rules: rules, Policy: pst, Wallets: map[string]WalletSpec{},
		Nodes: map[pki.NodeID]*pki.Node{}, applied: map[string]bool{}, ceiling: time.Duration(g.MaxApprovalValidity)}
	for _, n := range g.Nodes {
		st.Nodes[n.ID] = &n
	}
	for i, c := range changes {
		if err := st.apply(c); err != nil {
			return nil, fmt.Errorf("%w: change %d (%s at %s): %w", ErrEvidence, i, c.Type, c.Time.UTC().Format(time.RFC3339), err)
		}
		st.Head = ChainHash(st.Head, c)
	}
	return st, nil
}

func (st *State) apply(c Change) error {
	if c.Time.Before(st.clock) {
		return fmt.Errorf("applied at %s, before the change preceding it (%s): out of order", c.Time.UTC().Format(time.RFC3339Nano), st.clock.UTC().Format(time.RFC3339Nano))
	}
	st.clock = c.Time
	now := c.Time
	switch c.Type {
	case TypeRegistryChange:
		var p registryChange
		if err := decodeStrict(c.Payload, &p); err != nil {
			return err
		}
		if err := st.governance(p.Change.ID, p.Approvals, now); err != nil {
			return err
		}
		next, _, err := st.Registry.Apply(p.Change, p.Approvals, now)
		if err != nil {
			return err
		}
		st.Registry = next
		st.applied[p.Change.ID] = true
	case TypePolicyChange:
		var p policyChange
		if err := decodeStrict(c.Payload, &p); err != nil {
			return err
		}
		if err := st.governance(p.Change.ID, p.Approvals, now); err != nil {
			return err
		}
		next, _, err := st.Policy.Apply(st.Rules, st.Registry, p.Change, p.Approvals, nil, now)
		if err != nil {
			return err
		}
		st.Policy = next
		st.applied[p.Change.ID] = true
	case TypeRulesSet:
		var p rulesSet
		if err := decodeStrict(c.Payload, &p); err != nil {
			return err
		}
		next, err := policy.ParseRules(p.Body)
		if err != nil {
			return err
		}
		if next.Hash() == st.Rules.Hash() {
			return nil // the ledger records no change for the rules in force
		}
		if err := st.governance(p.ID, p.Approvals, now); err != nil {
			return err
		}
		if _, err := policy.AuthorizeRulesChange(st.Registry, p.ID, next, p.Approvals, now); err != nil {
			return err
		}
		st.Rules = next
		st.applied[p.ID] = true
	case TypeWalletRegister:
		var p walletRegister
		if err := decodeStrict(c.Payload, &p); err != nil {
			return err
		}
		if err := st.governance(p.Change.ID, p.Approvals, now); err != nil {
			return err
		}
		if err := p.Change.Validate(); err != nil {
			return err
		}
		if _, ok := st.Wallets[p.Change.Wallet]; ok {
			return fmt.Errorf("wallet %q is registered already", p.Change.Wallet)
		}
		tally := quorum.Count(st.Registry, quorum.Subject{RequestID: p.Change.ID, PayloadHash: p.Change.PayloadHash()},
			quorum.Requirement{Required: st.Registry.AdminQuorum, Roles: []quorum.Role{quorum.RoleAdmin}}, p.Approvals, now)
		if err := tally.Err(); err != nil {
			return err
		}
		st.Wallets[p.Change.Wallet] = p.Change
		st.applied[p.Change.ID] = true
	case TypeNodeChange:
		var p nodeChange
		if err := decodeStrict(c.Payload, &p); err != nil {
			return err
		}
		if err := st.governance(p.Change.ID, p.Approvals, now); err != nil {
			return err
		}
		if err := st.changeNodes(p.Change); err != nil {
			return err
		}
		tally := quorum.Count(st.Registry, quorum.Subject{RequestID: p.Change.ID, PayloadHash: p.Change.payloadHash()},
			quorum.Requirement{Required: st.Registry.AdminQuorum, Roles: []quorum.Role{quorum.RoleAdmin}}, p.Approvals, now)
		if err := tally.Err(); err != nil {
			return err
		}
		n := p.Change.Node
		if p.Change.Kind == "add" {
			st.Nodes[n.ID] = &n
		} else {
			delete(st.Nodes, n.ID)
		}
		st.applied[p.Change.ID] = true
	default:
		return fmt.Errorf("unknown governance type %q", c.Type)
	}
	return nil
}

// changeNodes checks a node set change as the ledger does (node.change):
// an add names a new node with a key no member has, a removal a member
// with its pinned key, and the set never becomes empty.
func (st *State) changeNodes(c nodeSetChange) error {
	if err := c.Node.ID.Validate(); err != nil {
		return err
	}
	if err := pki.ValidKeyFingerprint(c.Node.KeyFingerprint); err != nil {
		return err
	}
	cur := st.Nodes[c.Node.ID]
	switch c.Kind {
	case "add":
		if cur != nil {
			return fmt.Errorf("node %q is already in the node set", c.Node.ID)
		}
		for _, n := range st.Nodes {
			if n.KeyFingerprint == c.Node.KeyFingerprint {
				return fmt.Errorf("the key of node %q belongs to node %q", c.Node.ID, n.ID)
			}
		}
	case "remove":
		if cur == nil || cur.KeyFingerprint != c.Node.KeyFingerprint {
			return fmt.Errorf("node %q with that key is not in the node set", c.Node.ID)
		}
		if len(st.Nodes) == 1 {
			return fmt.Errorf("removing %q would leave the node set empty", c.Node.ID)
		}
		if len(st.Nodes)-1 < pki.MinTolerantNodes && !c.ReducedTolerance {
			return fmt.Errorf("removing %q leaves fewer than %d nodes without reduced_tolerance", c.Node.ID, pki.MinTolerantNodes)
		}
	default:
		return fmt.Errorf("unknown node change kind %q", c.Kind)
	}
	return nil
}

// governance is the ledger's common check of a change: an ID never
// applied, approvals no further ahead than the genesis's ceiling.
func (st *State) governance(id string, approvals []quorum.Approval, now time.Time) error {
	if id == "" {
		return errors.New("a governance change needs an ID")
	}
	if st.applied[id] {
		return fmt.Errorf("change %q was applied before (replayed)", id)
	}
	for i, a := range approvals {
		if left := a.Expiry.Sub(now); left > st.ceiling {
			return fmt.Errorf("approval %d expires in %s, beyond the cluster's ceiling of %s", i, left.Round(time.Second), st.ceiling)
		}
	}
	return nil
}

// decodeStrict decodes JSON refusing unknown fields, a key given twice in
// one object (anywhere in the document) and trailing data.
func decodeStrict(b []byte, out any) error {
	if err := noDuplicateKeys(b); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	if dec.More() {
		return errors.New("payload: trailing data")
	}
	return nil
}

// maxDepth bounds the nesting noDuplicateKeys walks.
const maxDepth = 64

// noDuplicateKeys refuses a JSON document in which an object names a key
// twice (encoding/json would keep the last one silently).
func noDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var walk func(depth int) error
	walk = func(depth int) error {
		if depth > maxDepth {
			return fmt.Errorf("nested deeper than %d", maxDepth)
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := k.(string)
				if seen[key] {
					return fmt.Errorf("key %q given twice in one object", key)
				}
				seen[key] = true
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	return walk(0)
}

// Applied lists the change IDs applied (sorted), for the transcript.
func (st *State) Applied() []string { return slices.Sorted(maps.Keys(st.applied)) }
