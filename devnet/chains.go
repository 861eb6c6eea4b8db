package devnet

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/btc/btcdproc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/chains/eth/devtoken"
)

// BTCNet is the devnet's Bitcoin network.
var BTCNet = &chaincfg.RegressionNetParams

// tokenSupply is what the devnet's funder holds of its token (6 decimals).
var tokenSupply = big.NewInt(1_000_000_000_000) // 1,000,000 TKN

func ether(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e18)) }

// startETH serves the simulated chain (a fresh funder with 1,000 ETH) and
// deploys the devnet's ERC-20 token from the funder.
func (n *Net) startETH(ctx context.Context) error {
	k, err := crypto.GenerateKey()
	if err != nil {
		return err
	}
	n.ethFunder = k
	funder := crypto.PubkeyToAddress(k.PublicKey)
	if n.ETH, err = eth.NewServed(types.GenesisAlloc{funder: {Balance: ether(1000)}}, eth.ServeConfig{CommitOnSend: true}); err != nil {
		return err
	}
	nonce, err := n.ETH.Nonce(ctx, funder)
	if err != nil {
		return err
	}
	if _, err := n.sendETH(ctx, &types.DynamicFeeTx{Nonce: nonce, Gas: 1_000_000, Data: devtoken.TokenInitCode(tokenSupply)}); err != nil {
		return fmt.Errorf("deploy the token: %w", err)
	}
	n.Token = crypto.CreateAddress(funder, nonce)
	n.progress("  Ethereum: go-ethereum simulated chain on %s (chain ID 1337), token TKN at %s", n.ETH.URL(), n.Token.Hex())
	return nil
}

// sendETH signs tx (chain ID, fees filled in) with the funder's key, sends
// it over the served JSON-RPC and returns its hash once mined successfully.
func (n *Net) sendETH(ctx context.Context, tx *types.DynamicFeeTx) (common.Hash, error) {
	fees, err := n.ETH.SuggestFees(ctx)
	if err != nil {
		return common.Hash{}, err
	}
	tx.ChainID, tx.GasTipCap, tx.GasFeeCap = eth.SimulatedChainID, fees.GasTipCap, fees.GasFeeCap
	signed, err := types.SignNewTx(n.ethFunder, types.LatestSignerForChainID(eth.SimulatedChainID), tx)
	if err != nil {
		return common.Hash{}, err
	}
	c, err := ethclient.DialContext(ctx, n.ETH.URL())
	if err != nil {
		return common.Hash{}, err
	}
	defer c.Close()
	if err := c.SendTransaction(ctx, signed); err != nil {
		return common.Hash{}, err
	}
	r, err := c.TransactionReceipt(ctx, signed.Hash())
	if err != nil {
		return common.Hash{}, err
	}
	if r.Status != types.ReceiptStatusSuccessful {
		return common.Hash{}, fmt.Errorf("transaction %s reverted", signed.Hash().Hex())
	}
	return signed.Hash(), nil
}

// FundETH sends wei from the funder to addr, mined.
func (n *Net) FundETH(ctx context.Context, addr common.Address, wei *big.Int) error {
	nonce, err := n.ETH.Nonce(ctx, crypto.PubkeyToAddress(n.ethFunder.PublicKey))
	if err != nil {
		return err
	}
	_, err = n.sendETH(ctx, &types.DynamicFeeTx{Nonce: nonce, Gas: 21_000, To: &addr, Value: wei})
	return err
}

// FundToken transfers units of the devnet's token from the funder to addr.
func (n *Net) FundToken(ctx context.Context, addr common.Address, units *big.Int) error {
	nonce, err := n.ETH.Nonce(ctx, crypto.PubkeyToAddress(n.ethFunder.PublicKey))
	if err != nil {
		return err
	}
	tok := n.Token
	_, err = n.sendETH(ctx, &types.DynamicFeeTx{Nonce: nonce, Gas: 100_000, To: &tok, Data: eth.TransferCalldata(addr, units)})
	return err
}

