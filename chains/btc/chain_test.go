package btc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
)

const regtestDest = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"

func devnetChain(t testing.TB) *Chain {
	t.Helper()
	c, err := NewChain(map[string]string{"devnet": "regtest", "test": "testnet3"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chainSigs signs digests with plain btcec (RFC 6979), as a threshold
// engine would hand back (r, s) per digest.
func chainSigs(w wallet, digests [][32]byte) []chains.Signature {
	out := make([]chains.Signature, len(digests))
	for i, d := range digests {
		c := ecdsa.SignCompact(w.key, d[:], true)
		copy(out[i].R[:], c[1:33])
		copy(out[i].S[:], c[33:65])
		out[i].V = (c[0] - 27) & 1
	}
	return out
}

// encodePayload writes the canonical unsigned form for any transaction and
// prevouts, so tests can store shapes Build never makes.
func encodePayload(net *chaincfg.Params, tx *wire.MsgTx, prev []*wire.TxOut) []byte {
	var b bytes.Buffer
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], uint32(net.Net))
	b.Write(magic[:])
	_ = tx.SerializeNoWitness(&b)
	for _, p := range prev {
		_ = wire.WriteTxOut(&b, 0, 0, p)
	}
	return b.Bytes()
}

func payloadOf(tx *wire.MsgTx, prev []*wire.TxOut) []byte {
	return encodePayload(&chaincfg.RegressionNetParams, tx, prev)
}

// spend is a transaction as Build shapes it (version, sequence, lock
// time), over inputs of w with arbitrary outputs.
func spend(w wallet, values []int64, outs ...*wire.TxOut) (*wire.MsgTx, []*wire.TxOut) {
	tx := wire.NewMsgTx(TxVersion)
	prev := make([]*wire.TxOut, len(values))
	for i, v := range values {
		u := fakeUTXO(w, byte(i+1), v)
		in := wire.NewTxIn(&u.OutPoint, nil, nil)
		in.Sequence = Sequence
		tx.AddTxIn(in)
		prev[i] = wire.NewTxOut(v, bytes.Clone(w.pk))
	}
	for _, o := range outs {
		tx.AddTxOut(o)
	}
	return tx, prev
}

func payTo(t testing.TB, addr string, v int64) *wire.TxOut {
	t.Helper()
	a, err := btcutil.DecodeAddress(addr, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := txscript.PayToAddrScript(a)
	return wire.NewTxOut(v, pk)
}

// TestChainSignsP2WPKH: a built spend of one and of two inputs parses
// through the member adapter, reports what it does, is signed per digest
// with btcec, assembles, and verifies input by input with txscript.
func TestChainSignsP2WPKH(t *testing.T) {
	net := &chaincfg.RegressionNetParams
	c := devnetChain(t)
	w := newWallet(t, net)
	for _, tc := range []struct {
		name   string
		utxos  []UTXO
		amount int64
		ins    int
	}{
		{"one input", []UTXO{fakeUTXO(w, 1, 100_000)}, 60_000, 1},
		{"two inputs", []UTXO{fakeUTXO(w, 1, 40_000), fakeUTXO(w, 2, 50_000)}, 60_000, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: regtestDest, Amount: tc.amount, FeeRate: 5, UTXOs: tc.utxos})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.ParseUnsigned("devnet", u.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if got.PayloadHash() != u.PayloadHash() {
				t.Fatal("payload hash differs from the builder's")
			}
			tr := got.Transfer()
			d := u.Description()
			var wantOps []string
			for _, op := range u.Spent() {
				wantOps = append(wantOps, op.String())
			}
			if tr.To != regtestDest || tr.Asset != "BTC" || tr.Amount != amount.FromUint64(uint64(tc.amount)) ||
				tr.MaxFee != amount.FromUint64(uint64(d.Fee)) || tr.Nonce != nil || strings.Join(tr.Outpoints, ",") != strings.Join(wantOps, ",") {
				t.Fatalf("transfer %+v, description %+v", tr, d)
			}
			if len(tr.Outpoints) != tc.ins || tr.VSize != d.VSize || tr.VSize <= 0 || d.Fee > 5*tr.VSize+DustLimit(wire.NewTxOut(0, w.pk)) {
				t.Fatalf("%d outpoints, vsize %d, fee %d", len(tr.Outpoints), tr.VSize, d.Fee)
			}
			keys := got.SpendKeys("btc-hot")
			for i, k := range keys {
				if k != (chains.SpendKey{Kind: chains.KindBTCOutpoint, Scope: "btc-hot", ID: wantOps[i]}) {
					t.Fatalf("spend key %d: %+v", i, k)
				}
			}
			digests := got.Digests()
			want, _ := u.SigHashes()
			if len(digests) != tc.ins || len(keys) != tc.ins {
				t.Fatalf("%d digests, %d keys for %d inputs", len(digests), len(keys), tc.ins)
			}
			for i := range want {
				if digests[i] != want[i] {
					t.Fatalf("digest %d differs from BIP-143", i)
				}
			}
			if !strings.Contains(got.Describe(), regtestDest) {
				t.Fatalf("description: %s", got.Describe())
			}

			signed, err := got.Assemble(w.pub, chainSigs(w, digests))
			if err != nil {
				t.Fatal(err)
			}
			if err := signed.Verify(got.PayloadHash(), w.pub); err != nil {
				t.Fatal(err)
			}
			tx, err := ParseRawTx(signed.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if signed.Hash() != u.TxID().String() {
				t.Fatalf("hash %s, txid %s", signed.Hash(), u.TxID())
			}
			// The script engine on its own, input by input.
			fetch := txscript.NewMultiPrevOutFetcher(nil)
			for i, in := range tx.TxIn {
				fetch.AddPrevOut(in.PreviousOutPoint, u.Prevouts()[i])
			}
			hashes := txscript.NewTxSigHashes(tx, fetch)
			for i, p := range u.Prevouts() {
				vm, err := txscript.NewEngine(p.PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, p.Value, fetch)
				if err != nil {
					t.Fatal(err)
				}
				if err := vm.Execute(); err != nil {
					t.Fatalf("input %d: %v", i, err)
				}
			}

			// A stored result verifies through the payload (SignedParser);
			// on its own it cannot, and says so.
			again, err := got.(chains.SignedParser).ParseSigned(signed.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if err := again.Verify(got.PayloadHash(), w.pub); err != nil {
				t.Fatal(err)
			}
			alone, err := c.ParseSigned("devnet", signed.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if err := alone.Verify(got.PayloadHash(), w.pub); !errors.Is(err, ErrNoPrevouts) {
				t.Fatalf("verify without prevouts: %v", err)
			}
			other := newWallet(t, net)
			if err := again.Verify(got.PayloadHash(), other.pub); !errors.Is(err, ErrMismatch) {
				t.Fatalf("verify under another key: %v", err)
			}
			if err := again.Verify([32]byte{1}, w.pub); !errors.Is(err, ErrMismatch) {
				t.Fatalf("verify for another payload: %v", err)
			}
			if _, err := c.ParseSigned("devnet", append(signed.Bytes(), 0)); !errors.Is(err, ErrMalformedTx) {
				t.Fatalf("trailing byte: %v", err)
			}
			if _, err := c.ParseSigned("devnet", u.Bytes()[4:]); err == nil {
				t.Fatal("unsigned transaction parsed as signed")
			}
		})
	}
	if a, err := c.Address("devnet", w.pub); err != nil || a != w.addr {
		t.Fatalf("address %q, %v; want %s", a, err, w.addr)
	}
	if _, err := c.Address("mainnet", w.pub); !errors.Is(err, ErrUnknownNetwork) {
		t.Fatalf("unconfigured network: %v", err)
	}
	if _, err := NewChain(map[string]string{"x": "litecoin"}); !errors.Is(err, ErrUnknownNetwork) {
		t.Fatalf("unknown parameters: %v", err)
	}
}

// TestChainRefusesPayloads: what the adapter refuses before anything is
// signed, each with the error a caller branches on.
func TestChainRefusesPayloads(t *testing.T) {
	net := &chaincfg.RegressionNetParams
	c := devnetChain(t)
	w, stranger := newWallet(t, net), newWallet(t, net)
	dest := payTo(t, regtestDest, 30_000)
	change := wire.NewTxOut(10_000, w.pk)
	foreign := payTo(t, stranger.addr, 5_000)

	withPrev := func(tx *wire.MsgTx, prev []*wire.TxOut, i int, pk []byte) []byte {
		prev[i] = wire.NewTxOut(prev[i].Value, pk)
		return encodePayload(net, tx, prev)
	}
	p2pkh, _ := btcutil.NewAddressPubKeyHash(btcutil.Hash160(w.pub), net)
	p2pkhScript, _ := txscript.PayToAddrScript(p2pkh)
	valid := payloadOf(spend(w, []int64{50_000}, dest, change))
	if _, err := c.ParseUnsigned("devnet", valid); err != nil {
		t.Fatalf("the baseline must parse: %v", err)
	}

	for _, tc := range []struct {
		name    string
		network string
		payload []byte
		want    error
		say     string
	}{
		{"change to a foreign address", "devnet", payloadOf(spend(w, []int64{50_000}, dest, foreign, change)), ErrForeignOutput, stranger.addr},
		{"two destination outputs", "devnet", payloadOf(spend(w, []int64{50_000}, dest, payTo(t, regtestDest, 5_000))), ErrForeignOutput, regtestDest},
		{"no destination", "devnet", payloadOf(spend(w, []int64{50_000}, change)), ErrNotSignedOnline, "no output"},
		{"two change outputs", "devnet", payloadOf(spend(w, []int64{50_000}, dest, change, wire.NewTxOut(1_000, w.pk))), ErrNotSignedOnline, "second change"},
		{"dust change", "devnet", payloadOf(spend(w, []int64{50_000}, dest, wire.NewTxOut(100, w.pk))), ErrNotSignedOnline, "dust"},
		{"non-P2WPKH input", "devnet", func() []byte {
			tx, prev := spend(w, []int64{50_000, 20_000}, dest, change)
			return withPrev(tx, prev, 1, p2pkhScript)
		}(), ErrNotSignedOnline, "input 1"},
		{"inputs of two addresses", "devnet", func() []byte {
			tx, prev := spend(w, []int64{50_000, 20_000}, dest, change)
			return withPrev(tx, prev, 1, stranger.pk)
		}(), ErrMalformedTx, "input 1 does not spend the wallet"},
		{"outputs over inputs", "devnet", payloadOf(spend(w, []int64{20_000}, dest)), ErrMalformedTx, "exceed"},
		{"lock time", "devnet", func() []byte {
			tx, prev := spend(w, []int64{50_000}, dest, change)
			tx.LockTime = 900_000
			return encodePayload(net, tx, prev)
		}(), ErrNotSignedOnline, "lock time"},
		{"final sequence", "devnet", func() []byte {
			tx, prev := spend(w, []int64{50_000}, dest, change)
			tx.TxIn[0].Sequence = wire.MaxTxInSequenceNum
			return encodePayload(net, tx, prev)
		}(), ErrNotSignedOnline, "sequence"},
		{"wrong network", "test", valid, ErrMismatch, "regtest"},
		{"unconfigured network", "mainnet", valid, ErrUnknownNetwork, "mainnet"},
		{"trailing byte", "devnet", append(bytes.Clone(valid), 0), ErrMalformedTx, "trailing"},
		{"non-canonical varint", "devnet", func() []byte {
			// Input count 1 written as 0xfd 0x01 0x00.
			b := bytes.Clone(valid)
			return append(append(b[:8:8], 0xfd, 0x01, 0x00), b[9:]...)
		}(), ErrMalformedTx, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ParseUnsigned(tc.network, tc.payload)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.say) {
				t.Fatalf("%v; want %v naming %q", err, tc.want, tc.say)
			}
		})
	}
}

// TestChainRefusesSignatures: Assemble and Verify refuse high S, the wrong
// count, another key, and amounts that lie (txscript fails).
func TestChainRefusesSignatures(t *testing.T) {
	net := &chaincfg.RegressionNetParams
	c := devnetChain(t)
	w, other := newWallet(t, net), newWallet(t, net)
	tx, prev := spend(w, []int64{40_000, 50_000}, payTo(t, regtestDest, 60_000), wire.NewTxOut(29_000, w.pk))
	got, err := c.ParseUnsigned("devnet", encodePayload(net, tx, prev))
	if err != nil {
		t.Fatal(err)
	}
	sigs := chainSigs(w, got.Digests())

	high := append([]chains.Signature(nil), sigs...)
	var s btcec.ModNScalar
	s.SetByteSlice(high[1].S[:])
	s.Negate()
	high[1].S = s.Bytes()
	if _, err := got.Assemble(w.pub, high); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "high S") {
		t.Fatalf("high S: %v", err)
	}
	if _, err := got.Assemble(w.pub, sigs[:1]); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("one signature for two inputs: %v", err)
	}
	if _, err := got.Assemble(other.pub, chainSigs(other, got.Digests())); !errors.Is(err, ErrMismatch) {
		t.Fatalf("inputs not the key's: %v", err)
	}
	swapped := []chains.Signature{sigs[1], sigs[0]}
	if _, err := got.Assemble(w.pub, swapped); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("signatures in the wrong order: %v", err)
	}
	signed, err := got.Assemble(w.pub, sigs)
	if err != nil {
		t.Fatal(err)
	}

	// A high-S witness (the same signature, S negated) is refused by Verify
	// even though ECDSA accepts it.
	raw, _ := ParseRawTx(signed.Bytes())
	var r, hs btcec.ModNScalar
	r.SetByteSlice(sigs[0].R[:])
	hs.SetByteSlice(sigs[0].S[:])
	hs.Negate()
	raw.TxIn[0].Witness[0] = append(derHighS(r, hs), byte(txscript.SigHashAll))
	var hb bytes.Buffer
	_ = raw.Serialize(&hb)
	parsed, err := got.(chains.SignedParser).ParseSigned(hb.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Verify(got.PayloadHash(), w.pub); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("high-S witness: %v", err)
	}

	// The payload lies about input 0's amount: signatures over the true
	// amounts fail the script engine against it, and signatures over the
	// lie fail against the true amounts (what the network checks).
	liePrev := []*wire.TxOut{wire.NewTxOut(45_000, w.pk), prev[1]}
	lie, err := c.ParseUnsigned("devnet", encodePayload(net, tx, liePrev))
	if err != nil {
		t.Fatal(err)
	}
	asLie, err := lie.(chains.SignedParser).ParseSigned(signed.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := asLie.Verify(lie.PayloadHash(), w.pub); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "input 0") {
		t.Fatalf("true signatures against the lying amount: %v", err)
	}
	lied, err := lie.Assemble(w.pub, chainSigs(w, lie.Digests()))
	if err != nil {
		t.Fatal(err)
	}
	lt, _ := ParseRawTx(lied.Bytes())
	if err := Verify(lt, prev); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "input 0") {
		t.Fatalf("signatures over the lie against the true amounts: %v", err)
	}
}

// derHighS encodes (r, s) in DER without normalising s.
func derHighS(r, s btcec.ModNScalar) []byte {
	enc := func(x btcec.ModNScalar) []byte {
		b := x.Bytes()
		v := bytes.TrimLeft(b[:], "\x00")
		if v[0]&0x80 != 0 {
			v = append([]byte{0}, v...)
		}
		return append([]byte{0x02, byte(len(v))}, v...)
	}
	body := append(enc(r), enc(s)...)
	return append([]byte{0x30, byte(len(body))}, body...)
}
