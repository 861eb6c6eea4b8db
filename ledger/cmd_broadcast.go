package ledger

import (
	"crypto"
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/pki"
)

// OnChain is what the leader reported about a request's signed transaction
// on its chain. Every field but the witnesses is the leader's word (it read
// its own node): informational for the backend and operators, never an
// input to signing (docs/trust.md). TxHash is always the one Result.TxHash
// recorded. Witnesses are the nodes that saw the recorded status (and
// block) on their own chain nodes (ChainWitness); Witnessed latches when a
// checkpoint quorum of the node set did, so the status is then the word of
// a node quorum, not of one leader.
type OnChain struct {
	TxHash string `json:"tx_hash"`
	// BroadcastIndex and BroadcastAt are the raft index and ledger time of
	// the RecordBroadcast; BroadcastBy is its proposer.
	BroadcastIndex uint64    `json:"broadcast_index"`
	BroadcastAt    time.Time `json:"broadcast_at"`
	BroadcastBy    string    `json:"broadcast_by"`
	// Block and Confirmations are from the last RecordChainStatus: the
	// block that mined the transaction (0 when not mined) and how many
	// blocks confirmed it then. Detail is the reporter's note (what
	// replaced the transaction, why it counts as dropped).
	Block         uint64    `json:"block,omitempty"`
	Confirmations uint64    `json:"confirmations,omitempty"`
	Detail        string    `json:"detail,omitempty"`
	StatusIndex   uint64    `json:"status_index,omitempty"`
	StatusAt      time.Time `json:"status_at,omitzero"`
	// Witnesses are the nodes' signatures over the recorded status's
	// ChainWitnessHead (sorted by node), reset by every chain status with
	// another status or block; Witnessed latches at the checkpoint quorum
	// of the node set (recounted by a node change). Omitted while empty,
	// so states without them encode (and hash) as before.
	Witnesses []CheckpointSig `json:"witnesses,omitempty"`
	Witnessed bool            `json:"witnessed,omitempty"`
}

func (o *OnChain) clone() *OnChain {
	if o == nil {
		return nil
	}
	c := *o
	c.Witnesses = slices.Clone(o.Witnesses)
	return &c
}

// WitnessedBy lists the nodes whose witnesses of the recorded status the
// ledger holds, sorted.
func (o *OnChain) WitnessedBy() []pki.NodeID {
	if o == nil {
		return nil
	}
	out := make([]pki.NodeID, 0, len(o.Witnesses))
	for _, w := range o.Witnesses {
		out = append(out, w.Node)
	}
	return out
}

// RecordBroadcast records that the leader sent a request's signed
// transaction to its chain: signed (hot) or imported (cold) → broadcast.
// TxHash must be the hash the ledger recorded with the signed result, so a
// leader cannot record another transaction as the request's.
type RecordBroadcast struct {
	RequestID string `json:"request_id"`
	TxHash    string `json:"tx_hash"`
}

// Type implements Command.
func (RecordBroadcast) Type() string { return CmdBroadcast }

func (p RecordBroadcast) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if r.Status != StatusSigned && r.Status != StatusImported {
		return applyOut{}, fmt.Errorf("%w: %q is %s; only a signed or imported transaction is broadcast", ErrWrongStatus, r.ID, r.Status)
	}
	if r.Result == nil || len(r.Result.Signed) == 0 || r.Result.TxHash == "" {
		return applyOut{}, invalid("%q has no signed transaction with a hash to broadcast", r.ID)
	}
	if p.TxHash != r.Result.TxHash {
		return applyOut{}, fmt.Errorf("%w: %q signed transaction %s, broadcast names %s", ErrConflict, r.ID, r.Result.TxHash, p.TxHash)
	}
	r.OnChain = &OnChain{TxHash: p.TxHash, BroadcastIndex: t.index, BroadcastAt: t.now, BroadcastBy: t.actor}
	r.Status, r.UpdatedIdx = StatusBroadcast, t.index
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// RecordChainStatus records what the leader's node says became of a
// broadcast transaction: confirmed or reverted (mined, with Block and
// Confirmations), dropped (gone from the node's mempool, not mined) or
// replaced (another transaction spent its nonce or outpoints).
//
// From broadcast any of them; from dropped only what the chain says later
// (the same transaction mined after all, or replaced). Nothing is released:
// the nonce or outpoints stay allocated to the request whatever the chain
// did, and no status here leads to a claim, so a dropped or replaced
// transaction is reported and never re-signed (a new signature needs a new
// approved request).
type RecordChainStatus struct {
	RequestID     string `json:"request_id"`
	TxHash        string `json:"tx_hash"`
	Status        Status `json:"status"`
	Block         uint64 `json:"block,omitempty"`
	Confirmations uint64 `json:"confirmations,omitempty"`
	Detail        string `json:"detail,omitempty"`
}

