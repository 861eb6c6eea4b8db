package rest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/quorum"
)

// reviewKey is a fixed wallet key of the review tests.
func reviewKey(t *testing.T, seed string) []byte {
	t.Helper()
	k := sha256.Sum256([]byte(seed))
	priv, _ := btcec.PrivKeyFromBytes(k[:])
	return priv.PubKey().SerializeCompressed()
}

// honestView is the operator view an honest node serves for u, without
// the payload bytes (the caller adds them): the withdrawal fields are
// what the transaction does (as the member's adapter reads them), the
// hash is its hash.
func honestView(t *testing.T, u chains.Unsigned, chain, network string, decimals int, pub []byte, from string) rest.RequestView {
	t.Helper()
	tr := u.Transfer()
	ph := u.PayloadHash()
	fee := map[string]string{"eth": "ETH", "btc": "BTC"}[chain]
	v := rest.RequestView{
		Withdrawal: rest.WithdrawalView{ID: "wd-review", Wallet: "w", Chain: chain, Network: network, Asset: tr.Asset, To: tr.To,
			Amount: tr.Amount.Format(decimals), AmountBase: tr.Amount.String(), PayloadHash: quorum.Hash(ph).String(),
			FeeCap: rest.FeeView{Asset: fee, AmountBase: tr.MaxFee.String()}, Nonce: tr.Nonce,
			Description: "send what the node says"},
		ClusterID: "c", Decimals: decimals, WalletPubKey: hex.EncodeToString(pub), From: from, Outpoints: tr.Outpoints,
	}
	return v
}

