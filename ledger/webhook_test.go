package ledger_test

import (
	"crypto"
	"errors"
	"slices"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
)

// webhookAcks is node's signed record of acks (its pinned key unless
// given).
func (h *fsmHarness) webhookAcks(node pki.NodeID, key crypto.Signer, acks ...WebhookAck) WebhookDelivered {
	h.t.Helper()
	if key == nil {
		key = ledgertest.NodeKey(node)
	}
	cluster, genesis := h.pinned()
	cmd, err := SignWebhookDelivered(cluster, genesis, node, acks, key)
	if err != nil {
		h.t.Fatal(err)
	}
	return cmd
}

func statuses(r *Request) []Status {
	var out []Status
	for _, c := range r.History {
		out = append(out, c.Status)
	}
	return out
}

// TestFSMStatusHistory: the FSM records every status a request takes, with
// the command's index and ledger time and the decision's route and reason,
// and nothing for a command that leaves the status as it is (the first
// approval of two, a webhook ack).
func TestFSMStatusHistory(t *testing.T) {
	h := newHarness(t)
	r := h.create("h-1", 1)
	if len(r.History) != 1 || r.History[0].Status != StatusAwaitingApprovals || r.History[0].Index != h.idx || !r.History[0].At.Equal(h.now) {
		t.Fatalf("after create: %+v", r.History)
	}
	h.now = h.now.Add(time.Minute)
	r = h.must("api", bob.approve(t, r, h.now.Add(time.Hour)))
	if len(r.History) != 1 {
		t.Fatalf("the first approval changed no status but recorded %+v", r.History)
	}
	r = h.must("api", dave.approve(t, r, h.now.Add(time.Hour)))
	approvedAt := h.idx
	cl := h.claimCmd(r.ID)
	h.must("n1", cl)
	h.must("n1", RecordResult{RequestID: r.ID, SessionID: cl.SessionID, Signed: []byte("raw"), TxHash: "0xh1"})
	h.must("n1", RecordBroadcast{RequestID: r.ID, TxHash: "0xh1"})
	r = h.must("n1", RecordChainStatus{RequestID: r.ID, TxHash: "0xh1", Status: StatusConfirmed, Block: 9, Confirmations: 3})
	want := []Status{StatusAwaitingApprovals, StatusApproved, StatusClaimed, StatusSigned, StatusBroadcast, StatusConfirmed}
	if got := statuses(r); !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	if a := r.History[1]; a.Index != approvedAt || a.Route != policy.RouteHot || !a.At.Equal(h.now) {
		t.Fatalf("the approved entry: %+v (approved at index %d)", a, approvedAt)
	}
	for i := 1; i < len(r.History); i++ {
		if r.History[i].Index <= r.History[i-1].Index {
			t.Fatalf("history indices not increasing: %+v", r.History)
		}
	}

	// An operator's rejection records the reason that tells it from a
	// policy denial.
	w := h.create("h-2", 2)
	w = h.must("api", bob.reject(t, w, h.now.Add(time.Hour)))
	if got := statuses(w); !slices.Equal(got, []Status{StatusAwaitingApprovals, StatusRejected}) || w.History[1].Reason != policy.ReasonRejected {
		t.Fatalf("rejected: %+v", w.History)
	}
	if h.req("h-1").Webhook != nil {
		t.Fatal("a request nobody acknowledged has webhook progress")
	}
}

// TestFSMWebhookDelivered: a node's signed acks move each request's
// delivery progress forward (a failed event is recorded as such); an ack at
// or behind the progress is a repeat that changes nothing; an ack beyond
// the history, of an unknown request, signed with an unpinned key or by
// another node, or an empty or oversized batch is refused and changes
// nothing. Acks never touch the status or its history.
func TestFSMWebhookDelivered(t *testing.T) {
	h := newHarness(t)
	a := h.approved("w-1", 1) // history: awaiting_approvals, approved
	b := h.create("w-2", 2)
	h.must("node:n1", h.webhookAcks("n1", nil, WebhookAck{RequestID: a.ID, Entry: 1}, WebhookAck{RequestID: b.ID, Entry: 1, Failed: true}))
	if wa, wb := h.req(a.ID).Webhook, h.req(b.ID).Webhook; wa == nil || wa.Through != 1 || len(wa.Failed) != 0 || wb == nil || wb.Through != 1 || !slices.Equal(wb.Failed, []uint64{1}) {
		t.Fatalf("progress after the first acks: %+v %+v", wa, wb)
	}
	// A repeat (a new leader re-acknowledging) is accepted and changes
	// nothing.
	before := h.encoded()
	if _, err := h.apply("node:n2", h.webhookAcks("n2", nil, WebhookAck{RequestID: a.ID, Entry: 1})); err != nil {
		t.Fatal(err)
	}
	if string(h.encoded()) != string(before) {
		t.Fatal("a repeated ack changed the state")
	}
	h.must("node:n2", h.webhookAcks("n2", nil, WebhookAck{RequestID: a.ID, Entry: 1}, WebhookAck{RequestID: a.ID, Entry: 2}))
	if wa := h.req(a.ID).Webhook; wa.Through != 2 {
		t.Fatalf("progress %+v, want through 2", wa)
	}
	if got := statuses(h.req(a.ID)); !slices.Equal(got, []Status{StatusAwaitingApprovals, StatusApproved}) {
		t.Fatalf("acks changed the history: %v", got)
	}

	forged := h.webhookAcks("n2", nil, WebhookAck{RequestID: b.ID, Entry: 1})
	forged.Node = "n3"
	tooMany := make([]WebhookAck, MaxWebhookAcks+1)
	for i := range tooMany {
		tooMany[i] = WebhookAck{RequestID: b.ID, Entry: 1}
	}
	for name, c := range map[string]struct {
		want error
		cmd  WebhookDelivered
	}{
		"an entry beyond the history": {ErrInvalid, h.webhookAcks("n1", nil, WebhookAck{RequestID: a.ID, Entry: 3})},
		"entry zero":                  {ErrInvalid, h.webhookAcks("n1", nil, WebhookAck{RequestID: a.ID})},
		"an unknown request":          {ErrNotFound, h.webhookAcks("n1", nil, WebhookAck{RequestID: "nope", Entry: 1})},
		"a valid ack beside a bad one": {ErrInvalid, h.webhookAcks("n1", nil, WebhookAck{RequestID: b.ID, Entry: 1},
			WebhookAck{RequestID: a.ID, Entry: 9})},
		"an unpinned key":  {ErrApproval, h.webhookAcks("n1", otherKey(t), WebhookAck{RequestID: b.ID, Entry: 1})},
		"another's record": {ErrApproval, forged},
		"no acks":          {ErrInvalid, h.webhookAcks("n1", nil)},
		"too many acks":    {ErrInvalid, h.webhookAcks("n1", nil, tooMany...)},
	} {
		t.Run(name, func(t *testing.T) {
			before := h.encoded()
			if _, err := h.apply("node:n1", c.cmd); !errors.Is(err, c.want) {
				t.Fatalf("%v, want %v", err, c.want)
			}
			if string(h.encoded()) != string(before) {
				t.Fatal("a refused ack changed the state")
			}
		})
	}
}
