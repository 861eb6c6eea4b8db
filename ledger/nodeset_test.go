package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// raftProbe sends one harmless raft RPC (an AppendEntries of term 0, which
// any node refuses as stale and answers) to addr over a real stream layer
// with ident: nil when the node admitted the connection.
func raftProbe(t *testing.T, ident pki.Identity, addr string) error {
	t.Helper()
	stream, err := ListenStream("127.0.0.1:0", ident, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 1, Timeout: 30 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	})
	defer func() { _ = tr.Close() }()
	var resp raft.AppendEntriesResponse
	return tr.AppendEntries("n1", raft.ServerAddress(addr), &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}}, &resp)
}

// strangerKey issues a node certificate for id on a fresh key (not its
// NodeKey): the cluster CA's, but not the key the node set pins.
func strangerKey(t *testing.T, p *ledgertest.PKI, id pki.NodeID) pki.Identity {
	t.Helper()
	cert, key, err := p.CA.IssueNode(id, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ident, err := pki.LoadIdentity(cert, key, p.CA.PEM())
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

// TestNodeGateAdmitsOnlyTheNodeSet: a gated node's raft stream admits a
// cluster node certificate only for an ID of the node set with the key the
// set pins: before genesis the pinned genesis's set, after it the ledger's.
func TestNodeGateAdmitsOnlyTheNodeSet(t *testing.T) {
	c := newCluster(t, 1)
	addr := c.Nodes[0].Addr
	check := func(phase string) {
		t.Helper()
		if err := raftProbe(t, c.PKI.Node(t, "n2"), addr); err != nil {
			t.Fatalf("%s: listed node n2 refused: %v", phase, err)
		}
		for what, ident := range map[string]pki.Identity{
			"n2's ID on another key":  strangerKey(t, c.PKI, "n2"),
			"n9, not in the node set": c.PKI.Node(t, "n9"),
		} {
			err := raftProbe(t, ident, addr)
			if err == nil || !strings.Contains(err.Error(), "bad certificate") {
				t.Fatalf("%s: %s not refused at the handshake: %v", phase, what, err)
			}
			t.Logf("%s: %s refused: %v", phase, what, err)
		}
	}
	check("pinned genesis")
	seed(c)
	check("ledger's node set")

	// An unbound gate refuses everyone; a gate binds once.
	g := NewNodeGate()
	if err := g.Authorize(pki.Peer{ID: "n1", Role: pki.RoleNode, KeyFingerprint: ledgertest.Nodes("n1")[0].KeyFingerprint}); err == nil {
		t.Fatal("an unbound gate admitted a peer")
	}
}

// nodeChange is the node-set change kind/node under id, approved by ops.
func nodeChange(t testing.TB, id string, kind NodeChangeKind, node Node, exp time.Time, ops ...operator) NodeChange {
	return nodeChangeTolerance(t, id, kind, node, false, exp, ops...)
}

// nodeChangeTolerance is nodeChange with ReducedTolerance set as given.
func nodeChangeTolerance(t testing.TB, id string, kind NodeChangeKind, node Node, reduced bool, exp time.Time, ops ...operator) NodeChange {
	c := NodeChange{Change: NodeSetChange{ID: id, Kind: kind, Node: node, ReducedTolerance: reduced}}
	for _, o := range ops {
		c.Approvals = append(c.Approvals, o.sign(t, id, c.Change.PayloadHash(), quorum.Approve, exp))
	}
	return c
}

func nodeIDs(h *fsmHarness) []pki.NodeID {
	var ids []pki.NodeID
	_ = h.f.Read(func(st *State) error {
		for id := range st.Nodes {
			ids = append(ids, id)
		}
		return nil
	})
	slices.Sort(ids)
	return ids
}

// TestFSMNodeChange (SECURITY 28): the node set changes only by an
// admin-quorum-signed NodeChange; its ID is single-use (a replayed add
// after the remove is refused), a change without the quorum, an add of a
// listed ID or key and a removal emptying the set are refused with the
// state unchanged.
func TestFSMNodeChange(t *testing.T) {
	h := newHarness(t)
	exp := h.now.Add(time.Hour)
	n4 := ledgertest.Nodes("n4")[0]

	h.refuse(ErrQuorum, "api", nodeChange(t, "add-n4", NodeAdd, n4, exp, alice))
	h.refuse(ErrQuorum, "api", nodeChange(t, "add-n4", NodeAdd, n4, exp, alice, dave)) // dave is no admin
	h.refuse(ErrApproval, "api", nodeChange(t, "add-n4", NodeAdd, n4, h.now.Add(49*time.Hour), alice, carol))
	h.refuse(ErrInvalid, "api", nodeChange(t, "add-n1", NodeAdd, ledgertest.Nodes("n1")[0], exp, alice, carol))
	h.refuse(ErrInvalid, "api", nodeChange(t, "add-n4-n1key", NodeAdd, Node{ID: "n4", KeyFingerprint: ledgertest.Nodes("n1")[0].KeyFingerprint}, exp, alice, carol))
	h.refuse(ErrInvalid, "api", nodeChange(t, "add-bad", NodeAdd, Node{ID: "n 4", KeyFingerprint: n4.KeyFingerprint}, exp, alice, carol))
	if got := nodeIDs(h); !slices.Equal(got, []pki.NodeID{"n1", "n2", "n3"}) {
		t.Fatalf("node set after refusals: %v", got)
	}

	add := nodeChange(t, "add-n4", NodeAdd, n4, exp, alice, carol)
	h.must("api", add)
	if got := nodeIDs(h); !slices.Equal(got, []pki.NodeID{"n1", "n2", "n3", "n4"}) {
		t.Fatalf("node set after the add: %v", got)
	}
	h.refuse(ErrNotFound, "api", nodeChange(t, "remove-n4-otherkey", NodeRemove, Node{ID: "n4", KeyFingerprint: ledgertest.Nodes("n5")[0].KeyFingerprint}, exp, alice, carol))
	// Back to three nodes: refused unless the admins signed that they
	// accept the reduced tolerance (SECURITY: one compromised node and one
	// down is tolerated from four nodes up).
	h.refuse(ErrInvalid, "api", nodeChange(t, "remove-n4", NodeRemove, n4, exp, alice, carol))
	h.must("api", nodeChangeTolerance(t, "remove-n4", NodeRemove, n4, true, exp, alice, carol))
	before := h.encoded()
	if _, err := h.apply("api", add); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replayed add after the remove: %v, want ErrReplayed", err)
	}
	if !bytes.Equal(before, h.encoded()) {
		t.Fatal("the refused replay changed the state")
	}

	h.must("api", nodeChangeTolerance(t, "remove-n2", NodeRemove, ledgertest.Nodes("n2")[0], true, exp, alice, carol))
	h.must("api", nodeChangeTolerance(t, "remove-n3", NodeRemove, ledgertest.Nodes("n3")[0], true, exp, alice, carol))
	h.refuse(ErrInvalid, "api", nodeChangeTolerance(t, "remove-n1", NodeRemove, ledgertest.Nodes("n1")[0], true, exp, alice, carol))
	if got := nodeIDs(h); !slices.Equal(got, []pki.NodeID{"n1"}) {
		t.Fatalf("node set: %v", got)
	}
}

// TestJoinNeedsNodeSet: a node outside the node set cannot become a raft
// voter (refused, nothing changed) nor speak raft to a gated node; after an
// admin-quorum-signed add it joins and replicates; after its removal (raft
// and node set) it is refused again, and the replayed add too.
func TestJoinNeedsNodeSet(t *testing.T) {
	c := newCluster(t, 1)
	seed(c)
	ctx := context.Background()
	n1 := c.Nodes[0]
	n4 := &ledgertest.Node{ID: "n4", Dir: t.TempDir()}
	c.StartNode(n4, "127.0.0.1:0")

	before := leaderHash(c)
	if err := n1.Store.Join(ctx, n4.ID, n4.Addr); !errors.Is(err, ErrNotInNodeSet) {
		t.Fatalf("join of a node outside the node set: %v, want ErrNotInNodeSet", err)
	}
	if got := voters(c, n1); !slices.Equal(got, []pki.NodeID{"n1"}) {
		t.Fatalf("voters after the refused join: %v", got)
	}
	if leaderHash(c) != before {
		t.Fatal("the refused join changed the state")
	}
	if err := raftProbe(t, c.PKI.Node(t, "n4"), n1.Addr); err == nil {
		t.Fatal("n4 spoke raft to n1 before it was in the node set")
	}

	exp := time.Now().Add(time.Hour)
	add := nodeChange(t, "add-n4", NodeAdd, ledgertest.Nodes("n4")[0], exp, alice, carol)
	c.Submit(ctx, "api", add)
	c.OnLeader(func(l *Store) error { return l.Join(ctx, n4.ID, n4.Addr) })
	c.Nodes = append(c.Nodes, n4)
	c.WaitConverged(c.Nodes...)

	c.OnLeader(func(l *Store) error { return l.Remove(ctx, n4.ID) })
	c.Submit(ctx, "api", nodeChangeTolerance(t, "remove-n4", NodeRemove, ledgertest.Nodes("n4")[0], true, exp, alice, carol))
	if err := raftProbe(t, c.PKI.Node(t, "n4"), n1.Addr); err == nil {
		t.Fatal("n4 spoke raft to n1 after its removal from the node set")
	}
	var err error
	c.OnLeaderErr(func(l *Store) error { _, err = l.Submit(ctx, "api", add); return err })
	if !errors.Is(err, ErrReplayed) {
		t.Fatalf("replayed add: %v, want ErrReplayed", err)
	}
	if err := n1.Store.Join(ctx, n4.ID, n4.Addr); !errors.Is(err, ErrNotInNodeSet) {
		t.Fatalf("join after the removal: %v, want ErrNotInNodeSet", err)
	}
}

// TestPruneVoters: a compromised leader adds a raft voter outside the node
// set through raft itself (followers do not check configuration entries);
// the next honest leader's PruneVoters removes it and nothing else, and a
// second pass removes nothing.
func TestPruneVoters(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	ctx := context.Background()
	c.OnLeader(func(l *Store) error { return l.AddVoterRaw("evil", "127.0.0.1:1") })
	var l *Store
	c.OnLeader(func(s *Store) error { l = s; return nil })
	if got := l.StrayVoters(); !slices.Equal(got, []pki.NodeID{"evil"}) {
		t.Fatalf("stray voters after the raw add: %v", got)
	}
	removed, err := l.PruneVoters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []pki.NodeID{"evil"}) {
		t.Fatalf("pruned %v, want [evil]", removed)
	}
	if got := voters(c, c.Nodes[0]); !slices.Equal(got, []pki.NodeID{"n1", "n2", "n3"}) {
		t.Fatalf("voters after pruning: %v", got)
	}
	if removed, err := l.PruneVoters(ctx); err != nil || len(removed) != 0 {
		t.Fatalf("second pass: removed %v, err %v", removed, err)
	}
	if got := l.StrayVoters(); len(got) != 0 {
		t.Fatalf("stray voters after pruning: %v", got)
	}
}

