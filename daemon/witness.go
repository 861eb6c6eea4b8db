package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/withdraw"
)

// Chain-witness timing.
const (
	// witnessTick is how often a node looks for chain statuses to witness.
	witnessTick = time.Second
	// witnessRetry is the pause before a node reads a request's
	// transaction on its chain again (its node had not shown the recorded
	// status, or the witness was not accepted).
	witnessRetry = 2 * time.Second
	// witnessBatch bounds the chain reads of one pass (a node catching up
	// on many recorded statuses spreads them over passes).
	witnessBatch = 32
)

// witnessLoop runs on every node, leader or not: for each chain status its
// own replica records (request.chain_status: the leader's reading of the
// leader's chain node) and a quorum has not witnessed yet, it reads the
// transaction on this node's own chain node (withdraw.Orchestrator.Witness,
// broadcast.confirmations deep) and, when that shows the same status and
// block, signs a chain witness with its node key and submits or forwards
// it. OnChain.Witnessed then says a checkpoint quorum of the node set saw
// it on their own chain nodes (docs/trust.md). A status its chain does not
// show is logged once and read again every witnessRetry.
func (n *Node) witnessLoop(ctx context.Context) {
	tick := time.NewTicker(witnessTick)
	defer tick.Stop()
	next := map[string]time.Time{} // by request: not read again before
	logged := map[string]string{}  // by request: the refusal logged last
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n.draining() || n.store.Halted() != nil {
			continue
		}
		var work []string
		_ = n.store.ReadLocal(func(st *ledger.State) error {
			work = withdraw.WitnessWork(st, n.cfg.NodeID)
			return nil
		})
		open := map[string]bool{}
		now, done := time.Now(), 0
		for _, id := range work {
			open[id] = true
			if done >= witnessBatch || now.Before(next[id]) {
				continue
			}
			done++
			next[id] = now.Add(witnessRetry)
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := n.orch.Witness(wctx, id, uint64(n.cfg.Broadcast.Confirmations), n.signer)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				n.log.Debug("chain status witnessed", "request", id)
			case errors.Is(err, withdraw.ErrNotShown):
				if msg := err.Error(); logged[id] != msg {
					logged[id] = msg
					n.log.Info("chain status not witnessed: this node's chain node does not show it", "request", id, "err", err)
				}
			default:
				n.log.Debug("chain witness", "request", id, "err", err)
			}
		}
		for id := range next {
			if !open[id] {
				delete(next, id)
				delete(logged, id)
			}
		}
	}
}