// startBTC starts btcd regtest mining to a fresh funder key, and mines
// until segwit is active and the first coinbases are mature.
func (n *Net) startBTC(ctx context.Context) error {
	if n.cfg.Btcd == "" {
		n.progress("  Bitcoin: no btcd binary (make tools installs one): the Bitcoin steps are skipped")
		return nil
	}
	k, err := btcec.NewPrivateKey()
	if err != nil {
		return err
	}
	n.btcFunder = k
	addr, err := btcAddress(k.PubKey())
	if err != nil {
		return err
	}
	if n.BTC, err = btcdproc.Start(ctx, btcdproc.Config{Bin: n.cfg.Btcd, Dir: filepath.Join(n.Dir, "btcd"), MiningAddr: addr.EncodeAddress()}); err != nil {
		return err
	}
	c, err := n.btcClient()
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Generate(ctx, btcdproc.SegwitActiveHeight+1); err != nil {
		return err
	}
	n.progress("  Bitcoin: btcd regtest on %s, %d blocks mined (segwit active)", n.BTC.Host, btcdproc.SegwitActiveHeight+1)
	return nil
}

func btcAddress(pub *btcec.PublicKey) (*btcutil.AddressWitnessPubKeyHash, error) {
	return btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pub.SerializeCompressed()), BTCNet)
}

func (n *Net) btcClient() (*btc.Client, error) {
	if n.BTC == nil {
		return nil, errors.New("this devnet runs no Bitcoin node")
	}
	return btc.Dial(btc.RPCConfig{Host: n.BTC.Host, User: n.BTC.User, Pass: n.BTC.Pass, Cert: n.BTC.Cert}, BTCNet)
}

// FundBTC pays sats from the funder's mature coinbases to addr and mines
// the payment (one block).
func (n *Net) FundBTC(ctx context.Context, to string, sats int64) (chainhash.Hash, error) {
	c, err := n.btcClient()
	if err != nil {
		return chainhash.Hash{}, err
	}
	defer c.Close()
	from, err := btcAddress(n.btcFunder.PubKey())
	if err != nil {
		return chainhash.Hash{}, err
	}
	utxos, err := c.UTXOs(ctx, from, 1)
	if err != nil {
		return chainhash.Hash{}, err
	}
	u, err := btc.Build(btc.Intent{Net: BTCNet, WalletPubKey: n.btcFunder.PubKey().SerializeCompressed(), To: to, Amount: sats, FeeRate: 10, UTXOs: utxos})
	if err != nil {
		return chainhash.Hash{}, err
	}
	digests, err := u.SigHashes()
	if err != nil {
		return chainhash.Hash{}, err
	}
	sigs := make([]btc.Signature, len(digests))
	for i, d := range digests {
		c := becdsa.SignCompact(n.btcFunder, d[:], true) // [header] r s
		sigs[i] = btc.Signature{R: new(big.Int).SetBytes(c[1:33]), S: new(big.Int).SetBytes(c[33:65])}
	}
	s, err := u.Assemble(sigs)
	if err != nil {
		return chainhash.Hash{}, err
	}
	h, err := c.Broadcast(ctx, s)
	if err != nil {
		return chainhash.Hash{}, err
	}
	if _, err := c.Generate(ctx, 1); err != nil {
		return chainhash.Hash{}, err
	}
	return h, nil
}

// MineBTC mines blocks (confirmations for the nodes' broadcasts).
func (n *Net) MineBTC(ctx context.Context, blocks uint32) error {
	c, err := n.btcClient()
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Generate(ctx, blocks)
	return err
}

// Mine makes blocks until ctx ends: an Ethereum block every 2 seconds and
// a Bitcoin block every 5, so withdrawals broadcast while the devnet is
// kept running reach their confirmations (the embedded chain otherwise
// mines only when a transaction is sent, btcd regtest only when asked).
func (n *Net) Mine(ctx context.Context) {
	eth := time.NewTicker(2 * time.Second)
	defer eth.Stop()
	btcTick := time.NewTicker(5 * time.Second)
	defer btcTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-eth.C:
			n.ETH.Commit()
		case <-btcTick.C:
			if n.BTC != nil {
				_ = n.MineBTC(ctx, 1)
			}
		}
	}
}
