package ledger

import (
	"maps"
	"slices"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// txn is the only view of the state a command handler gets. Reads see the
// state as modified so far by this command; writes are staged in the txn and
// reach the state only through commit, which the FSM calls when the handler
// returned no error. A refused command therefore leaves the state
// byte-identical by construction, whatever its handler did before refusing
// (TestRefusalLeavesStateIdentical shows it for every command type, and
// with a handler that writes and then fails).
//
// Records handed out (request, wallet) are copies: editing one changes
// nothing until it is put back. A request put back is owned by the txn (see
// putRequest).
type txn struct {
	st    *State
	index uint64
	term  uint64
	now   time.Time
	actor string

	requests  map[string]*Request
	wallets   map[string]*Wallet
	voters    map[pki.NodeID]*Voter // nil: removed
	nonces    map[string]string     // "": released
	outpoints map[string]string     // "": released
	sessions  map[string]string
	changes   map[string]uint64
	proposals map[string]*Proposal // nil: removed
	ceiling   *time.Duration
	genesis   *genesisRecord
	nodes     map[pki.NodeID]*Node // node set edits; nil: removed
	tokens    map[pki.NodeID]string
	reg       *quorum.Registry
	pol       *policy.State
	rulesDoc  *RulesDoc
	rules     *policy.Rules
	certified *Checkpoint

	// cps is the FSM's checkpoint bookkeeping beside the state (read only
	// here; CheckpointSign reads the pending checkpoints).
	cps *checkpoints
}

func newTxn(st *State, index, term uint64, now time.Time, actor string) *txn {
	return &txn{st: st, index: index, term: term, now: now, actor: actor}
}

func stage[K comparable, V any](m *map[K]V, k K, v V) {
	if *m == nil {
		*m = map[K]V{}
	}
	(*m)[k] = v
}

// request returns a copy of the request (nil when there is none).
func (t *txn) request(id string) *Request {
	if r, ok := t.requests[id]; ok {
		return r.Clone()
	}
	return t.st.Requests[id].Clone()
}

// putRequest stages r, taking ownership of it: the handler must not modify
// r afterwards (every handler calls it last). r then becomes the stored
// record, never edited in place again.
func (t *txn) putRequest(r *Request) { stage(&t.requests, r.ID, r) }

// wallet returns a copy of the wallet (nil when there is none).
func (t *txn) wallet(id string) *Wallet {
	w, ok := t.wallets[id]
	if !ok {
		w = t.st.Wallets[id]
	}
	return w.Clone()
}

func (t *txn) putWallet(w *Wallet) { stage(&t.wallets, w.ID, w.Clone()) }

func (t *txn) voter(id pki.NodeID) *Voter {
	v, ok := t.voters[id]
	if !ok {
		v = t.st.Voters[id]
	}
	if v == nil {
		return nil
	}
	c := *v
	return &c
}

func (t *txn) putVoter(v Voter)            { stage(&t.voters, v.ID, &v) }
func (t *txn) removeVoter(id pki.NodeID)   { stage(&t.voters, id, nil) }
func (t *txn) nonceHolder(k string) string { return lookup(t.nonces, t.st.Nonces, k) }
func (t *txn) holdNonce(k, id string)      { stage(&t.nonces, k, id) }
func (t *txn) releaseNonce(k string)       { stage(&t.nonces, k, "") }
func (t *txn) outpointHolder(op string) string {
	return lookup(t.outpoints, t.st.Outpoints, op)
}
func (t *txn) holdOutpoint(op, id string)          { stage(&t.outpoints, op, id) }
func (t *txn) releaseOutpoint(op string)           { stage(&t.outpoints, op, "") }
func (t *txn) sessionClaimedBy(sid string) string  { return lookup(t.sessions, t.st.Sessions, sid) }
func (t *txn) recordSession(sid, requestID string) { stage(&t.sessions, sid, requestID) }

// changeApplied reports whether the governance change id was applied before.
func (t *txn) changeApplied(id string) bool {
	if _, ok := t.changes[id]; ok {
		return true
	}
	_, ok := t.st.Changes[id]
	return ok
}

// recordChange records the change ID as applied; its proposal, if one was
// staged, is done.
func (t *txn) recordChange(id string) {
	stage(&t.changes, id, t.index)
	if t.proposal(id) != nil {
		t.dropProposal(id)
	}
}

// proposal returns a copy of the staged change id (nil when there is none).
func (t *txn) proposal(id string) *Proposal {
	if p, ok := t.proposals[id]; ok {
		return p.Clone()
	}
	return t.st.Proposals[id].Clone()
}

// putProposal stages p, taking ownership of it.
func (t *txn) putProposal(p *Proposal) { stage(&t.proposals, p.Change.ID(), p) }
func (t *txn) dropProposal(id string)  { stage(&t.proposals, id, nil) }

// approvalCeiling is the cluster's maximum approval validity (zero before
// genesis).
func (t *txn) approvalCeiling() time.Duration {
	if t.ceiling != nil {
		return *t.ceiling
	}
	return t.st.MaxApprovalValidity
}

func (t *txn) setApprovalCeiling(d time.Duration) { t.ceiling = &d }

// genesisRecord is what the genesis command records beside the registry
// and rules: the genesis hash and the node set.
type genesisRecord struct {
	hash     string
	nodes    []Node
	interval uint64
}

// setGenesis stages the genesis hash, the node set and the checkpoint
// interval.
func (t *txn) setGenesis(hash string, nodes []Node, interval uint64) {
	t.genesis = &genesisRecord{hash: hash, nodes: slices.Clone(nodes), interval: interval}
}

// nodeSet returns the cluster's node set: the genesis's, edited by signed
// node changes (NodeChange). The map is read only.
func (t *txn) nodeSet() map[pki.NodeID]*Node {
	base := t.st.Nodes
	if t.genesis != nil {
		base = make(map[pki.NodeID]*Node, len(t.genesis.nodes))
		for _, n := range t.genesis.nodes {
			base[n.ID] = &n
		}
	}
	if len(t.nodes) == 0 {
		return base
	}
	m := maps.Clone(base)
	applyEdits(m, t.nodes)
	return m
}

func (t *txn) putNode(n Node) { stage(&t.nodes, n.ID, &n) }

// tokenBindings are the node → token serial bindings as this command sees
// them.
func (t *txn) tokenBindings() map[pki.NodeID]string {
	out := maps.Clone(t.st.Tokens)
	if out == nil {
		out = map[pki.NodeID]string{}
	}
	maps.Copy(out, t.tokens)
	return out
}
func (t *txn) bindToken(id pki.NodeID, serial string) { stage(&t.tokens, id, serial) }
func (t *txn) removeNode(id pki.NodeID)               { stage(&t.nodes, id, nil) }

// certify stages a certified checkpoint.
func (t *txn) certify(c Checkpoint) { t.certified = &c }

// lookup reads a staged string map over its base ("" means none or released).
func lookup(staged, base map[string]string, k string) string {
	if v, ok := staged[k]; ok {
		return v
	}
	return base[k]
}

// registry returns the operator registry. quorum.Registry's methods return
// new values (Apply clones), so the base is never edited through it.
func (t *txn) registry() quorum.Registry {
	if t.reg != nil {
		return *t.reg
	}
	return t.st.Registry
}

func (t *txn) setRegistry(r quorum.Registry) { t.reg = &r }

// policyState returns allowlists, locks and spends (a value whose methods
// return new values).
func (t *txn) policyState() policy.State {
	if t.pol != nil {
		return *t.pol
	}
	return t.st.Policy
}

func (t *txn) setPolicy(p policy.State) { t.pol = &p }

// activeRules returns the parsed rules in force (nil before genesis).
func (t *txn) activeRules() *policy.Rules {
	if t.rules != nil {
		return t.rules
	}
	return t.st.rules
}

func (t *txn) setRules(doc RulesDoc, parsed *policy.Rules) {
	t.rulesDoc, t.rules = &doc, parsed
}

// commit writes the staged effect into the state. Only the FSM calls it, and
// only when the handler accepted the command.
func (t *txn) commit() {
	st := t.st
	for id, r := range t.requests {
		// The status history is the FSM's own record (webhook events):
		// every status a command leaves a request in, never a handler's.
		r.recordStatus(st.Requests[id], t.index, t.now)
		st.Requests[id] = r
	}
	for id, w := range t.wallets {
		st.Wallets[id] = w
	}
	applyEdits(st.Voters, t.voters)
	commitStrings(st.Nonces, t.nonces)
	commitStrings(st.Outpoints, t.outpoints)
	commitStrings(st.Sessions, t.sessions)
	for id, idx := range t.changes {
		st.Changes[id] = idx
	}
	applyEdits(st.Proposals, t.proposals)
	if t.ceiling != nil {
		st.MaxApprovalValidity = *t.ceiling
	}
	if t.genesis != nil {
		st.GenesisHash = t.genesis.hash
		st.CheckpointInterval = t.genesis.interval
		clear(st.Nodes)
		for _, n := range t.genesis.nodes {
			st.Nodes[n.ID] = &n
		}
	}
	applyEdits(st.Nodes, t.nodes)
	maps.Copy(st.Tokens, t.tokens)
	if t.reg != nil {
		st.Registry = *t.reg
	}
	if t.pol != nil {
		st.Policy = *t.pol
	}
	if t.rulesDoc != nil {
		st.Rules[t.rulesDoc.Hash] = t.rulesDoc
		st.ActiveRules, st.rules = t.rulesDoc.Hash, t.rules
	}
	if t.certified != nil {
		st.Checkpoints = append(st.Checkpoints, *t.certified)
	}
}

// applyEdits writes staged records into dst; a nil record deletes.
func applyEdits[K comparable, V any](dst, staged map[K]*V) {
	for k, v := range staged {
		if v == nil {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}

func commitStrings(dst, staged map[string]string) {
	for k, v := range staged {
		if v == "" {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}
