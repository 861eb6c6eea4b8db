package btc

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/amount/amounttest"
)

type wallet struct {
	key  *btcec.PrivateKey
	pub  []byte
	addr string
	pk   []byte
}

func newWallet(t testing.TB, net *chaincfg.Params) wallet {
	t.Helper()
	k, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := k.PubKey().SerializeCompressed()
	a, err := WalletAddress(pub, net)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := txscript.PayToAddrScript(a)
	return wallet{key: k, pub: pub, addr: a.EncodeAddress(), pk: pk}
}

// sign produces per-input (r, s) the way a threshold signer would, with
// btcec rather than any btcd signing helper.
func (w wallet) sign(t testing.TB, u *Unsigned) []Signature {
	t.Helper()
	digests, err := u.SigHashes()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]Signature, len(digests))
	for i, d := range digests {
		c := ecdsa.SignCompact(w.key, d[:], true)
		out[i] = Signature{R: new(big.Int).SetBytes(c[1:33]), S: new(big.Int).SetBytes(c[33:65])}
	}
	return out
}

func fakeUTXO(w wallet, seed byte, value int64) UTXO {
	var h chainhash.Hash
	h[0] = seed
	return UTXO{OutPoint: wire.OutPoint{Hash: h, Index: uint32(seed)}, Value: value, PkScript: w.pk, Confirmations: 10}
}

func TestWalletAddressVectors(t *testing.T) {
	// BIP-173's example key (the generator point G).
	pub, _ := hex.DecodeString("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")
	want := map[string]string{
		"mainnet":  "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
		"testnet3": "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
		"signet":   "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
		"regtest":  "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
	}
	for name, w := range want {
		net, err := Network(name)
		if err != nil {
			t.Fatal(err)
		}
		a, err := WalletAddress(pub, net)
		if err != nil || a.EncodeAddress() != w {
			t.Fatalf("%s: %v %v, want %s", name, a, err, w)
		}
		if _, err := ParseAddress(w, net); err != nil {
			t.Fatalf("%s: own address refused: %v", name, err)
		}
	}
	if _, err := Network("litecoin"); !errors.Is(err, ErrUnknownNetwork) {
		t.Fatal(err)
	}
	uncompressed, _ := btcec.ParsePubKey(pub)
	for _, bad := range [][]byte{nil, uncompressed.SerializeUncompressed(), append([]byte{5}, bytes.Repeat([]byte{2}, 32)...)} {
		if _, err := WalletAddress(bad, &chaincfg.MainNetParams); !errors.Is(err, ErrBadPublicKey) {
			t.Fatalf("key %x: %v", bad, err)
		}
	}
}

func TestParseAddress(t *testing.T) {
	main, test, reg := &chaincfg.MainNetParams, &chaincfg.TestNet3Params, &chaincfg.RegressionNetParams
	ok := []struct {
		s   string
		net *chaincfg.Params
	}{
		{"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", main},                     // P2WPKH
		{"BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", main},                     // upper case bech32
		{"bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3", main}, // P2WSH
		{"bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", main}, // P2TR
		{"1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", main},                             // P2PKH
		{"3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", main},                             // P2SH
		{"tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", test},                     // P2WPKH testnet
		{"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", reg},                    // P2WPKH regtest
		{"tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", test}, // P2WSH testnet
		{"mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", test},                             // P2PKH testnet
	}
	for _, c := range ok {
		if _, err := ParseAddress(c.s, c.net); err != nil {
			t.Fatalf("%s on %s: %v", c.s, c.net.Name, err)
		}
	}
	bad := []struct {
		s    string
		net  *chaincfg.Params
		want string
	}{
		{"tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", main, "is a signet/testnet3 address"}, // testnet address, mainnet wallet
		{"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", test, ""},                             // mainnet address, testnet wallet
		{"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", main, ""},                           // regtest address, mainnet wallet
		{"mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", main, "is a regtest/signet/testnet3 address"}, // testnet P2PKH, mainnet wallet
		{"1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", test, "is a mainnet address"},                 // mainnet P2PKH, testnet wallet
		{"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", main, ""},                             // bad bech32 checksum
		{"1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", main, ""},                                     // bad base58 checksum
		{"0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798", main, ""},     // bare pubkey
		{"", main, ""},
		{"bc1", main, ""},
	}
	for _, c := range bad {
		_, err := ParseAddress(c.s, c.net)
		if !errors.Is(err, ErrBadAddress) || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "btc: ") {
			t.Fatalf("%q on %s: %v", c.s, c.net.Name, err)
		}
	}
}

