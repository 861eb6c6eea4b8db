package ledger

import (
	"crypto"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
)

// StatusChange is one entry of a request's status history. The FSM
// appends one whenever a command creates a request or changes its status
// (txn.commit), so the history is a deterministic function of the log:
// every replica holds the same entries, a new leader finds them, and the
// webhook outbox is derived from them (package api/webhook). Route and
// Reason are the decision's at that moment (what the API's status of the
// entry depends on: approved hot or cold, rejected by an operator or
// denied by policy).
type StatusChange struct {
	Status Status        `json:"status"`
	Route  policy.Route  `json:"route,omitempty"`
	Reason policy.Reason `json:"reason,omitempty"`
	// Index and At are the raft index and ledger time of the command.
	Index uint64    `json:"index"`
	At    time.Time `json:"at"`
}

// WebhookProgress is how far the leaders delivered a request's webhook
// events, as they recorded it (WebhookDelivered): every event whose first
// history entry is at position Through or before (1-based, into
// Request.History) was delivered or given up. Failed are the positions of
// the events given up after the retry limit.
type WebhookProgress struct {
	Through uint64   `json:"through"`
	Failed  []uint64 `json:"failed,omitempty"`
}

func (w *WebhookProgress) clone() *WebhookProgress {
	if w == nil {
		return nil
	}
	return &WebhookProgress{Through: w.Through, Failed: slices.Clone(w.Failed)}
}

// recordStatus appends a history entry when r is new (prev nil) or its
// status differs from prev's.
func (r *Request) recordStatus(prev *Request, index uint64, at time.Time) {
	if prev != nil && prev.Status == r.Status {
		return
	}
	r.History = append(slices.Clip(r.History), StatusChange{Status: r.Status, Route: r.Decision.Route, Reason: r.Decision.Reason, Index: index, At: at})
}

// MaxWebhookAcks bounds the acknowledgements of one WebhookDelivered.
const MaxWebhookAcks = 256

// WebhookAck says that the event of RequestID starting at history
// position Entry (1-based) was delivered, or, with Failed, given up.
type WebhookAck struct {
	RequestID string `json:"request_id"`
	Entry     uint64 `json:"entry"`
	Failed    bool   `json:"failed,omitempty"`
}

// WebhookDelivered records webhook delivery progress: the leader that
// delivered the events (Node) signs the acknowledgements with its node
// key. Each ack moves its request's WebhookProgress.Through forward; an
// ack at or before it is a repeat and changes nothing (a new leader
// re-delivering what its predecessor acknowledged late). Only the leader
// proposes it (nodes do not forward it). It is the leader's word, like
// chain status: informational, never an input to signing. A compromised
// leader can acknowledge what it never delivered, so receivers miss
// events — availability only (docs/trust.md).
type WebhookDelivered struct {
	Node pki.NodeID    `json:"node"`
	Acks []WebhookAck  `json:"acks"`
	Sig  CheckpointSig `json:"sig"`
}

// Type implements Command.
func (WebhookDelivered) Type() string { return CmdWebhookDelivered }

// WebhookDeliveredDigest is what a node signs: SHA-256 of
// "custody/webhook-delivered/v1" 0x00, cluster ID, 0x00, genesis hash,
// 0x00, node ID, 0x00, then the acks as JSON.
func WebhookDeliveredDigest(cluster, genesis string, node pki.NodeID, acks []WebhookAck) []byte {
	h := nodeHash("custody/webhook-delivered/v1", cluster, genesis, string(node))
	b, err := json.Marshal(acks)
	if err != nil {
		panic("ledger: webhook acks not serialisable: " + err.Error())
	}
	h.Write(b)
	return h.Sum(nil)
}

// SignWebhookDelivered is node's record of the acks.
func SignWebhookDelivered(cluster, genesis string, node pki.NodeID, acks []WebhookAck, key crypto.Signer) (WebhookDelivered, error) {
	acks = slices.Clone(acks)
	sig, err := signNodeDigest(WebhookDeliveredDigest(cluster, genesis, node, acks), node, key)
	if err != nil {
		return WebhookDelivered{}, fmt.Errorf("ledger: sign webhook acks of %s: %w", node, err)
	}
	return WebhookDelivered{Node: node, Acks: acks, Sig: sig}, nil
}

func (p WebhookDelivered) apply(t *txn) (applyOut, error) {
	reg := t.registry()
	if reg.ClusterID == "" {
		return applyOut{}, fmt.Errorf("%w: no genesis yet", ErrWrongStatus)
	}
	if len(p.Acks) == 0 || len(p.Acks) > MaxWebhookAcks {
		return applyOut{}, invalid("webhook.delivered carries 1..%d acks, not %d", MaxWebhookAcks, len(p.Acks))
	}
	if p.Sig.Node != p.Node {
		return applyOut{}, fmt.Errorf("%w: webhook acks of %s signed by %s", ErrApproval, p.Node, p.Sig.Node)
	}
	if err := p.Sig.VerifyDigest(WebhookDeliveredDigest(reg.ClusterID, t.st.GenesisHash, p.Node, p.Acks), t.nodeSet()); err != nil {
		return applyOut{}, fmt.Errorf("%w: webhook acks of %s: %w", ErrApproval, p.Node, err)
	}
	moved := false
	for _, a := range p.Acks {
		r := t.request(a.RequestID)
		if r == nil {
			return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, a.RequestID)
		}
		if a.Entry == 0 || a.Entry > uint64(len(r.History)) {
			return applyOut{}, invalid("%q has %d status changes; an ack names entry %d", r.ID, len(r.History), a.Entry)
		}
		wp := r.Webhook.clone()
		if wp == nil {
			wp = &WebhookProgress{}
		}
		if a.Entry <= wp.Through {
			continue // acknowledged before
		}
		wp.Through = a.Entry
		if a.Failed {
			wp.Failed = append(wp.Failed, a.Entry)
		}
		r.Webhook = wp
		t.putRequest(r)
		moved = true
	}
	if !moved {
		return applyOut{}, nil
	}
	return changed(string(p.Node))
}
