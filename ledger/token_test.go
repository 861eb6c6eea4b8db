package ledger_test

import (
	"crypto"
	"testing"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// nodeToken is node's declaration of serial, signed with key (its pinned
// key unless given).
func (h *fsmHarness) nodeToken(node pki.NodeID, serial string, key crypto.Signer) NodeToken {
	h.t.Helper()
	if key == nil {
		key = ledgertest.NodeKey(node)
	}
	cluster, genesis := h.pinned()
	tok, err := SignNodeToken(cluster, genesis, node, serial, key)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// pinned are the cluster ID and genesis hash the harness's ledger holds
// (what node signatures name).
func (h *fsmHarness) pinned() (cluster, genesis string) {
	_ = h.f.Read(func(st *State) error { cluster, genesis = st.Registry.ClusterID, st.GenesisHash; return nil })
	return cluster, genesis
}

func (h *fsmHarness) tokens() map[pki.NodeID]string {
	var out map[pki.NodeID]string
	_ = h.f.Read(func(st *State) error {
		out = map[pki.NodeID]string{}
		for k, v := range st.Tokens {
			out[k] = v
		}
		return nil
	})
	return out
}

// TestNodeTokenOneSharePerToken: a node binds its token serial with its own
// key; another node declaring the same serial is refused (SECURITY 20), as
// are a declaration signed by another node or an unpinned key, and a bad
// serial; a node may move to a new token and the old serial is then free.
func TestNodeTokenOneSharePerToken(t *testing.T) {
	h := newHarness(t)
	h.must("node:n1", h.nodeToken("n1", "serial-A", nil))
	h.must("node:n1", h.nodeToken("n1", "serial-A", nil)) // every start declares it again
	h.refuse(ErrConflict, "node:n2", h.nodeToken("n2", "serial-A", nil))

	forged := h.nodeToken("n2", "serial-B", nil)
	forged.Node = "n3" // n2's signature presented as n3's declaration
	h.refuse(ErrApproval, "node:n2", forged)
	h.refuse(ErrApproval, "node:n3", h.nodeToken("n3", "serial-C", otherKey(t)))
	h.refuse(ErrInvalid, "node:n3", h.nodeToken("n3", "", nil))
	h.refuse(ErrInvalid, "node:n3", h.nodeToken("n3", "bad\nserial", nil))

	h.must("node:n1", h.nodeToken("n1", "serial-A2", nil))
	h.must("node:n2", h.nodeToken("n2", "serial-A", nil))
	if got := h.tokens(); got["n1"] != "serial-A2" || got["n2"] != "serial-A" || len(got) != 2 {
		t.Fatalf("bindings %v", got)
	}
}