// Type implements Command.
func (RecordChainStatus) Type() string { return CmdChainStatus }

// maxDetail bounds RecordChainStatus.Detail: a note, not a payload.
const maxDetail = 512

func (p RecordChainStatus) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	switch p.Status {
	case StatusConfirmed, StatusReverted:
		if p.Block == 0 || p.Confirmations == 0 {
			return applyOut{}, invalid("a %s transaction names its block and at least one confirmation", p.Status)
		}
	case StatusDropped, StatusReplaced:
		if p.Confirmations != 0 {
			return applyOut{}, invalid("a %s transaction has no confirmations", p.Status)
		}
	default:
		return applyOut{}, invalid("chain status %q is none of confirmed, reverted, dropped, replaced", p.Status)
	}
	if len(p.Detail) > maxDetail {
		return applyOut{}, invalid("detail of %d bytes; at most %d", len(p.Detail), maxDetail)
	}
	switch {
	case r.Status == StatusBroadcast:
	case r.Status == StatusDropped && p.Status != StatusDropped:
	default:
		return applyOut{}, fmt.Errorf("%w: %q is %s, chain status %s refused", ErrWrongStatus, r.ID, r.Status, p.Status)
	}
	if r.OnChain == nil || p.TxHash != r.OnChain.TxHash {
		return applyOut{}, fmt.Errorf("%w: %q was broadcast as %s, chain status names %s", ErrConflict, r.ID, r.OnChain.txHash(), p.TxHash)
	}
	oc := r.OnChain.clone()
	if p.Status != r.Status || p.Block != oc.Block {
		// The witnesses saw another status: the new one needs its own.
		oc.Witnesses, oc.Witnessed = nil, false
	}
	oc.Block, oc.Confirmations, oc.Detail = p.Block, p.Confirmations, p.Detail
	oc.StatusIndex, oc.StatusAt = t.index, t.now
	r.OnChain = oc
	r.Status, r.UpdatedIdx = p.Status, t.index
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

func (o *OnChain) txHash() string {
	if o == nil {
		return "(none)"
	}
	return o.TxHash
}

// chainWitnessDomain separates chain witnesses from every other signature
// made with a node key.
const chainWitnessDomain = "custody/chain-witness/v1\x00"

// ChainWitnessHead is what a node signs when its own chain node shows what
// the ledger records about a request's transaction: the cluster and
// genesis, the request, the transaction's hash, the recorded chain status
// and block (0 when not mined). Confirmations are not in it: they grow.
type ChainWitnessHead struct {
	ClusterID   string `json:"cluster_id"`
	GenesisHash string `json:"genesis_hash"`
	RequestID   string `json:"request_id"`
	TxHash      string `json:"tx_hash"`
	Status      Status `json:"status"`
	Block       uint64 `json:"block"`
}

// Digest is the SHA-256 a node signs: the domain, then the head's JSON.
func (h ChainWitnessHead) Digest() []byte { return attestationDigest(chainWitnessDomain, h) }

// ChainWitnessHead is the head nodes sign to witness r's recorded chain
// status; ok is false when r has none (not broadcast, or broadcast and no
// request.chain_status yet).
func (r *Request) ChainWitnessHead(clusterID, genesisHash string) (h ChainWitnessHead, ok bool) {
	if r.OnChain == nil || r.OnChain.StatusIndex == 0 {
		return ChainWitnessHead{}, false
	}
	return ChainWitnessHead{ClusterID: clusterID, GenesisHash: genesisHash, RequestID: r.ID,
		TxHash: r.OnChain.TxHash, Status: r.Status, Block: r.OnChain.Block}, true
}