func ethPayload(t *testing.T, in eth.Intent) *eth.Unsigned {
	t.Helper()
	u, err := eth.NewUnsigned(in)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// ethView is honestView of an Ethereum transaction, parsed by a member's
// adapter for chainID (with token TKN when given).
func ethView(t *testing.T, u *eth.Unsigned, chainID uint64, token *eth.Token, pub []byte) rest.RequestView {
	t.Helper()
	cfg := eth.Config{Networks: map[string]uint64{"devnet": chainID}}
	decimals := 18
	if token != nil {
		cfg.Tokens = map[string][]eth.Token{"devnet": {*token}}
		decimals = int(token.Decimals)
	}
	a, err := eth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.ParseUnsigned("devnet", u.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	from, err := a.Address("devnet", pub)
	if err != nil {
		t.Fatal(err)
	}
	v := honestView(t, p, "eth", "devnet", decimals, pub, from)
	v.Payload = u.Bytes()
	return v
}

// TestReviewRequest: what `custody approve` derives from a node's request
// view, with payloads built by the chain packages' own builders: an
// honest view is shown as the transaction says (its own chain ID, the
// token contract, every Bitcoin output with the change marked) and its
// hash is the one signed; a view whose payload hash, destination, amount,
// asset, fee, nonce, outpoints, whole-unit amount or wallet address is not
// the payload's is refused (rest.ErrReview), as is a payload that does
// not parse or is absent.
func TestReviewRequest(t *testing.T) {
	pub := reviewKey(t, "review-wallet")
	dest := common.HexToAddress("0x00000000000000000000000000000000000000d1")
	fees := eth.Fees{GasTipCap: big.NewInt(1_000_000_000), GasFeeCap: big.NewInt(30_000_000_000)}
	amt, _ := new(big.Int).SetString("1500000000000000000", 10)
	ethTx := ethPayload(t, eth.Intent{ChainID: eth.SimulatedChainID, Nonce: 7, To: dest, Asset: eth.ETH, Amount: amt, GasLimit: 21000, Fees: fees})
	other := ethPayload(t, eth.Intent{ChainID: eth.SimulatedChainID, Nonce: 7, To: common.HexToAddress("0x00000000000000000000000000000000000000e1"), Asset: eth.ETH, Amount: amt, GasLimit: 21000, Fees: fees})

	t.Run("ETH", func(t *testing.T) {
		v := ethView(t, ethTx, 1337, nil, pub)
		r, err := rest.ReviewRequest(v)
		if err != nil {
			t.Fatal(err)
		}
		if r.PayloadHash != quorum.Hash(ethTx.PayloadHash()) || r.ChainID != 1337 || r.Transfer.To != dest.Hex() || r.From != v.From {
			t.Fatalf("review %+v", r)
		}
		text := r.Text()
		for _, want := range []string{"chain ID 1337", "to           " + dest.Hex(), "amount       1.5 ETH (1500000000000000000 base units)",
			"max fee      0.00063 ETH (630000000000000 wei: gas limit 21000 x 30000000000 wei per gas)", "nonce        7",
			"from         " + v.From, "payload hash " + quorum.Hash(ethTx.PayloadHash()).String()} {
			if !strings.Contains(text, want) {
				t.Errorf("text lacks %q:\n%s", want, text)
			}
		}
	})

	t.Run("ETHOtherChainIDShown", func(t *testing.T) {
		u := ethPayload(t, eth.Intent{ChainID: big.NewInt(5), Nonce: 1, To: dest, Asset: eth.ETH, Amount: amt, GasLimit: 21000, Fees: fees})
		r, err := rest.ReviewRequest(ethView(t, u, 5, nil, pub))
		if err != nil {
			t.Fatal(err)
		}
		if r.ChainID != 5 || !strings.Contains(r.Text(), "chain ID 5 ") {
			t.Fatalf("chain ID %d:\n%s", r.ChainID, r.Text())
		}
	})

	token := eth.Token{Symbol: "TKN", Address: common.HexToAddress("0x00000000000000000000000000000000000070c0"), Decimals: 6}
	tokTx := ethPayload(t, eth.Intent{ChainID: eth.SimulatedChainID, Nonce: 8, To: dest, Asset: token.Asset(), Amount: big.NewInt(2_500_000), GasLimit: 60000, Fees: fees})
	t.Run("Token", func(t *testing.T) {
		r, err := rest.ReviewRequest(ethView(t, tokTx, 1337, &token, pub))
		if err != nil {
			t.Fatal(err)
		}
		text := r.Text()
		for _, want := range []string{"token contract " + token.Address.Hex() + " (named TKN, 6 decimals, by the node)", "amount       2.5 TKN (2500000 base units)", "to           " + dest.Hex()} {
			if !strings.Contains(text, want) {
				t.Errorf("text lacks %q:\n%s", want, text)
			}
		}
	})

	btcNet := &chaincfg.RegressionNetParams
	walletAddr, err := btc.WalletAddress(pub, btcNet)
	if err != nil {
		t.Fatal(err)
	}
	script, _ := txscript.PayToAddrScript(walletAddr)
	var utxos []btc.UTXO
	for i, v := range []int64{60_000_000, 50_000_000} {
		h := chainhash.HashH([]byte{byte(i)})
		utxos = append(utxos, btc.UTXO{OutPoint: wire.OutPoint{Hash: h, Index: uint32(i)}, Value: v, PkScript: script, Confirmations: 6})
	}
	otherKey := reviewKey(t, "review-destination")
	btcDest, err := btc.WalletAddress(otherKey, btcNet)
	if err != nil {
		t.Fatal(err)
	}
	btcTx, err := btc.Build(btc.Intent{Net: btcNet, WalletPubKey: pub, To: btcDest.EncodeAddress(), Amount: 70_000_000, FeeRate: 10, UTXOs: utxos})
	if err != nil {
		t.Fatal(err)
	}
	btcAdapter, err := btc.NewChain(map[string]string{"regtest": "regtest"})
	if err != nil {
		t.Fatal(err)
	}
	btcParsed, err := btcAdapter.ParseUnsigned("regtest", btcTx.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	btcView := func() rest.RequestView {
		v := honestView(t, btcParsed, "btc", "regtest", 8, pub, walletAddr.EncodeAddress())
		v.Payload, v.BTCParams = btcTx.Bytes(), "regtest"
		return v
	}
	t.Run("BTC", func(t *testing.T) {
		r, err := rest.ReviewRequest(btcView())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Outputs) != 2 || r.Outputs[0].Change || !r.Outputs[1].Change || len(r.Inputs) != 2 {
			t.Fatalf("outputs %+v inputs %+v", r.Outputs, r.Inputs)
		}
		text := r.Text()
		for _, want := range []string{"bitcoin regtest", "to           " + btcDest.EncodeAddress(), "amount       0.7 BTC (70000000 base units)",
			"output 0     " + btcDest.EncodeAddress() + " 0.7 BTC (the destination)", "(change, back to the wallet's own key)",
			"from         " + walletAddr.EncodeAddress() + " (the wallet key the node sent; every input spends it)"} {
			if !strings.Contains(text, want) {
				t.Errorf("text lacks %q:\n%s", want, text)
			}
		}
		// Without the wallet's key: the adapter's own listing, change marked.
		v := btcView()
		v.WalletPubKey, v.From = "", ""
		r, err = rest.ReviewRequest(v)
		if err != nil {
			t.Fatal(err)
		}
		if r.From != "" || !strings.Contains(r.Text(), "(change)") {
			t.Errorf("without a key:\n%s", r.Text())
		}
	})

	ethV := func() rest.RequestView { return ethView(t, ethTx, 1337, nil, pub) }
	tokV := func() rest.RequestView { return ethView(t, tokTx, 1337, &token, pub) }
	refusals := []struct {
		name string
		view func() rest.RequestView
		edit func(v *rest.RequestView)
		want string
	}{
		{"PayloadHashOfAnotherTx", ethV, func(v *rest.RequestView) { v.Withdrawal.PayloadHash = quorum.Hash(other.PayloadHash()).String() }, "hashes to"},
		{"PayloadOfAnotherTx", ethV, func(v *rest.RequestView) { v.Payload = other.Bytes() }, "hashes to"},
		{"OtherDestination", ethV, func(v *rest.RequestView) { v.Withdrawal.To = "0x00000000000000000000000000000000000000e1" }, "tx pays"},
		{"OtherAmount", ethV, func(v *rest.RequestView) { v.Withdrawal.Amount, v.Withdrawal.AmountBase = "0.0001", "100000000000000" }, "tx amount"},
		{"WholeUnitAmountLies", ethV, func(v *rest.RequestView) { v.Withdrawal.Amount = "0.0015" }, "shows amount 0.0015"},
		{"OtherFeeCap", ethV, func(v *rest.RequestView) { v.Withdrawal.FeeCap.AmountBase = "1" }, "maximum fee"},
		{"OtherNonce", ethV, func(v *rest.RequestView) { v.Withdrawal.Nonce = new(uint64) }, "tx nonce 7 is not the request's nonce 0"},
		{"TokenCalledETH", tokV, func(v *rest.RequestView) {
			v.Withdrawal.Asset, v.Decimals, v.Withdrawal.Amount = "ETH", 18, "0.0000000000025"
		}, "not a registered token"},
		{"ETHCalledToken", ethV, func(v *rest.RequestView) { v.Withdrawal.Asset = "TKN" }, `tx moves "ETH"`},
		{"OtherWalletAddress", ethV, func(v *rest.RequestView) { v.From = "0x00000000000000000000000000000000000000f1" }, "its key"},
		{"NoPayload", ethV, func(v *rest.RequestView) { v.Payload = nil }, "no unsigned transaction"},
		{"GarbagePayload", ethV, func(v *rest.RequestView) { v.Payload = []byte{0x02, 0x01} }, "malformed"},
		{"BTCOtherOutpoints", btcView, func(v *rest.RequestView) { v.Outpoints = v.Outpoints[:1] }, "tx spends"},
		{"BTCOtherNetwork", btcView, func(v *rest.RequestView) { v.BTCParams = "testnet3" }, "payload is for bitcoin regtest"},
		{"BTCNoParams", btcView, func(v *rest.RequestView) { v.BTCParams = "" }, "btc_params"},
		{"BTCInputsNotTheKey", btcView, func(v *rest.RequestView) {
			v.WalletPubKey, v.From = hex.EncodeToString(otherKey), btcDest.EncodeAddress()
		}, "inputs are not the wallet key's"},
		{"BTCOtherDestination", btcView, func(v *rest.RequestView) { v.Withdrawal.To = walletAddr.EncodeAddress() }, "tx pays"},
	}
	for _, tc := range refusals {
		t.Run("Refused/"+tc.name, func(t *testing.T) {
			v := tc.view()
			tc.edit(&v)
			r, err := rest.ReviewRequest(v)
			if !errors.Is(err, rest.ErrReview) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("review %+v, error %v; want rest.ErrReview naming %q", r, err, tc.want)
			}
		})
	}
}
