package devnet

import (
	"context"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/quorum"
)

// Wallet is a wallet the devnet created by distributed keygen.
type Wallet struct {
	ID      string `json:"id"`
	Chain   string `json:"chain"`
	Network string `json:"network"`
	Address string `json:"address"`
	PubKey  []byte `json:"public_key"`
}

// The devnet's wallets.
const (
	ETHWallet = "eth-hot-1"
	BTCWallet = "btc-hot-1"
)

// CreateWallet has alice and bob approve wallet.create for id (2-of-N over
// every node: threshold 1) and waits until every node records the wallet
// active with one key (the leader ran the keygen and the test signatures).
func (n *Net) CreateWallet(ctx context.Context, id, chain, network string) (Wallet, error) {
	spec := ledger.WalletSpec{ID: "create-" + id, Wallet: id, Chain: chain, Network: network, Committee: n.Nodes, Threshold: 1}
	var approvals []quorum.Approval
	for _, op := range []string{"alice", "bob"} {
		a, err := n.SignAs("operators", op, spec.ID, spec.PayloadHash(), quorum.Approve, time.Now().Add(time.Hour))
		if err != nil {
			return Wallet{}, err
		}
		approvals = append(approvals, a)
	}
	if _, err := n.Submit(ctx, "alice", ledger.WalletCreate{Change: spec, Approvals: approvals}); err != nil {
		return Wallet{}, fmt.Errorf("devnet: wallet.create %s: %w", id, err)
	}
	c, err := n.nodeRPC()
	if err != nil {
		return Wallet{}, err
	}
	var pub []byte
	for _, node := range n.Nodes {
		for {
			v, err := c.Wallet(ctx, node, id)
			if err == nil && v.Wallet.Active() && len(v.Wallet.PubKey) == 33 {
				if pub == nil {
					pub = v.Wallet.PubKey
				} else if string(pub) != string(v.Wallet.PubKey) {
					return Wallet{}, fmt.Errorf("devnet: %s records another key for %s", node, id)
				}
				break
			}
			select {
			case <-ctx.Done():
				return Wallet{}, fmt.Errorf("devnet: wallet %s not active on %s: %w", id, node, ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	w := Wallet{ID: id, Chain: chain, Network: network, PubKey: pub}
	switch chain {
	case "eth":
		a, err := eth.AddressFromPublicKey(pub)
		if err != nil {
			return Wallet{}, err
		}
		w.Address = a.Hex()
	case "btc":
		pk, err := btcec.ParsePubKey(pub)
		if err != nil {
			return Wallet{}, err
		}
		a, err := btcAddress(pk)
		if err != nil {
			return Wallet{}, err
		}
		w.Address = a.EncodeAddress()
	}
	return w, nil
}
