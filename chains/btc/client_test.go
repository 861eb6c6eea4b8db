package btc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custody-dev/custody/chains/btc/btctest"
)

// startBtcd runs a real btcd regtest node (btctest.StartBtcd) with its
// coinbase paid to miningAddr and dials it.
func startBtcd(t *testing.T, miningAddr string) *Client {
	t.Helper()
	n := btctest.StartBtcd(t, miningAddr)
	node, err := Dial(RPCConfig{Host: n.Host, User: n.User, Pass: n.Pass, Cert: n.Cert}, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	return node
}

// TestRegtestSpendTwoInputsWithChange is the end-to-end check against a
// real btcd: mine to the wallet, find UTXOs through the address index,
// spend two coinbase outputs with change, sign through Assemble (and the
// PSBT path, which must give the same transaction), broadcast, mine, and
// confirm the transaction is in the block and the change pays the wallet.
func TestRegtestSpendTwoInputsWithChange(t *testing.T) {
	net := &chaincfg.RegressionNetParams
	w, dest := newWallet(t, net), newWallet(t, net)
	node := startBtcd(t, w.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	walletAddr, err := ParseAddress(w.addr, net)
	if err != nil {
		t.Fatal(err)
	}
	// btcd's regtest activates segwit by BIP-9 signalling: DEFINED until
	// 143, STARTED at 144, LOCKED_IN at 288, ACTIVE from block 432. Before
	// that it refuses any transaction with witness data.
	if _, err := node.Generate(ctx, btctest.SegwitActiveHeight); err != nil {
		t.Fatal(err)
	}
	utxos, err := node.UTXOs(ctx, walletAddr, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Only coinbases with 100 confirmations are offered: blocks 1..333.
	if want := btctest.SegwitActiveHeight - int(net.CoinbaseMaturity) + 1; len(utxos) != want {
		t.Fatalf("%d mature utxos, want %d", len(utxos), want)
	}
	for _, u := range utxos {
		if u.Confirmations < int64(net.CoinbaseMaturity) {
			t.Fatalf("immature coinbase offered: %+v", u)
		}
	}

	amount, err := ParseBTC("60.5")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 20_000e8, FeeRate: 5, UTXOs: utxos}); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("insufficient funds: %v", err)
	}
	u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: amount, FeeRate: 5, UTXOs: utxos})
	if err != nil {
		t.Fatal(err)
	}
	d := u.Description()
	if len(d.Inputs) != 2 || len(d.Outputs) != 2 || !d.Outputs[1].Change || d.Outputs[1].Address != w.addr {
		t.Fatalf("description:\n%s", d.Text())
	}
	sigs := w.sign(t, u)
	signed, err := u.Assemble(sigs)
	if err != nil {
		t.Fatal(err)
	}
	if viaPSBT := psbtRoundTrip(t, u, w, sigs); viaPSBT.TxID() != signed.TxID() || string(viaPSBT.Bytes()) != string(signed.Bytes()) {
		t.Fatal("PSBT round trip gives a different transaction")
	}

	txid, err := node.Broadcast(ctx, signed)
	if err != nil {
		t.Fatal(err)
	}
	if txid != signed.TxID() {
		t.Fatalf("node says %s, we say %s", txid, signed.TxID())
	}
	// In the mempool: both inputs are no longer offered, the change is
	// (unconfirmed) with minConf 0.
	pending, err := node.UTXOs(ctx, walletAddr, 0)
	if err != nil {
		t.Fatal(err)
	}
	change := wire.OutPoint{Hash: txid, Index: 1}
	seen := map[wire.OutPoint]int64{}
	for _, p := range pending {
		seen[p.OutPoint] = p.Value
	}
	for _, op := range u.Spent() {
		if _, ok := seen[op]; ok {
			t.Fatalf("spent outpoint %s still offered", op)
		}
	}
	if seen[change] != d.Outputs[1].Value {
		t.Fatalf("unconfirmed change %d, want %d", seen[change], d.Outputs[1].Value)
	}

	blocks, err := node.Generate(ctx, 1)
	if err != nil || len(blocks) != 1 {
		t.Fatal(blocks, err)
	}
	in, err := node.BlockContains(ctx, blocks[0], txid)
	if err != nil || !in {
		t.Fatalf("tx not in block %s: %v", blocks[0], err)
	}
	conf, err := node.Confirmations(ctx, txid)
	if err != nil || conf != 1 {
		t.Fatalf("confirmations %d %v", conf, err)
	}
	after, err := node.UTXOs(ctx, walletAddr, 1)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, a := range after {
		if a.OutPoint == change && a.Value == d.Outputs[1].Value && a.Confirmations == 1 {
			found = true
		}
	}
	if !found {
		t.Fatalf("confirmed change %s not among wallet utxos %+v", change, after)
	}
	// The payment reached the destination address, exactly.
	destAddr, _ := ParseAddress(dest.addr, net)
	got, err := node.UTXOs(ctx, destAddr, 1)
	if err != nil || len(got) != 1 || got[0].Value != amount || got[0].OutPoint != (wire.OutPoint{Hash: txid, Index: 0}) {
		t.Fatalf("destination utxos %+v %v", got, err)
	}
	// Broadcasting the same spend again is refused by the node.
	if _, err := node.Broadcast(ctx, signed); err == nil {
		t.Fatal("double broadcast accepted")
	}
	var zero chainhash.Hash
	if _, err := node.Confirmations(ctx, zero); err == nil {
		t.Fatal("unknown txid has confirmations")
	}
}
