package withdraw

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
)

// ErrNotShown: this node's own chain node does not show the status the
// ledger recorded for a request's transaction (not yet, or never: the
// leader's node lagged ahead, reorganised, or the leader lied). Nothing is
// witnessed; Witness is called again later.
var ErrNotShown = errors.New("withdraw: this node's chain does not show the recorded status")

// WitnessWork lists, from a node's own replica, the requests whose
// recorded chain status (request.chain_status) node should witness: a
// status recorded, not yet witnessed by a quorum of the node set, and not
// by node. Sorted.
func WitnessWork(st *ledger.State, node pki.NodeID) []string {
	var out []string
	for id, r := range st.Requests {
		if _, ok := r.ChainWitnessHead("", ""); !ok || r.OnChain.Witnessed {
			continue
		}
		if slices.ContainsFunc(r.OnChain.Witnesses, func(s ledger.CheckpointSig) bool { return s.Node == node }) {
			continue
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Witness checks, on this node's own chain nodes (the orchestrator's ETH
// and BTCNode, read with ChainStatus: the reading the leader records), the
// chain status this node's own replica records for a request, and when its
// chain shows the same status and block (minConf deep, by this node's own
// configuration) signs a witness (ledger.ChainWitness over
// ledger.ChainWitnessHead) with key, this node's node key, and submits it
// (ledger.Store.Attest: on the leader, or forwarded to it). It runs on
// every node, leader or not. Returns ErrNotShown when the chain does not
// show the recorded status (pending, another status or block, or unknown)
// and nil without sending when there is nothing to witness (no status
// recorded, already witnessed by a quorum or by this node).
func (c *Orchestrator) Witness(ctx context.Context, requestID string, minConf uint64, key crypto.Signer) error {
	if key == nil {
		return errors.New("withdraw: no node key to sign a chain witness with")
	}
	self := c.cfg.Ledger.ID()
	var r *ledger.Request
	var pub []byte
	var h ledger.ChainWitnessHead
	var ok bool
	if err := c.cfg.Ledger.ReadLocal(func(st *ledger.State) error {
		if x := st.Requests[requestID]; x != nil {
			r = x.Clone()
			if w := st.Wallets[x.Wallet]; w != nil {
				pub = slices.Clone(w.PubKey)
			}
			h, ok = r.ChainWitnessHead(st.Registry.ClusterID, st.GenesisHash)
		}
		return nil
	}); err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("%w: %q", ErrUnknownRequest, requestID)
	}
	if !ok || r.OnChain.Witnessed || slices.ContainsFunc(r.OnChain.Witnesses, func(s ledger.CheckpointSig) bool { return s.Node == self }) {
		return nil
	}
	if len(pub) == 0 {
		// A legacy wallet (wallet.set) has no key in the ledger: the
		// orchestrator's registration (syncWallets, from this node's share).
		if info, err := c.wallet(r.Wallet); err == nil {
			pub = info.PubKey
		}
	}
	if len(pub) == 0 && r.Chain == "eth" {
		return fmt.Errorf("withdraw: no public key of wallet %q", r.Wallet)
	}
	st, err := ChainStatus(ctx, c.chainNodes(), r, pub, minConf)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("%w: %q recorded %s in block %d, this node's chain shows it pending", ErrNotShown, r.ID, h.Status, h.Block)
	}
	if st.Status != h.Status || st.Block != h.Block || st.TxHash != h.TxHash {
		return fmt.Errorf("%w: %q recorded %s in block %d, this node's chain shows %s in block %d", ErrNotShown, r.ID, h.Status, h.Block, st.Status, st.Block)
	}
	sig, err := ledger.SignChainWitness(h, self, key)
	if err != nil {
		return err
	}
	return c.cfg.Ledger.Attest(ctx, ledger.ChainWitness{RequestID: r.ID, TxHash: h.TxHash, Status: h.Status, Block: h.Block, Sig: sig})
}