func TestParseBTC(t *testing.T) {
	if v, err := ParseBTC("0.00000001"); err != nil || v != 1 {
		t.Fatal(v, err)
	}
	if v, err := ParseBTC("21000000"); err != nil || v != 2_100_000_000_000_000 {
		t.Fatal(v, err)
	}
	for s, want := range map[string]error{
		"-1":          amount.ErrNegative,
		"21000000.01": amount.ErrOverflow,
		"1e3":         amount.ErrMalformed,
		"0.000000001": amount.ErrTooPrecise,
	} {
		if _, err := ParseBTC(s); !errors.Is(err, want) {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestBuildSelectsChangeAndDust covers coin selection: two inputs with
// change, the fee covering the requested rate, dust change folded into
// the fee, and a typed insufficient-funds error.
func TestBuildSelectsChangeAndDust(t *testing.T) {
	net := &chaincfg.RegressionNetParams
	w := newWallet(t, net)
	dest := newWallet(t, net)
	utxos := []UTXO{fakeUTXO(w, 1, 40_000), fakeUTXO(w, 2, 50_000), fakeUTXO(w, 3, 10_000)}

	u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 60_000, FeeRate: 10, UTXOs: utxos})
	if err != nil {
		t.Fatal(err)
	}
	d := u.Description()
	if len(d.Inputs) != 2 || len(d.Outputs) != 2 || !d.Outputs[1].Change || d.Outputs[0].Change {
		t.Fatalf("description %+v", d)
	}
	if sp := u.Spent(); len(sp) != 2 || sp[0] != utxos[1].OutPoint || sp[1] != utxos[0].OutPoint {
		t.Fatalf("spent %v (largest first)", sp)
	}
	if d.Fee != d.VSize*10 || d.Outputs[0].Value != 60_000 || d.Outputs[1].Value != 90_000-60_000-d.Fee {
		t.Fatalf("fee %d vsize %d outputs %+v", d.Fee, d.VSize, d.Outputs)
	}
	signed, err := u.Assemble(w.sign(t, u))
	if err != nil {
		t.Fatal(err)
	}
	sd := signed.Description()
	if sd.VSize > d.VSize || sd.VSize < d.VSize-2 || sd.Fee < sd.VSize*10 {
		t.Fatalf("estimated %d vB, real %d vB, fee %d", d.VSize, sd.VSize, sd.Fee)
	}
	if !strings.Contains(d.Text(), "(change)") || !strings.Contains(d.Text(), dest.addr) {
		t.Fatalf("text %s", d.Text())
	}

	// Change that would be dust goes to the fee: 1 input of 50,000; fee
	// with change at 10 sat/vB is 1,410, so change would be 90 sat.
	one := []UTXO{fakeUTXO(w, 2, 50_000)}
	noChangeFee := EstimateVSize(1, []*wire.TxOut{wire.NewTxOut(1, w.pk)}) * 10
	u2, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 50_000 - noChangeFee - 100, FeeRate: 10, UTXOs: one})
	if err != nil {
		t.Fatal(err)
	}
	if d2 := u2.Description(); len(d2.Outputs) != 1 || d2.Fee != noChangeFee+100 {
		t.Fatalf("dust change not folded into fee: %+v", d2)
	}

	_, err = Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 100_000, FeeRate: 10, UTXOs: utxos})
	var ife *InsufficientFundsError
	if !errors.As(err, &ife) || !errors.Is(err, ErrInsufficientFunds) || ife.Available != 100_000 || ife.Needed <= 100_000 {
		t.Fatalf("insufficient: %v", err)
	}
	for name, in := range map[string]Intent{
		"wrong network dest": {Net: net, WalletPubKey: w.pub, To: "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", Amount: 1000, FeeRate: 1, UTXOs: utxos},
		"zero amount":        {Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 0, FeeRate: 1, UTXOs: utxos},
		"negative amount":    {Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: -5, FeeRate: 1, UTXOs: utxos},
		"too much":           {Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 21_000_000*1e8 + 1, FeeRate: 1, UTXOs: utxos},
		"fee rate 0":         {Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 1000, FeeRate: 0, UTXOs: utxos},
		"fee rate huge":      {Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 1000, FeeRate: MaxFeeRate + 1, UTXOs: utxos},
		"dust":               {Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 293, FeeRate: 1, UTXOs: utxos},
		"foreign utxo":       {Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 1000, FeeRate: 1, UTXOs: []UTXO{fakeUTXO(dest, 1, 5000)}},
		"duplicate utxo":     {Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 1000, FeeRate: 1, UTXOs: []UTXO{utxos[0], utxos[0]}},
	} {
		if _, err := Build(in); err == nil || !strings.HasPrefix(err.Error(), "btc: ") {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestAssembleRejectsBadSignatures(t *testing.T) {
	net := &chaincfg.RegressionNetParams
	w, other, dest := newWallet(t, net), newWallet(t, net), newWallet(t, net)
	u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 60_000, FeeRate: 2, UTXOs: []UTXO{fakeUTXO(w, 1, 40_000), fakeUTXO(w, 2, 50_000)}})
	if err != nil {
		t.Fatal(err)
	}
	good := w.sign(t, u)
	n := btcec.S256().N
	cases := map[string]func() []Signature{
		"count":   func() []Signature { return good[:1] },
		"high S":  func() []Signature { return []Signature{good[0], {R: good[1].R, S: new(big.Int).Sub(n, good[1].S)}} },
		"zero r":  func() []Signature { return []Signature{{R: new(big.Int), S: good[0].S}, good[1]} },
		"r = n":   func() []Signature { return []Signature{{R: n, S: good[0].S}, good[1]} },
		"swapped": func() []Signature { return []Signature{good[1], good[0]} },
		"other":   func() []Signature { return other.sign(t, u) },
		"nil":     func() []Signature { return []Signature{{}, good[1]} },
	}
	for name, sigs := range cases {
		if _, err := u.Assemble(sigs()); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	s, err := u.Assemble(good)
	if err != nil {
		t.Fatal(err)
	}
	// The engine check also catches a witness tampered after assembly.
	tx := s.Tx()
	tx.TxOut[0].Value--
	if err := Verify(tx, u.Prevouts()); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered tx verified: %v", err)
	}
}

