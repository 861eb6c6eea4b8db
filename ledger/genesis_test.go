package ledger_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// TestFSMGenesisRecordsNodesAndHash: the genesis command's node set and
// genesis hash are recorded in the state; a genesis with a missing or
// malformed node set or hash is refused and changes nothing.
func TestFSMGenesisRecordsNodesAndHash(t *testing.T) {
	h := newHarness(t)
	g := genesisCmd()
	_ = h.f.Read(func(st *State) error {
		if st.GenesisHash != g.Hash || len(st.GenesisHash) != 64 {
			t.Errorf("State.GenesisHash = %q, want %q", st.GenesisHash, g.Hash)
		}
		ids := slices.Sorted(maps.Keys(st.Nodes))
		if !slices.Equal(ids, ledgertest.GenesisNodes) {
			t.Errorf("State.Nodes = %v, want %v", ids, ledgertest.GenesisNodes)
		}
		for _, n := range g.Nodes {
			if got := st.Nodes[n.ID]; got == nil || *got != n {
				t.Errorf("State.Nodes[%s] = %v, want %v", n.ID, got, n)
			}
		}
		return nil
	})

	fp := g.Nodes[0].KeyFingerprint
	for name, edit := range map[string]func(*Genesis){
		"no nodes":                 func(g *Genesis) { g.Nodes = nil },
		"empty node id":            func(g *Genesis) { g.Nodes[0].ID = "" },
		"node id with a space":     func(g *Genesis) { g.Nodes[0].ID = "n 1" },
		"node listed twice":        func(g *Genesis) { g.Nodes[1].ID = g.Nodes[0].ID },
		"short fingerprint":        func(g *Genesis) { g.Nodes[0].KeyFingerprint = fp[:62] },
		"uppercase fingerprint":    func(g *Genesis) { g.Nodes[0].KeyFingerprint = strings.ToUpper(fp) },
		"two nodes with one key":   func(g *Genesis) { g.Nodes[1].KeyFingerprint = fp },
		"no genesis hash":          func(g *Genesis) { g.Hash = "" },
		"uppercase genesis hash":   func(g *Genesis) { g.Hash = strings.ToUpper(g.Hash) },
		"genesis hash not hex":     func(g *Genesis) { g.Hash = "zz" + g.Hash[2:] },
		"genesis hash too long":    func(g *Genesis) { g.Hash += "00" },
		"an added node, short key": func(g *Genesis) { g.Nodes = append(g.Nodes, Node{ID: pki.NodeID("n4"), KeyFingerprint: "00"}) },
	} {
		t.Run(name, func(t *testing.T) {
			bad := genesisCmd()
			bad.Nodes = slices.Clone(bad.Nodes)
			edit(&bad)
			fresh := &fsmHarness{t: t, f: NewFSM(nil, nil), term: 1, now: fsmT0}
			fresh.refuse(ErrInvalid, "ceremony", bad)
			_ = fresh.f.Read(func(st *State) error {
				if st.GenesisHash != "" || len(st.Nodes) != 0 || st.Registry.ClusterID != "" {
					t.Fatalf("refused genesis left %q %v", st.GenesisHash, st.Nodes)
				}
				return nil
			})
		})
	}
}
