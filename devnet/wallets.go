package devnet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"

	"github.com/custody-dev/custody/chains/eth"
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

// CreateWallet has alice propose wallet.create for id (2-of-N over every
// node: threshold 1) and bob approve it, with the operator CLI, and waits
// until every node records the wallet active with one key (the leader ran
// the keygen and the test signatures).
func (n *Net) CreateWallet(ctx context.Context, id, chain, network string) (Wallet, error) {
	var committee []string
	for _, node := range n.Nodes {
		committee = append(committee, string(node))
	}
	change := "create-" + id
	if _, err := n.Operator(ctx, "alice", nil, "wallet", "create", "--wallet", id, "--chain", chain, "--network", network,
		"--committee", strings.Join(committee, ","), "--threshold", "1", "--id", change, "--yes"); err != nil {
		return Wallet{}, err
	}
	if _, err := n.Operator(ctx, "bob", nil, "changes", "approve", change, "--yes"); err != nil {
		return Wallet{}, err
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