// TestCompareDetectsChanges: any change to the transaction a coordinator
// hands a signer shows up as a named field and a different payload hash.
func TestCompareDetectsChanges(t *testing.T) {
	net := &chaincfg.RegressionNetParams
	w, dest, evil := newWallet(t, net), newWallet(t, net), newWallet(t, net)
	utxos := []UTXO{fakeUTXO(w, 1, 40_000), fakeUTXO(w, 2, 50_000)}
	u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 60_000, FeeRate: 2, UTXOs: utxos})
	if err != nil {
		t.Fatal(err)
	}
	approved := u.Description()
	mutations := map[string]func(tx *wire.MsgTx, prev []*wire.TxOut){
		"outputs[0].address": func(tx *wire.MsgTx, _ []*wire.TxOut) { tx.TxOut[0].PkScript = evil.pk },
		"outputs[0].value":   func(tx *wire.MsgTx, _ []*wire.TxOut) { tx.TxOut[0].Value++ },
		"outputs[1].address": func(tx *wire.MsgTx, _ []*wire.TxOut) { tx.TxOut[1].PkScript = evil.pk },
		"outputs": func(tx *wire.MsgTx, _ []*wire.TxOut) {
			tx.TxOut[1].Value -= 1000
			tx.TxOut = append(tx.TxOut, wire.NewTxOut(1000, evil.pk))
		},
		"inputs[0].outpoint": func(tx *wire.MsgTx, _ []*wire.TxOut) { tx.TxIn[0].PreviousOutPoint.Index++ },
		"inputs[1].sequence": func(tx *wire.MsgTx, _ []*wire.TxOut) { tx.TxIn[1].Sequence = 0 },
		"inputs[0].value":    func(_ *wire.MsgTx, prev []*wire.TxOut) { prev[0].Value++ },
		"locktime":           func(tx *wire.MsgTx, _ []*wire.TxOut) { tx.LockTime = 5 },
		"version":            func(tx *wire.MsgTx, _ []*wire.TxOut) { tx.Version = 1 },
	}
	for field, mutate := range mutations {
		tx, prev := u.Tx(), u.Prevouts()
		mutate(tx, prev)
		m, err := checkUnsigned(net, w.pub, tx, prev)
		if err != nil {
			t.Fatalf("%s: %v", field, err)
		}
		err = Compare(approved, m.Description())
		var me *MismatchError
		if !errors.As(err, &me) || me.Field != field || !errors.Is(err, ErrMismatch) {
			t.Fatalf("mutation %s: %v", field, err)
		}
		if m.PayloadHash() == u.PayloadHash() {
			t.Fatalf("mutation %s: same payload hash", field)
		}
	}
	other := approved
	other.Network = "mainnet"
	if err := Compare(other, approved); err == nil || !strings.Contains(err.Error(), "network") {
		t.Fatal(err)
	}
}

