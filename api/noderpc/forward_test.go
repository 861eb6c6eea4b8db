package noderpc_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// TestForwardedWriteLandsViaLeader: writes sent to a follower's client
// land through the leader's RPC with the outcome the leader gives, the
// initiation and approval signatures byte for byte; the follower reads at
// the leader's read index; the followers' checkpoint signatures reach the
// leader through Forward, so checkpoints are certified by all three nodes.
func TestForwardedWriteLandsViaLeader(t *testing.T) {
	h := newHarness(t, nil, 4)
	ctx := ctxT(t)
	leader := h.c.WaitLeader(nil)
	f := h.follower()
	cl := h.client(f)
	before := leader.Store.StateIndex()

	c := create(t, "wd-1", 1, "unsigned-tx:wd-1")
	out, err := cl.Submit(ctx, "backend:exchange", c)
	if err != nil {
		t.Fatal(err)
	}
	if out.Request == nil || out.Request.ID != "wd-1" || out.Existing || out.Index <= before {
		t.Fatalf("outcome %+v (index before %d)", out, before)
	}
	got := request(t, leader.Store, "wd-1")
	if got == nil || got.Initiator != backend.ID || got.Initiation == nil || !bytes.Equal(got.Initiation.Signature, c.Initiation.Signature) {
		t.Fatalf("leader holds %+v", got)
	}
	if a, b := jsonOf(t, got.Initiation), jsonOf(t, c.Initiation); !bytes.Equal(a, b) {
		t.Fatalf("initiation changed:\n got %s\nwant %s", a, b)
	}

	// The same command again: the follower's RPC and the leader itself
	// give the same idempotent outcome.
	again, err := cl.Submit(ctx, "backend:exchange", c)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := leader.Store.Submit(ctx, "backend:exchange", c)
	if err != nil {
		t.Fatal(err)
	}
	a, d := jsonOf(t, again.Request), jsonOf(t, direct.Request)
	if !again.Existing || !direct.Existing || !bytes.Equal(a, d) {
		t.Fatalf("outcomes differ:\nrpc    %v %s\nleader %v %s", again.Existing, a, direct.Existing, d)
	}

	approvals := []ledger.Approve{approve(t, alice, c), approve(t, bob, c)}
	var last ledger.Outcome
	for _, ap := range approvals {
		if last, err = cl.Submit(ctx, "operator:"+ap.Approval.DeviceID, ap); err != nil {
			t.Fatal(err)
		}
	}
	if last.Request.Status != ledger.StatusApproved {
		t.Fatalf("status %s after two approvals", last.Request.Status)
	}
	got = request(t, leader.Store, "wd-1")
	for i, ap := range approvals {
		if i >= len(got.Approvals) || !bytes.Equal(got.Approvals[i].Signature, ap.Approval.Signature) || len(ap.Approval.Signature) == 0 {
			t.Fatalf("approval %d not kept byte for byte: %+v", i, got.Approvals)
		}
	}

	idx, err := cl.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idx < last.Request.UpdatedIdx {
		t.Fatalf("read index %d before the last write %d", idx, last.Request.UpdatedIdx)
	}
	if err := f.Store.ReadAtLeast(ctx, idx, func(st *ledger.State) error {
		if st.Requests["wd-1"].Status != ledger.StatusApproved {
			return fmt.Errorf("follower sees %s", st.Requests["wd-1"].Status)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Checkpoints need all three nodes' signatures (3 of 3): the
	// followers' went through Forward, as node:<self>.
	ledgertest.Poll(t, "a checkpoint certified by the node set", func() error {
		return leader.Store.ReadLocal(func(st *ledger.State) error {
			if len(st.Checkpoints) == 0 {
				return errors.New("no certified checkpoint")
			}
			if n := len(st.Checkpoints[len(st.Checkpoints)-1].Sigs); n != 3 {
				return fmt.Errorf("%d signatures", n)
			}
			return nil
		})
	})

	st, err := cl.Status(ctx, leader.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.NodeID != leader.ID || st.RaftState != "Leader" || st.Leader != leader.ID || !st.Ready["ledger"] || st.StateIndex < idx {
		t.Fatalf("status %+v", st)
	}
}

// TestForwardFollowsLeaderChange: after a leadership transfer, the former
// leader's client forwards to the new leader; a client whose view of the
// leader is stale follows the not-leader answer.
func TestForwardFollowsLeaderChange(t *testing.T) {
	h := newHarness(t, nil, 0)
	ctx := ctxT(t)
	old := h.c.WaitLeader(nil)
	to := h.c.Others(old)[0]
	if err := old.Store.TransferLeadership(ctx, to.ID); err != nil {
		t.Fatal(err)
	}
	ledgertest.Poll(t, "the new leader", func() error {
		if l := h.c.WaitLeader(nil); l != to {
			return fmt.Errorf("leader %s", l.ID)
		}
		return nil
	})

	c := create(t, "wd-2", 2, "unsigned-tx:wd-2")
	out, err := h.client(old).Submit(ctx, "backend:exchange", c)
	if err != nil {
		t.Fatal(err)
	}
	if r := request(t, to.Store, "wd-2"); r == nil || out.Request == nil || r.CreatedIdx != out.Index {
		t.Fatalf("new leader holds %+v, outcome %+v", r, out)
	}

	// A client that still believes the old leader leads.
	stale := h.newClient(old, old.Identity, func() (pki.NodeID, string) { return old.ID, "" })
	c3 := create(t, "wd-3", 3, "unsigned-tx:wd-3")
	if _, err := stale.Submit(ctx, "backend:exchange", c3); err != nil {
		t.Fatal(err)
	}
	if r := request(t, to.Store, "wd-3"); r == nil {
		t.Fatal("wd-3 not on the new leader")
	}
	// The third node reads the new leader's index through its client.
	third := h.c.Others(to)[0]
	if third == old {
		third = h.c.Others(to)[1]
	}
	if idx, err := h.client(third).ReadIndex(ctx); err != nil || idx < out.Index {
		t.Fatalf("read index %d, %v", idx, err)
	}
}

// TestNodeCannotSubmitAsAnotherNode: a node forwarding as node:<other> is
// refused (ErrForbidden) and nothing changes; as itself it passes.
func TestNodeCannotSubmitAsAnotherNode(t *testing.T) {
	h := newHarness(t, nil, 0)
	ctx := ctxT(t)
	leader := h.c.WaitLeader(nil)
	f := h.follower()
	var other pki.NodeID
	for _, n := range h.c.Others(f) {
		other = n.ID
	}
	before := stateOf(t, leader.Store)
	c := create(t, "wd-4", 4, "unsigned-tx:wd-4")
	_, err := h.client(f).Submit(ctx, noderpc.NodeActor(other), c)
	var re *noderpc.Error
	if !errors.Is(err, noderpc.ErrForbidden) || !errors.As(err, &re) || re.Code != noderpc.CodeForbidden || re.Peer != leader.ID {
		t.Fatalf("submit as %s: %v", other, err)
	}
	if after := stateOf(t, leader.Store); after != before {
		t.Fatalf("state changed: %+v -> %+v", before, after)
	}
	if err := h.client(f).Forward(ctx, c); err != nil {
		t.Fatalf("forward as itself: %v", err)
	}
	if r := request(t, leader.Store, "wd-4"); r == nil {
		t.Fatal("wd-4 not committed")
	}
}

// TestLedgerErrorsRoundTrip: the leader's refusals arrive as the ledger's
// sentinels, with their code, and change nothing.
func TestLedgerErrorsRoundTrip(t *testing.T) {
	h := newHarness(t, nil, 0)
	ctx := ctxT(t)
	leader := h.c.WaitLeader(nil)
	cl := h.client(h.follower())
	c := create(t, "wd-5", 5, "unsigned-tx:wd-5")
	if _, err := cl.Submit(ctx, "backend:exchange", c); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, leader.Store)
	expired := create(t, "wd-7", 7, "unsigned-tx:wd-7")
	expired.ExpiresAt = expired.ExpiresAt.Add(-2 * time.Hour)
	uninitiated := create(t, "wd-8", 8, "unsigned-tx:wd-8")
	uninitiated.Initiation = nil
	cases := []struct {
		name string
		cmd  ledger.Command
		want error
		code string
	}{
		{"same ID, other payload", create(t, "wd-5", 6, "unsigned-tx:other"), ledger.ErrConflict, "ledger.conflict"},
		{"expired create", expired, ledger.ErrInvalid, "ledger.invalid"},
		{"no initiation", uninitiated, ledger.ErrInitiation, "ledger.initiation"},
		{"approval of an unknown request", approve(t, alice, create(t, "wd-none", 7, "x")), ledger.ErrNotFound, "ledger.not_found"},
		{"nonce already allocated", create(t, "wd-6", 5, "unsigned-tx:wd-6"), ledger.ErrAllocated, "ledger.allocated"},
	}
	// What only the leader proposes is not forwarded, whoever asks.
	for _, cmd := range []ledger.Command{
		ledger.ClaimSession{RequestID: "wd-5", SessionID: strings.Repeat("ab", 32), Term: 1, Signers: []pki.NodeID{"n1", "n2"}},
		ledger.RecordResult{RequestID: "wd-5", SessionID: strings.Repeat("ab", 32), Error: "x"},
		ledger.RecordChainStatus{RequestID: "wd-5", TxHash: "0x" + strings.Repeat("5e", 32), Status: ledger.StatusConfirmed},
		ledger.ExpireRequest{RequestID: "wd-5"},
	} {
		_, err := cl.Submit(ctx, "backend:exchange", cmd)
		var re *noderpc.Error
		if !errors.As(err, &re) || re.Code != noderpc.CodeForbidden || noderpc.Forwardable(cmd.Type()) {
			t.Errorf("forwarded %s: %v, want rpc.forbidden", cmd.Type(), err)
		}
	}
	for _, tc := range cases {
		_, err := cl.Submit(ctx, "backend:exchange", tc.cmd)
		var re *noderpc.Error
		if !errors.Is(err, tc.want) || !errors.As(err, &re) || re.Code != tc.code {
			t.Errorf("%s: %v, want %v (%s)", tc.name, err, tc.want, tc.code)
		}
	}
	if after := stateOf(t, leader.Store); after != before {
		t.Fatalf("state changed: %+v -> %+v", before, after)
	}
}

func jsonOf(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
