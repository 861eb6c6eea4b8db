package daemon

import (
	"context"
	"math/big"

	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/ledger"
)

// Balances reads a wallet's balances from this node's chain adapters
// (rest.Service; the wallets endpoints only): ETH and each configured
// token at an Ethereum address through the node's eth RPC, the sum of the
// spendable outputs (chains.btc.min_conf) at a Bitcoin address through
// btcd. A wallet of a network this node's adapter is not on, and a read
// that fails or misses ctx's deadline, gives nothing: unknown is absent,
// never 0.
func (b backendService) Balances(ctx context.Context, w *ledger.Wallet, address string) []rest.Balance {
	n := b.n
	var out []rest.Balance
	add := func(asset string, decimals int, v *big.Int) {
		if a, err := amount.FromBig(v); err == nil {
			out = append(out, rest.Balance{Asset: asset, Decimals: decimals, Amount: a, At: n.now()})
		}
	}
	switch w.Chain {
	case "eth":
		cfg := n.cfg.Chains.ETH
		if n.eth == nil || cfg == nil || cfg.Network != w.Network || !common.IsHexAddress(address) {
			return nil
		}
		addr := common.HexToAddress(address)
		v, err := n.eth.Balance(ctx, addr, nil)
		if err != nil {
			n.log.Debug("balance unknown", "wallet", w.ID, "asset", "ETH", "err", err)
			return nil
		}
		add("ETH", 18, v)
		for _, t := range cfg.Tokens {
			contract := common.HexToAddress(t.Contract)
			if v, err := n.eth.Balance(ctx, addr, &contract); err == nil {
				add(t.Symbol, t.Decimals, v)
			} else {
				n.log.Debug("balance unknown", "wallet", w.ID, "asset", t.Symbol, "err", err)
			}
		}
	case "btc":
		cfg := n.cfg.Chains.BTC
		if n.btc == nil || cfg == nil || cfg.Network != w.Network {
			return nil
		}
		net, err := btc.Network(w.Network)
		if err != nil {
			return nil
		}
		addr, err := btc.ParseAddress(address, net)
		if err != nil {
			return nil
		}
		utxos, err := n.btc.UTXOs(ctx, addr, cfg.MinConf)
		if err != nil {
			n.log.Debug("balance unknown", "wallet", w.ID, "asset", "BTC", "err", err)
			return nil
		}
		sum := new(big.Int)
		for _, u := range utxos {
			sum.Add(sum, big.NewInt(u.Value))
		}
		add("BTC", 8, sum)
	}
	return out
}