// TestFSMNodeChangeRecountsClaims: a claim attested by 3 of 3 nodes stays
// attested when a fourth joins (3 of 4 is a quorum) and is un-latched when
// a fifth raises the quorum to 4, so members (who verify against the
// current set) are not left refusing a claim the ledger calls attested;
// one more attestation, by a new node, attests it again.
func TestFSMNodeChangeRecountsClaims(t *testing.T) {
	h := newHarness(t)
	r := h.approved("r1", 1)
	h.must("n1", h.claimCmd(r.ID))
	cluster, genesis := h.pinned()
	attest := func(node pki.NodeID) {
		t.Helper()
		head := h.req(r.ID).ClaimHead(cluster, genesis)
		sig, err := SignCheckpoint(head, node, ledgertest.NodeKey(node))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.apply(string(node), CheckpointSign{Request: r.ID, Index: head.Index, AuditSeq: head.AuditSeq, AuditHead: head.AuditHead, Sig: sig}); err != nil {
			t.Fatalf("%s's attestation: %v", node, err)
		}
	}
	nodes := func() map[pki.NodeID]*Node {
		var m map[pki.NodeID]*Node
		_ = h.f.Read(func(st *State) error { m = maps.Clone(st.Nodes); return nil })
		return m
	}
	for _, n := range ledgertest.GenesisNodes {
		attest(n)
	}
	if err := h.req(r.ID).VerifyAttestation(cluster, genesis, nodes()); err != nil {
		t.Fatalf("3 of 3: %v", err)
	}
	exp := h.now.Add(time.Hour)
	h.must("api", nodeChange(t, "add-n4", NodeAdd, ledgertest.Nodes("n4")[0], exp, alice, carol))
	if got := h.req(r.ID); !got.Claim.Attested || got.VerifyAttestation(cluster, genesis, nodes()) != nil {
		t.Fatal("3 of 4 attestations no longer attest the claim")
	}
	h.must("api", nodeChange(t, "add-n5", NodeAdd, ledgertest.Nodes("n5")[0], exp, alice, carol))
	if got := h.req(r.ID); got.Claim.Attested {
		t.Fatal("3 of 5 attestations still latched as attested (the quorum is 4)")
	}
	if err := h.req(r.ID).VerifyAttestation(cluster, genesis, nodes()); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("members' check of 3 of 5: %v", err)
	}
	attest("n5")
	if err := h.req(r.ID).VerifyAttestation(cluster, genesis, nodes()); err != nil {
		t.Fatalf("4 of 5 after n5 attested: %v", err)
	}

	// n5 leaves (its attestation goes with it: 3 of 4 still attest) and
	// comes back under a new key: its old-key attestation does not count
	// again, and it can attest with the new key.
	h.must("api", nodeChange(t, "remove-n5", NodeRemove, ledgertest.Nodes("n5")[0], exp, alice, carol))
	if got := h.req(r.ID); !got.Claim.Attested || len(got.Claim.Attestations) != 3 || got.VerifyAttestation(cluster, genesis, nodes()) != nil {
		t.Fatalf("after n5's removal: attested %v by %d", got.Claim.Attested, len(got.Claim.Attestations))
	}
	rekeyed := Node{ID: "n5", KeyFingerprint: ledgertest.Nodes("n6")[0].KeyFingerprint}
	h.must("api", nodeChange(t, "add-n5-rekeyed", NodeAdd, rekeyed, exp, alice, carol))
	if got := h.req(r.ID); got.Claim.Attested {
		t.Fatal("3 of 5 attested after n5 came back under a new key")
	}
	head := h.req(r.ID).ClaimHead(cluster, genesis)
	sig, err := SignCheckpoint(head, "n5", ledgertest.NodeKey("n6"))
	if err != nil {
		t.Fatal(err)
	}
	h.must("n5", CheckpointSign{Request: r.ID, Index: head.Index, AuditSeq: head.AuditSeq, AuditHead: head.AuditHead, Sig: sig})
	if err := h.req(r.ID).VerifyAttestation(cluster, genesis, nodes()); err != nil {
		t.Fatalf("n5's attestation with its new key: %v", err)
	}
}
