package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/ledger"
)

// Event is the body of one webhook delivery (api/openapi.yaml, webhook
// withdrawalEvent).
type Event struct {
	// ID is unique and stable (EventID): the same on every attempt, every
	// leader and every node. Receivers de-duplicate by it.
	ID string `json:"id"`
	// Type is "withdrawal." and the new status ("withdrawal.signed").
	Type string `json:"type"`
	// CreatedAt is the ledger time of the change.
	CreatedAt    time.Time `json:"created_at"`
	WithdrawalID string    `json:"withdrawal_id"`
	// Sequence numbers a withdrawal's events 1, 2, 3, ... in the order of
	// its changes.
	Sequence       uint64 `json:"sequence"`
	Status         string `json:"status"`
	PreviousStatus string `json:"previous_status,omitempty"`
	// Withdrawal is the withdrawal as GET /v1/withdrawals lists it when
	// this attempt was made: at least as new as the change, possibly newer
	// (its status may be ahead of Status).
	Withdrawal rest.WithdrawalView `json:"withdrawal"`
}

// Change is one API-visible status change of a withdrawal: an event
// without its rendering.
type Change struct {
	Seq uint64
	// Entry is the 1-based position in the request's status history of
	// the change's first entry: what the ledger's progress counts
	// (ledger.WebhookAck.Entry).
	Entry            uint64
	Status, Previous string
	At               time.Time
}

// Changes derives a request's events from its status history: one per
// entry whose API status differs from the one before (the cold route's
// approved and exported are both awaiting_ceremony: one event). It depends
// only on the history, which only grows, so an event keeps its sequence
// number forever.
func Changes(r *ledger.Request) []Change {
	var out []Change
	prev := ""
	for i, h := range r.History {
		s := rest.HistoryStatus(h)
		if s == prev {
			continue
		}
		out = append(out, Change{Seq: uint64(len(out) + 1), Entry: uint64(i + 1), Status: s, Previous: prev, At: h.At.UTC()})
		prev = s
	}
	return out
}

// EventID is the ID of a withdrawal's event seq in cluster: "evt_" and 32
// hex digits of SHA-256("custody/webhook-event/v1" 0x00 cluster 0x00
// withdrawal 0x00 seq in decimal).
func EventID(cluster, withdrawal string, seq uint64) string {
	h := sha256.New()
	for _, part := range []string{"custody/webhook-event/v1", cluster, withdrawal} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write([]byte(strconv.FormatUint(seq, 10)))
	return "evt_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// progress is how far the ledger records delivery of r's events.
func progress(r *ledger.Request) uint64 {
	if r.Webhook == nil {
		return 0
	}
	return r.Webhook.Through
}
