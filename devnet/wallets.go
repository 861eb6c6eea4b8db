package devnet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/pki"
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
	// ETHColdWallet and BTCColdWallet are the cold wallets the rules
	// route (class cold); the story makes neither: an offline ceremony's
	// (custody ceremony keygen) registered by the admins is.
	ETHColdWallet = "eth-cold-1"
	BTCColdWallet = "btc-cold-1"
)

// WalletSpec is a wallet the devnet creates: 2-of-3 (threshold 1) over a
// committee of three of its nodes.
type WalletSpec struct {
	ID, Chain, Network string
	Committee          []pki.NodeID
}

// CreateWallets has alice propose wallet.create for each spec and bob
// approve them, with the operator CLI (all proposed first, so the leader
// runs the keygens back to back), and waits until every node records each
// wallet active with one key (the leader ran the keygen and the test
// signatures).
func (n *Net) CreateWallets(ctx context.Context, specs ...WalletSpec) ([]Wallet, error) {
	for _, sp := range specs {
		var committee []string
		for _, node := range sp.Committee {
			committee = append(committee, string(node))
		}
		if _, err := n.Operator(ctx, "alice", nil, "wallet", "create", "--wallet", sp.ID, "--chain", sp.Chain, "--network", sp.Network,
			"--committee", strings.Join(committee, ","), "--threshold", "1", "--id", "create-"+sp.ID, "--yes"); err != nil {
			return nil, err
		}
	}
	for _, sp := range specs {
		if _, err := n.Operator(ctx, "bob", nil, "changes", "approve", "create-"+sp.ID, "--yes"); err != nil {
			return nil, err
		}
	}
	var out []Wallet
	for _, sp := range specs {
		w, err := n.waitWallet(ctx, sp.ID, sp.Chain, sp.Network)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// waitWallet waits until every node records wallet id active with one
// key, and returns it with its address.
func (n *Net) waitWallet(ctx context.Context, id, chain, network string) (Wallet, error) {
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

// committee is three consecutive nodes from index i (all of them when the
// devnet has three or fewer).
func (n *Net) committee(i int) []pki.NodeID {
	if len(n.Nodes) <= 3 {
		return n.Nodes
	}
	var c []pki.NodeID
	for k := range 3 {
		c = append(c, n.Nodes[(i+k)%len(n.Nodes)])
	}
	return c
}
