package ledger_test

import (
	"bytes"
	"crypto"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// chainWitness is node's witness of request id's chain status as the
// harness's state records it, signed with key (ledgertest.NodeKey when nil).
func (h *fsmHarness) chainWitness(id string, node pki.NodeID, key crypto.Signer) ChainWitness {
	h.t.Helper()
	cluster, genesis := h.pinned()
	head, ok := h.req(id).ChainWitnessHead(cluster, genesis)
	if !ok {
		h.t.Fatalf("%s has no chain status to witness", id)
	}
	if key == nil {
		key = ledgertest.NodeKey(node)
	}
	sig, err := SignChainWitness(head, node, key)
	if err != nil {
		h.t.Fatal(err)
	}
	return ChainWitness{RequestID: id, TxHash: head.TxHash, Status: head.Status, Block: head.Block, Sig: sig}
}

// refuseSame applies cmd, wants err and a byte-identical state.
func (h *fsmHarness) refuseSame(want error, cmd Command) {
	h.t.Helper()
	before := h.encoded()
	if _, err := h.apply("n1", cmd); !errors.Is(err, want) {
		h.t.Fatalf("%s: %v, want %v", cmd.Type(), err, want)
	}
	if !bytes.Equal(before, h.encoded()) {
		h.t.Fatalf("refused %s changed the state", cmd.Type())
	}
}

// TestFSMChainWitness: request.chain_witness is accepted only from a
// member of the node set with its pinned key, over exactly the
// transaction, status and block the last request.chain_status recorded;
// a witness before any chain status is refused (the node sends it again
// later); a repeat counts once; OnChain.Witnessed latches at the
// checkpoint quorum (3 of 3) and a chain status with another status or
// block starts over with no witnesses. Every refusal leaves the state
// byte-identical.
func TestFSMChainWitness(t *testing.T) {
	h := newHarness(t)
	r := h.signedReq("w1", 1, "0xaa01")
	h.must("n1", RecordBroadcast{RequestID: r.ID, TxHash: "0xaa01"})
	cluster, genesis := h.pinned()
	if _, ok := h.req(r.ID).ChainWitnessHead(cluster, genesis); ok {
		t.Fatal("a broadcast request without a chain status has a head to witness")
	}
	// A witness that runs ahead of the chain status it agrees with.
	early := ChainWitness{RequestID: r.ID, TxHash: "0xaa01", Status: StatusConfirmed, Block: 9}
	early.Sig, _ = SignChainWitness(ChainWitnessHead{ClusterID: cluster, GenesisHash: genesis, RequestID: r.ID, TxHash: "0xaa01", Status: StatusConfirmed, Block: 9},
		"n1", ledgertest.NodeKey("n1"))
	h.refuseSame(ErrWrongStatus, early)
	h.refuseSame(ErrNotFound, ChainWitness{RequestID: "nope", TxHash: "0xaa01", Status: StatusConfirmed, Block: 9, Sig: early.Sig})

	got := h.must("n1", RecordChainStatus{RequestID: r.ID, TxHash: "0xaa01", Status: StatusConfirmed, Block: 9, Confirmations: 3})
	if got.OnChain.Witnessed || len(got.OnChain.Witnesses) != 0 {
		t.Fatalf("a new chain status comes witnessed: %+v", got.OnChain)
	}

	good := h.chainWitness(r.ID, "n2", nil)
	otherBlock, otherStatus, otherTx := good, good, good
	otherBlock.Block = 10
	otherStatus.Status = StatusReverted
	otherTx.TxHash = "0xaa02"
	// Fields as recorded, but the signature over another block.
	sigOther := good
	head, _ := h.req(r.ID).ChainWitnessHead(cluster, genesis)
	head.Block = 10
	sigOther.Sig, _ = SignChainWitness(head, "n2", ledgertest.NodeKey("n2"))
	// Another cluster's head.
	foreign := good
	fh, _ := h.req(r.ID).ChainWitnessHead("another-cluster", genesis)
	foreign.Sig, _ = SignChainWitness(fh, "n2", ledgertest.NodeKey("n2"))
	// A checkpoint signature is not a witness (domain separation).
	cp := good
	cp.Sig = signCP(t, CheckpointHead{ClusterID: cluster, GenesisHash: genesis, Index: 1}, "n2", ledgertest.NodeKey("n2")).Sig
	for name, c := range map[string]struct {
		want error
		cmd  ChainWitness
	}{
		"a node outside the node set":         {ErrCheckpoint, h.chainWitness(r.ID, "n9", nil)},
		"a key the node set does not pin":     {ErrCheckpoint, h.chainWitness(r.ID, "n2", otherKey(t))},
		"another block":                       {ErrConflict, otherBlock},
		"another status":                      {ErrConflict, otherStatus},
		"another transaction":                 {ErrConflict, otherTx},
		"a signature over another block":      {ErrCheckpoint, sigOther},
		"a signature over another cluster":    {ErrCheckpoint, foreign},
		"a checkpoint signature":              {ErrCheckpoint, cp},
		"a signature claimed by another node": {ErrCheckpoint, func() ChainWitness { w := good; w.Sig.Node = "n3"; return w }()},
	} {
		t.Run(name, func(t *testing.T) { h.refuseSame(c.want, c.cmd) })
	}

	for i, n := range ledgertest.GenesisNodes {
		got = h.must(string(n), h.chainWitness(r.ID, n, nil))
		if want := i == len(ledgertest.GenesisNodes)-1; got.OnChain.Witnessed != want {
			t.Fatalf("after %d witnesses: witnessed %v", i+1, got.OnChain.Witnessed)
		}
		if i == 0 {
			// The same node again: counted once, nothing changes.
			before := h.encoded()
			if _, err := h.apply("n1", h.chainWitness(r.ID, n, nil)); err != nil {
				t.Fatalf("a repeated witness: %v", err)
			}
			if !bytes.Equal(before, h.encoded()) {
				t.Fatal("a repeated witness changed the state")
			}
		}
	}
	if by := got.OnChain.WitnessedBy(); !slices.Equal(by, ledgertest.GenesisNodes) {
		t.Fatalf("witnessed by %v", by)
	}
	if err := got.VerifyChainWitnesses(cluster, genesis, h.nodes()); err != nil {
		t.Fatal(err)
	}
	if err := got.VerifyChainWitnesses("another-cluster", genesis, h.nodes()); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("witnesses verified against another cluster: %v", err)
	}
	if _, err := h.apply("n1", h.chainWitness(r.ID, "n1", nil)); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "already") {
		t.Fatalf("a witness after the quorum: %v", err)
	}

	// Dropped, witnessed by two; then mined after all: the new status
	// starts with no witnesses and the old ones no longer fit.
	d := h.signedReq("w2", 2, "0xdd04")
	h.must("n1", RecordBroadcast{RequestID: d.ID, TxHash: "0xdd04"})
	h.must("n1", RecordChainStatus{RequestID: d.ID, TxHash: "0xdd04", Status: StatusDropped, Detail: "not in the pool"})
	stale := h.chainWitness(d.ID, "n3", nil)
	h.must("n1", h.chainWitness(d.ID, "n1", nil))
	if got = h.must("n2", h.chainWitness(d.ID, "n2", nil)); len(got.OnChain.Witnesses) != 2 || got.OnChain.Witnessed {
		t.Fatalf("dropped after two witnesses: %+v", got.OnChain)
	}
	got = h.must("n1", RecordChainStatus{RequestID: d.ID, TxHash: "0xdd04", Status: StatusConfirmed, Block: 60, Confirmations: 2})
	if len(got.OnChain.Witnesses) != 0 || got.OnChain.Witnessed {
		t.Fatalf("a new status kept the witnesses of the old one: %+v", got.OnChain)
	}
	h.refuseSame(ErrConflict, stale)
	for _, n := range ledgertest.GenesisNodes {
		got = h.must(string(n), h.chainWitness(d.ID, n, nil))
	}
	if !got.OnChain.Witnessed || got.OnChain.Block != 60 {
		t.Fatalf("confirmed after three witnesses: %+v", got.OnChain)
	}

	// A node change recounts: 3 of 4 still witness, 3 of 5 no longer;
	// the new node's witness completes it again.
	exp := h.now.Add(time.Hour)
	h.must("api", nodeChange(t, "add-n4", NodeAdd, ledgertest.Nodes("n4")[0], exp, alice, carol))
	if !h.req(d.ID).OnChain.Witnessed {
		t.Fatal("3 of 4 witnesses no longer witness")
	}
	h.must("api", nodeChange(t, "add-n5", NodeAdd, ledgertest.Nodes("n5")[0], exp, alice, carol))
	if h.req(d.ID).OnChain.Witnessed {
		t.Fatal("3 of 5 witnesses still latched (the quorum is 4)")
	}
	if got = h.must("n5", h.chainWitness(d.ID, "n5", nil)); !got.OnChain.Witnessed {
		t.Fatalf("4 of 5 after n5 witnessed: %+v", got.OnChain)
	}
}