// TestPSBTRoundTripOffline: packet -> bytes/base64 -> parse -> signatures
// -> finalize -> extract gives exactly the transaction Assemble gives.
func TestPSBTRoundTripOffline(t *testing.T) {
	net := &chaincfg.TestNet3Params
	w, dest := newWallet(t, net), newWallet(t, net)
	u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 60_000, FeeRate: 3, UTXOs: []UTXO{fakeUTXO(w, 1, 40_000), fakeUTXO(w, 2, 50_000)}})
	if err != nil {
		t.Fatal(err)
	}
	sigs := w.sign(t, u)
	direct, err := u.Assemble(sigs)
	if err != nil {
		t.Fatal(err)
	}
	viaPSBT := psbtRoundTrip(t, u, w, sigs)
	if !bytes.Equal(direct.Bytes(), viaPSBT.Bytes()) {
		t.Fatal("PSBT path gives a different transaction")
	}
	// A packet for another wallet is refused.
	p, _ := u.PSBT()
	if _, err := UnsignedFromPSBT(p, net, dest.pub); !errors.Is(err, ErrMalformedTx) {
		t.Fatalf("foreign wallet: %v", err)
	}
	if _, err := UnsignedFromPSBT(p, &chaincfg.MainNetParams, w.pub); err != nil {
		// Network is not in a PSBT; the wallet script is the same on every
		// network, so this succeeds and Description shows mainnet.
		t.Fatalf("network: %v", err)
	}
}

