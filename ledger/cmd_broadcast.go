package ledger

import (
	"fmt"
	"time"
)

// OnChain is what the leader reported about a request's signed transaction
// on its chain. Every field is the leader's word (it read its own node):
// informational for the backend and operators, never an input to signing
// (docs/trust.md). TxHash is always the one Result.TxHash recorded.
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
}

func (o *OnChain) clone() *OnChain {
	if o == nil {
		return nil
	}
	c := *o
	return &c
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
