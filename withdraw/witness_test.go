package withdraw_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/withdraw"
)

// lyingETH is a compromised leader's chain node: it reports a receipt,
// mined two blocks below the head, for transactions it names, mined or not.
type lyingETH struct {
	*faultyETH
	mu    sync.Mutex
	mined map[common.Hash]uint64
}

func (l *lyingETH) Receipt(ctx context.Context, h common.Hash) (*eth.Receipt, error) {
	l.mu.Lock()
	b, ok := l.mined[h]
	l.mu.Unlock()
	if ok {
		return &eth.Receipt{Success: true, BlockNumber: b}, nil
	}
	return l.faultyETH.Receipt(ctx, h)
}

// nodeOrch is an orchestrator over node's own ledger replica and chain node
// (what every daemon runs, leader or not).
func (h *broadcastHarness) nodeOrch(node *ledgertest.Node, chain withdraw.ETHTracker) *withdraw.Orchestrator {
	h.t.Helper()
	o, err := withdraw.New(withdraw.Config{Ledger: node.Store, ETH: chain.(eth.RPC), Network: "devnet", Actor: "node:" + string(node.ID),
		Chains: map[string]chains.Chain{"eth": eth.NewChain(map[string]uint64{"devnet": 1337})}})
	if err != nil {
		h.t.Fatal(err)
	}
	return o
}

