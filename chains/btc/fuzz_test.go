package btc

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custody-dev/custody/chains"
)

// fuzzWallet is a fixed key so that seeds built with it exercise the
// wallet-matching paths.
func fuzzWallet() wallet {
	seed := sha256.Sum256([]byte("custody chains/btc fuzz wallet"))
	k, _ := btcec.PrivKeyFromBytes(seed[:])
	pub := k.PubKey().SerializeCompressed()
	a, _ := WalletAddress(pub, &chaincfg.RegressionNetParams)
	pk, _ := txscript.PayToAddrScript(a)
	return wallet{key: k, pub: pub, addr: a.EncodeAddress(), pk: pk}
}

// FuzzParseRawTx: no panics; what parses re-serialises to a transaction
// with the same txid and can be described.
func FuzzParseRawTx(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	w := fuzzWallet()
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := ParseRawTx(b)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := tx.Serialize(&buf); err != nil {
			t.Fatal(err)
		}
		again, err := ParseRawTx(buf.Bytes())
		if err != nil || again.TxHash() != tx.TxHash() {
			t.Fatalf("re-parse: %v", err)
		}
		if _, err := DescribeRawTx(b, &chaincfg.RegressionNetParams, w.pub, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParsePSBT: no panics through parse, wallet check, description,
// hashing and re-encoding.
func FuzzParsePSBT(f *testing.F) {
	f.Add([]byte("psbt\xff"))
	w := fuzzWallet()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePSBT(b)
		if err != nil {
			return
		}
		if _, err := EncodePSBT(p); err != nil {
			return
		}
		u, err := UnsignedFromPSBT(p, &chaincfg.RegressionNetParams, w.pub)
		if err != nil {
			return
		}
		_ = u.Description().Text()
		_ = u.PayloadHash()
		if _, err := u.SigHashes(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseUnsigned: no panics, through ParseUnsigned and the member
// adapter; what parses is canonical and describable, and what the adapter
// accepts has one digest and one spend key per input, one payee, and a fee
// that is inputs minus outputs.
func FuzzParseUnsigned(f *testing.F) {
	f.Add([]byte{0xfa, 0xbf, 0xb5, 0xda})
	w := fuzzWallet()
	c, err := NewChain(map[string]string{"devnet": "regtest"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, err := c.ParseUnsigned("devnet", b); err == nil {
			tr := got.Transfer()
			d := got.Digests()
			if len(d) == 0 || len(d) != len(tr.Outpoints) || len(got.SpendKeys("w")) != len(d) || tr.To == "" || tr.Amount.Sign() == 0 || tr.VSize <= 0 {
				t.Fatalf("accepted %x as %+v with %d digests", b, tr, len(d))
			}
			_ = got.Describe()
			if _, err := got.Assemble(w.pub, make([]chains.Signature, len(d))); err == nil {
				t.Fatal("assembled zero signatures")
			}
		}
		u, err := ParseUnsigned(b, w.pub)
		if err != nil {
			return
		}
		if !bytes.Equal(u.Bytes(), b) {
			t.Fatal("accepted non-canonical bytes")
		}
		if _, err := u.SigHashes(); err != nil {
			t.Fatal(err)
		}
		_ = u.Description().Text()
	})
}

// TestWriteFuzzSeeds regenerates the committed seed corpora when
// CUSTODY_WRITE_SEEDS=1; otherwise it checks they exist.
func TestWriteFuzzSeeds(t *testing.T) {
	dirs := []string{"FuzzParseRawTx", "FuzzParsePSBT", "FuzzParseUnsigned"}
	if os.Getenv("CUSTODY_WRITE_SEEDS") != "1" {
		for _, dir := range dirs {
			m, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
			if len(m) < 3 {
				t.Fatalf("seed corpus %s has %d files; run with CUSTODY_WRITE_SEEDS=1", dir, len(m))
			}
		}
		return
	}
	net := &chaincfg.RegressionNetParams
	w, dest := fuzzWallet(), fuzzWallet()
	dest.addr = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
	write := func(dir, name string, b []byte) {
		p := filepath.Join("testdata", "fuzz", dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, amount := range []int64{60_000, 30_000, 89_000} {
		u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: amount, FeeRate: 3, UTXOs: []UTXO{fakeUTXO(w, 1, 40_000), fakeUTXO(w, 2, 50_000)}})
		if err != nil {
			t.Fatal(err)
		}
		sigs := w.sign(t, u)
		s, err := u.Assemble(sigs)
		if err != nil {
			t.Fatal(err)
		}
		write("FuzzParseRawTx", fmt.Sprintf("signed%d", i), s.Bytes())
		var unsigned bytes.Buffer
		_ = u.Tx().Serialize(&unsigned)
		write("FuzzParseRawTx", fmt.Sprintf("unsigned%d", i), unsigned.Bytes())
		write("FuzzParseUnsigned", fmt.Sprintf("seed%d", i), u.Bytes())
		p, _ := u.PSBT()
		bin, _ := EncodePSBT(p)
		write("FuzzParsePSBT", fmt.Sprintf("unsigned%d", i), bin)
		if err := AddSignatures(p, u, sigs); err != nil {
			t.Fatal(err)
		}
		bin, _ = EncodePSBT(p)
		write("FuzzParsePSBT", fmt.Sprintf("partial%d", i), bin)
		b64, _ := p.B64Encode()
		write("FuzzParsePSBT", fmt.Sprintf("base64_%d", i), []byte(b64))
	}
	// Shapes the member adapter refuses, and one it signs.
	one, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 30_000, FeeRate: 3, UTXOs: []UTXO{fakeUTXO(w, 1, 40_000)}})
	if err != nil {
		t.Fatal(err)
	}
	write("FuzzParseUnsigned", "one_input", one.Bytes())
	stranger := fuzzWallet()
	stranger.pk = append([]byte{0x00, 0x14}, make([]byte, 20)...)
	tx, prev := spend(w, []int64{50_000}, payTo(t, dest.addr, 30_000), wire.NewTxOut(5_000, stranger.pk), wire.NewTxOut(10_000, w.pk))
	write("FuzzParseUnsigned", "foreign_change", encodePayload(net, tx, prev))
	tx, prev = spend(w, []int64{50_000, 20_000}, payTo(t, dest.addr, 30_000))
	prev[1] = wire.NewTxOut(20_000, append([]byte{0x76, 0xa9, 0x14}, append(make([]byte, 20), 0x88, 0xac)...))
	write("FuzzParseUnsigned", "p2pkh_input", encodePayload(net, tx, prev))
	write("FuzzParseUnsigned", "testnet3", append([]byte{0x0b, 0x11, 0x09, 0x07}, one.Bytes()[4:]...))
}