// SignChainWitness is node's witness of h with its node key.
func SignChainWitness(h ChainWitnessHead, node pki.NodeID, key crypto.Signer) (CheckpointSig, error) {
	sig, err := signNodeDigest(h.Digest(), node, key)
	if err != nil {
		return CheckpointSig{}, fmt.Errorf("ledger: witness the chain status of %q: %w", h.RequestID, err)
	}
	return sig, nil
}

// errWitnessDone is returned for a witness of a chain status a quorum
// already witnessed: nothing to do, nothing wrong.
var errWitnessDone = fmt.Errorf("%w: chain status already witnessed by a quorum of the node set", ErrCheckpoint)

// ChainWitness records one node's witness that its own chain node shows
// what the ledger records for a request: the transaction, the status and
// the block of the last request.chain_status. The fields must be the
// recorded ones (ErrConflict: the witness saw something else, or the
// status changed since) and the signature must verify over the head as
// this ledger recorded it, by a member of the node set with its pinned key
// (ErrCheckpoint). A request without a recorded chain status refuses it
// (ErrWrongStatus): a witness that runs ahead of the chain status it
// agrees with is sent again once the status is recorded. A repeat from one
// node changes nothing; OnChain.Witnessed latches at the checkpoint
// quorum. Witnesses decide nothing the members sign from: they let a
// backend trust a confirmation on more than one node's word.
type ChainWitness struct {
	RequestID string        `json:"request_id"`
	TxHash    string        `json:"tx_hash"`
	Status    Status        `json:"status"`
	Block     uint64        `json:"block,omitempty"`
	Sig       CheckpointSig `json:"sig"`
}

// Type implements Command.
func (ChainWitness) Type() string { return CmdChainWitness }

func (p ChainWitness) apply(t *txn) (applyOut, error) {
	if err := t.needGenesis(); err != nil {
		return applyOut{}, err
	}
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	h, ok := r.ChainWitnessHead(t.registry().ClusterID, t.st.GenesisHash)
	if !ok {
		return applyOut{}, fmt.Errorf("%w: %q is %s with no chain status recorded: nothing to witness yet", ErrWrongStatus, r.ID, r.Status)
	}
	if p.TxHash != h.TxHash || p.Status != h.Status || p.Block != h.Block {
		return applyOut{}, fmt.Errorf("%w: the ledger records %q as %s %s in block %d, the witness names %s %s in block %d",
			ErrConflict, r.ID, h.TxHash, h.Status, h.Block, p.TxHash, p.Status, p.Block)
	}
	nodes := t.nodeSet()
	if err := p.Sig.VerifyDigest(h.Digest(), nodes); err != nil {
		return applyOut{}, fmt.Errorf("%w: witness of %q %s in block %d: %w", ErrCheckpoint, r.ID, h.Status, h.Block, err)
	}
	if r.OnChain.Witnessed {
		return applyOut{}, errWitnessDone
	}
	if slices.ContainsFunc(r.OnChain.Witnesses, func(s CheckpointSig) bool { return s.Node == p.Sig.Node }) {
		return applyOut{}, nil
	}
	oc := r.OnChain.clone()
	oc.Witnesses = append(oc.Witnesses, p.Sig)
	slices.SortFunc(oc.Witnesses, func(a, b CheckpointSig) int { return cmpNode(a.Node, b.Node) })
	oc.Witnessed = len(pinnedSigs(oc.Witnesses, nodes)) >= CheckpointQuorum(len(nodes))
	r.OnChain = oc
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// VerifyChainWitnesses checks that a checkpoint quorum of nodes witnessed
// r's recorded chain status, against the verifier's own node set.
func (r *Request) VerifyChainWitnesses(clusterID, genesisHash string, nodes map[pki.NodeID]*Node) error {
	h, ok := r.ChainWitnessHead(clusterID, genesisHash)
	if !ok {
		return fmt.Errorf("%w: %q has no chain status", ErrCheckpoint, r.ID)
	}
	if err := pki.VerifyQuorum("the chain status of "+r.ID, h.Digest(), r.OnChain.Witnesses, nodes); err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	return nil
}