// onChain is request id's OnChain on node's own replica.
func onChain(t *testing.T, node *ledgertest.Node, id string) (*ledger.OnChain, ledger.Status) {
	t.Helper()
	var oc *ledger.OnChain
	var st ledger.Status
	if err := node.Store.ReadLocal(func(s *ledger.State) error {
		if r := s.Requests[id]; r != nil {
			oc, st = r.Clone().OnChain, r.Status
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return oc, st
}

// TestChainWitness: every node, from its own replica and its own chain
// node, witnesses the chain status the leader recorded. A withdrawal
// confirmed on the chain ends up witnessed by the whole node set (3 of 3,
// the checkpoint quorum), each replica showing it. A compromised leader
// whose node reports a receipt for a transaction the chain never saw
// records it confirmed, and witnesses its own lie, but the other nodes'
// chains show it dropped: they refuse to witness (withdraw.ErrNotShown),
// however often they look and however many blocks pass, and the status
// stays the leader's word alone (OnChain.Witnessed false).
func TestChainWitness(t *testing.T) {
	h := newBroadcastHarness(t)
	const minConf = 2
	// 1. Confirmed on the chain: witnessed by all three.
	r := h.signed("wt-1", 1e15)
	if _, err := h.orch.Broadcast(h.ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	orchs := map[pki.NodeID]*withdraw.Orchestrator{}
	for _, n := range h.cluster.Nodes {
		orchs[n.ID] = h.nodeOrch(n, h.node)
	}
	// Before the chain status is recorded, nothing to witness.
	for _, n := range h.cluster.Nodes {
		if err := orchs[n.ID].Witness(h.ctx, r.ID, minConf, ledgertest.NodeKey(n.ID)); err != nil {
			t.Fatalf("%s witnessing a request without a chain status: %v", n.ID, err)
		}
	}
	for range minConf {
		h.node.Commit()
	}
	confirmed := h.track(r.ID, minConf, ledger.StatusConfirmed)
	if st := mustState(t, h.cluster.Leader()); !slices.Equal(withdraw.WitnessWork(st, "n1"), []string{r.ID}) {
		t.Fatalf("n1's witness work: %v", withdraw.WitnessWork(st, "n1"))
	}
	for _, n := range h.cluster.Nodes {
		ledgertest.Poll(t, string(n.ID)+" witnesses "+r.ID, func() error {
			if err := orchs[n.ID].Witness(h.ctx, r.ID, minConf, ledgertest.NodeKey(n.ID)); err != nil {
				return err
			}
			if oc, _ := onChain(t, n, r.ID); !slices.Contains(oc.WitnessedBy(), n.ID) && !oc.Witnessed {
				return fmt.Errorf("%s's witness not in its replica yet", n.ID)
			}
			return nil
		})
	}
	for _, n := range h.cluster.Nodes {
		ledgertest.Poll(t, string(n.ID)+"'s replica shows "+r.ID+" witnessed", func() error {
			oc, st := onChain(t, n, r.ID)
			if st != ledger.StatusConfirmed || !oc.Witnessed || oc.Block != confirmed.OnChain.Block {
				return fmt.Errorf("%s %+v", st, oc)
			}
			if by := oc.WitnessedBy(); !slices.Equal(by, []pki.NodeID{"n1", "n2", "n3"}) {
				return fmt.Errorf("witnessed by %v", by)
			}
			return nil
		})
	}
	if st := mustState(t, h.cluster.Leader()); len(withdraw.WitnessWork(st, "n1")) != 0 {
		t.Fatalf("witness work left after the quorum: %v", withdraw.WitnessWork(st, "n1"))
	}

	// 2. A lying leader: its node never saw the transaction (swallowed),
	// yet reports it mined.
	l := h.signed("wt-2", 2e15)
	hash := common.HexToHash(l.Result.TxHash)
	h.node.mu.Lock()
	h.node.swallow[hash] = true
	h.node.mu.Unlock()
	if _, err := h.orch.Broadcast(h.ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		h.node.Commit()
	}
	head, err := h.node.BlockNumber(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	liar := &lyingETH{faultyETH: h.node, mined: map[common.Hash]uint64{hash: head - 2}}
	leaderStore := h.cluster.Leader()
	lying, err := withdraw.New(withdraw.Config{Ledger: leaderStore, ETH: liar, Network: "devnet", Actor: "node:" + string(leaderStore.ID()),
		Chains: map[string]chains.Chain{"eth": eth.NewChain(map[string]uint64{"devnet": 1337})}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := lying.Track(h.ctx, l.ID, minConf)
	if err != nil || got.Status != ledger.StatusConfirmed {
		t.Fatalf("the lying leader's track: %v %v", got.Status, err)
	}
	if err := lying.Witness(h.ctx, l.ID, minConf, ledgertest.NodeKey(leaderStore.ID())); err != nil {
		t.Fatalf("the lying leader's witness of its own lie: %v", err)
	}
	var honest []*ledgertest.Node
	for _, n := range h.cluster.Nodes {
		if n.ID != leaderStore.ID() {
			honest = append(honest, n)
		}
	}
	for round := range 4 {
		for _, n := range honest {
			// Its replica has the confirmed status (it applied the log).
			ledgertest.Poll(t, string(n.ID)+" applied the lie", func() error {
				if _, st := onChain(t, n, l.ID); st != ledger.StatusConfirmed {
					return fmt.Errorf("%s", st)
				}
				return nil
			})
			if err := orchs[n.ID].Witness(h.ctx, l.ID, minConf, ledgertest.NodeKey(n.ID)); !errors.Is(err, withdraw.ErrNotShown) {
				t.Fatalf("round %d: %s witnessing an unmined transaction: %v, want ErrNotShown", round, n.ID, err)
			}
		}
		h.node.Commit()
	}
	for _, n := range h.cluster.Nodes {
		ledgertest.Poll(t, string(n.ID)+" holds the leader's witness", func() error {
			oc, _ := onChain(t, n, l.ID)
			if by := oc.WitnessedBy(); !slices.Equal(by, []pki.NodeID{leaderStore.ID()}) {
				return fmt.Errorf("witnessed by %v", by)
			}
			if oc.Witnessed {
				return errors.New("the lie is witnessed")
			}
			return nil
		})
	}
	if _, err := h.node.Receipt(h.ctx, hash); !errors.Is(err, eth.ErrNotMined) {
		t.Fatalf("the swallowed transaction was mined: %v", err)
	}
}
