package btc

import (
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
)

// BenchmarkBuildSignAssemble2In: coin selection over 100 UTXOs, two
// BIP-143 digests, two signatures (btcec) and assembly with the script
// engine verifying both inputs.
func BenchmarkBuildSignAssemble2In(b *testing.B) {
	net := &chaincfg.RegressionNetParams
	w, dest := newWallet(b, net), newWallet(b, net)
	var utxos []UTXO
	for i := 0; i < 100; i++ {
		utxos = append(utxos, fakeUTXO(w, byte(i), 40_000+int64(i)))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 60_000, FeeRate: 3, UTXOs: utxos})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := u.Assemble(w.sign(b, u)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify2In: the txscript engine check alone.
func BenchmarkVerify2In(b *testing.B) {
	net := &chaincfg.RegressionNetParams
	w, dest := newWallet(b, net), newWallet(b, net)
	u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 60_000, FeeRate: 3, UTXOs: []UTXO{fakeUTXO(w, 1, 40_000), fakeUTXO(w, 2, 50_000)}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := u.Assemble(w.sign(b, u))
	if err != nil {
		b.Fatal(err)
	}
	tx, prev := s.Tx(), u.Prevouts()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Verify(tx, prev); err != nil {
			b.Fatal(err)
		}
	}
}
