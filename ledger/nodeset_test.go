package ledger_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
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