func psbtRoundTrip(t *testing.T, u *Unsigned, w wallet, sigs []Signature) *Signed {
	t.Helper()
	p, err := u.PSBT()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := EncodePSBT(p)
	if err != nil {
		t.Fatal(err)
	}
	b64, err := p.B64Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range [][]byte{bin, []byte(b64)} {
		q, err := ParsePSBT(enc)
		if err != nil {
			t.Fatal(err)
		}
		qu, err := UnsignedFromPSBT(q, u.Net(), w.pub)
		if err != nil {
			t.Fatal(err)
		}
		if qu.PayloadHash() != u.PayloadHash() {
			t.Fatal("payload hash changed through PSBT")
		}
	}
	q, _ := ParsePSBT(bin)
	qu, _ := UnsignedFromPSBT(q, u.Net(), w.pub)
	if err := AddSignatures(q, qu, sigs); err != nil {
		t.Fatal(err)
	}
	// The partially signed packet still serialises and parses.
	mid, err := EncodePSBT(q)
	if err != nil {
		t.Fatal(err)
	}
	q2, err := ParsePSBT(mid)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Finalize(q2, qu)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMalformedInputs(t *testing.T) {
	net := &chaincfg.RegressionNetParams
	w, dest := newWallet(t, net), newWallet(t, net)
	u, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 60_000, FeeRate: 3, UTXOs: []UTXO{fakeUTXO(w, 1, 40_000), fakeUTXO(w, 2, 50_000)}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := u.Assemble(w.sign(t, u))
	if err != nil {
		t.Fatal(err)
	}
	raw := s.Bytes()
	pu, err := ParseUnsigned(u.Bytes(), w.pub)
	if err != nil || pu.PayloadHash() != u.PayloadHash() || Compare(u.Description(), pu.Description()) != nil {
		t.Fatalf("ParseUnsigned round trip: %v", err)
	}
	ub := u.Bytes()
	for name, b := range map[string][]byte{
		"short":         ub[:3],
		"unknown magic": append([]byte{1, 2, 3, 4}, ub[4:]...),
		"truncated":     ub[:len(ub)-1],
		"trailing":      append(bytes.Clone(ub), 0),
		"signed":        append(bytes.Clone(ub[:4]), raw...),
	} {
		if _, err := ParseUnsigned(b, w.pub); !errors.Is(err, ErrMalformedTx) {
			t.Fatalf("ParseUnsigned(%s): %v", name, err)
		}
	}
	if _, err := ParseUnsigned(ub, dest.pub); !errors.Is(err, ErrMalformedTx) {
		t.Fatalf("ParseUnsigned for another wallet: %v", err)
	}
	if back, err := u.VerifySigned(raw); err != nil || back.TxID() != s.TxID() {
		t.Fatalf("VerifySigned: %v", err)
	}
	tampered := s.Tx()
	tampered.TxIn[0].Witness[0][10] ^= 1
	var tb bytes.Buffer
	_ = tampered.Serialize(&tb)
	if _, err := u.VerifySigned(tb.Bytes()); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered witness: %v", err)
	}
	other, err := Build(Intent{Net: net, WalletPubKey: w.pub, To: dest.addr, Amount: 50_000, FeeRate: 3, UTXOs: []UTXO{fakeUTXO(w, 1, 40_000), fakeUTXO(w, 2, 50_000)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.VerifySigned(raw); !errors.Is(err, ErrMismatch) {
		t.Fatalf("other tx: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not a transaction"),
		"truncated": raw[:len(raw)-3],
		"trailing":  append(bytes.Clone(raw), 0),
		"huge":      make([]byte, maxRawTx+1),
	} {
		if _, err := ParseRawTx(b); !errors.Is(err, ErrMalformedTx) {
			t.Fatalf("raw %s: %v", name, err)
		}
	}
	d, err := DescribeRawTx(raw, net, w.pub, nil)
	if err != nil || d.Fee != -1 || !d.Signed || !d.Outputs[1].Change || d.Inputs[0].Value != -1 {
		t.Fatalf("raw description %+v %v", d, err)
	}
	prev := map[wire.OutPoint]*wire.TxOut{}
	for i, op := range u.Spent() {
		prev[op] = u.Prevouts()[i]
	}
	if d, err := DescribeRawTx(raw, net, w.pub, prev); err != nil || Compare(u.Description(), d) != nil {
		t.Fatalf("raw description with prevouts %+v %v", d, err)
	}
	p, _ := u.PSBT()
	bin, _ := EncodePSBT(p)
	for name, b := range map[string][]byte{
		"empty":        nil,
		"not base64":   []byte("cHNidP8!!!"),
		"magic only":   []byte("psbt\xff"),
		"truncated":    bin[:len(bin)-2],
		"trailing":     append(bytes.Clone(bin), 0),
		"bad magic":    append([]byte("psbx\xff"), bin[5:]...),
		"signed tx in": append([]byte("psbt\xff\x00"), raw...),
	} {
		if _, err := ParsePSBT(b); !errors.Is(err, ErrMalformedTx) {
			t.Fatalf("psbt %s: %v", name, err)
		}
	}
	// A packet without witness UTXOs cannot be described for signing.
	p.Inputs[0].WitnessUtxo = nil
	if _, err := UnsignedFromPSBT(p, net, w.pub); !errors.Is(err, ErrMalformedTx) {
		t.Fatalf("no witness utxo: %v", err)
	}
}

// TestParseBTCAmountsTable runs the rows of the shared amount table that
// have 8 decimals through ParseBTC: the same acceptance, value and
// sentinel as amount.ParseUnits.
func TestParseBTCAmountsTable(t *testing.T) {
	n := 0
	for _, c := range amounttest.Units {
		if c.Decimals != 8 {
			continue
		}
		n++
		v, err := ParseBTC(c.In)
		if c.Err != nil {
			if !errors.Is(err, c.Err) {
				t.Errorf("ParseBTC(%q): error %v, want %v", c.In, err, c.Err)
			}
			continue
		}
		if err != nil || big.NewInt(v).String() != c.Base {
			t.Errorf("ParseBTC(%q) = %d, %v; want %s", c.In, v, err, c.Base)
		}
	}
	if n < 10 {
		t.Fatalf("only %d rows with 8 decimals", n)
	}
}
