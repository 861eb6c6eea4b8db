package eth

import (
	"bytes"
	"context"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/amount/amounttest"
	"github.com/custody-dev/custody/chains/eth/devtoken"
)

// signRSV signs digest the way a threshold signer hands back a signature:
// (r, s, recovery id), low-S. It uses btcec, not go-ethereum's tx signer.
func signRSV(t testing.TB, key *btcec.PrivateKey, digest [32]byte) (*big.Int, *big.Int, byte) {
	t.Helper()
	sig := becdsa.SignCompact(key, digest[:], false)
	return new(big.Int).SetBytes(sig[1:33]), new(big.Int).SetBytes(sig[33:65]), sig[0] - 27
}

func newKey(t testing.TB) (*btcec.PrivateKey, common.Address) {
	t.Helper()
	k, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := AddressFromPublicKey(k.PubKey().SerializeCompressed())
	if err != nil {
		t.Fatal(err)
	}
	return k, a
}

func TestAddressFromPublicKey(t *testing.T) {
	k, a := newKey(t)
	if want := crypto.PubkeyToAddress(k.ToECDSA().PublicKey); a != want {
		t.Fatalf("address %s, go-ethereum says %s", a.Hex(), want.Hex())
	}
	b, err := AddressFromPublicKey(k.PubKey().SerializeUncompressed())
	if err != nil || b != a {
		t.Fatalf("uncompressed key gives %s %v", b.Hex(), err)
	}
	for _, bad := range [][]byte{nil, {2}, bytes.Repeat([]byte{0xff}, 33), make([]byte, 65)} {
		if _, err := AddressFromPublicKey(bad); !errors.Is(err, ErrBadPublicKey) {
			t.Fatalf("key %x: %v", bad, err)
		}
	}
}

func TestParseAddress(t *testing.T) {
	const good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed" // EIP-55 test vector
	a, err := ParseAddress(good)
	if err != nil || a.Hex() != good {
		t.Fatalf("ParseAddress(%s) = %s, %v", good, a.Hex(), err)
	}
	for _, ok := range []string{strings.ToLower(good), "0x" + strings.ToUpper(good[2:])} {
		if b, err := ParseAddress(ok); err != nil || b != a {
			t.Fatalf("ParseAddress(%s) = %s, %v", ok, b.Hex(), err)
		}
	}
	for _, bad := range []string{
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", // checksum broken by one letter's case
		"5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",   // no 0x
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA",   // 19 bytes
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00",
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
		"0x0000000000000000000000000000000000000000",
		"", "0x",
	} {
		if _, err := ParseAddress(bad); !errors.Is(err, ErrBadAddress) || !strings.HasPrefix(err.Error(), "eth: ") {
			t.Fatalf("ParseAddress(%q) error = %v", bad, err)
		}
	}
}

func ether(t testing.TB, s string) *big.Int {
	v, err := ETH.ParseAmount(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func baseIntent(t testing.TB) Intent {
	return Intent{
		ChainID:  big.NewInt(1337),
		Nonce:    7,
		To:       common.HexToAddress("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
		Asset:    ETH,
		Amount:   ether(t, "1.5"),
		GasLimit: 21000,
		Fees:     Fees{GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(30e9)},
	}
}

// TestUnsignedRoundTrip: both transaction types and both assets survive
// Bytes -> ParseUnsigned with the same description, payload hash and a
// signing hash equal to Keccak-256 of the bytes (= go-ethereum's).
func TestUnsignedRoundTrip(t *testing.T) {
	token := common.HexToAddress("0x1111111111111111111111111111111111111111")
	for _, legacy := range []bool{false, true} {
		for _, asset := range []Asset{ETH, ERC20("TKN", 6, token)} {
			var err error
			in := baseIntent(t)
			in.Asset = asset
			in.Amount, err = asset.ParseAmount("1.5")
			if err != nil {
				t.Fatal(err)
			}
			if legacy {
				in.Fees = Fees{Legacy: true, GasPrice: big.NewInt(20e9)}
			}
			u, err := NewUnsigned(in)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParseUnsigned(u.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if err := Compare(u.Description(), p.Description()); err != nil {
				t.Fatal(err)
			}
			if p.PayloadHash() != u.PayloadHash() || p.SigningHash() != u.SigningHash() {
				t.Fatal("hashes changed across round trip")
			}
			if h := crypto.Keccak256Hash(u.Bytes()); h != u.SigningHash() {
				t.Fatalf("signing hash %x is not keccak(bytes) %x", u.SigningHash(), h)
			}
			d := p.Description()
			if d.To != in.To || d.Amount.Cmp(in.Amount) != 0 || d.ChainID.Int64() != 1337 || d.Nonce != 7 {
				t.Fatalf("description %+v", d)
			}
			if (asset.Token != nil) != (d.Token != nil) {
				t.Fatalf("asset lost: %+v", d)
			}
			if !strings.Contains(d.Text(asset), "1.5 "+asset.Symbol) {
				t.Fatalf("text %q", d.Text(asset))
			}
		}
	}
}

// TestCompareDetectsEveryField builds the approved transaction and one
// variant per field; each variant's parsed description must be rejected
// naming that field, and its payload hash must differ.
func TestCompareDetectsEveryField(t *testing.T) {
	approvedU, err := NewUnsigned(baseIntent(t))
	if err != nil {
		t.Fatal(err)
	}
	approved := approvedU.Description()
	token := common.HexToAddress("0x2222222222222222222222222222222222222222")
	variants := map[string]func(*Intent){
		"chain_id":                 func(in *Intent) { in.ChainID = big.NewInt(1) },
		"nonce":                    func(in *Intent) { in.Nonce++ },
		"to":                       func(in *Intent) { in.To[19] ^= 1 },
		"amount":                   func(in *Intent) { in.Amount = new(big.Int).Add(in.Amount, big.NewInt(1)) },
		"token":                    func(in *Intent) { in.Asset = ERC20("TKN", 18, token) },
		"gas_limit":                func(in *Intent) { in.GasLimit++ },
		"max_priority_fee_per_gas": func(in *Intent) { in.Fees.GasTipCap = big.NewInt(2e9) },
		"max_fee_per_gas":          func(in *Intent) { in.Fees.GasFeeCap = big.NewInt(31e9) },
		"type":                     func(in *Intent) { in.Fees = Fees{Legacy: true, GasPrice: big.NewInt(30e9)} },
	}
	for field, mutate := range variants {
		in := baseIntent(t)
		mutate(&in)
		u, err := NewUnsigned(in)
		if err != nil {
			t.Fatal(field, err)
		}
		parsed, err := ParseUnsigned(u.Bytes())
		if err != nil {
			t.Fatal(field, err)
		}
		err = Compare(approved, parsed.Description())
		var me *MismatchError
		if !errors.As(err, &me) || me.Field != field || !errors.Is(err, ErrMismatch) {
			t.Fatalf("variant %s: Compare error %v", field, err)
		}
		if u.PayloadHash() == approvedU.PayloadHash() {
			t.Fatalf("variant %s: same payload hash", field)
		}
	}
	// Data and from are not reachable through an Intent change alone.
	d := approvedU.Description()
	d.Data = []byte{1}
	if err := Compare(approved, d); err == nil || !strings.Contains(err.Error(), "in data") {
		t.Fatalf("data: %v", err)
	}
	k, wallet := newKey(t)
	_, other := newKey(t)
	r, s, v := signRSV(t, k, approvedU.SigningHash())
	st, err := approvedU.Assemble(r, s, v, wallet)
	if err != nil {
		t.Fatal(err)
	}
	withFrom := approved
	withFrom.From = &other
	if err := Compare(withFrom, st.Description()); err == nil || !strings.Contains(err.Error(), "in from") {
		t.Fatalf("from: %v", err)
	}
	if err := st.Verify(approvedU.PayloadHash(), wallet); err != nil {
		t.Fatal(err)
	}
	if err := st.Verify(approvedU.PayloadHash(), other); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("verify with other wallet: %v", err)
	}
	var wrong [32]byte
	if err := st.Verify(wrong, wallet); !errors.Is(err, ErrMismatch) {
		t.Fatalf("verify with other payload: %v", err)
	}
}

func TestBadIntents(t *testing.T) {
	huge := new(big.Int).Add(amount.Max().Big(), big.NewInt(1))
	cases := map[string]func(*Intent){
		"no chain id":      func(in *Intent) { in.ChainID = nil },
		"chain id 0":       func(in *Intent) { in.ChainID = new(big.Int) },
		"zero amount":      func(in *Intent) { in.Amount = new(big.Int) },
		"negative amount":  func(in *Intent) { in.Amount = big.NewInt(-1) },
		"overflow amount":  func(in *Intent) { in.Amount = huge },
		"zero to":          func(in *Intent) { in.To = common.Address{} },
		"low gas":          func(in *Intent) { in.GasLimit = 20999 },
		"tip above cap":    func(in *Intent) { in.Fees.GasTipCap = big.NewInt(31e9) },
		"no fee cap":       func(in *Intent) { in.Fees.GasFeeCap = nil },
		"legacy no price":  func(in *Intent) { in.Fees = Fees{Legacy: true} },
		"zero token":       func(in *Intent) { in.Asset = ERC20("X", 1, common.Address{}) },
		"overflow feecap":  func(in *Intent) { in.Fees.GasFeeCap = huge },
		"legacy neg price": func(in *Intent) { in.Fees = Fees{Legacy: true, GasPrice: big.NewInt(-1)} },
	}
	for name, mutate := range cases {
		in := baseIntent(t)
		mutate(&in)
		if _, err := NewUnsigned(in); !errors.Is(err, ErrBadIntent) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, s := range []string{"-1", "1.0000000000000000001", "1e18", "115792089237316195423570985008687907853269984665640564039458"} {
		if _, err := ETH.ParseAmount(s); err == nil {
			t.Fatalf("amount %q accepted", s)
		}
	}
}

func TestSignatureChecks(t *testing.T) {
	k, wallet := newKey(t)
	u, err := NewUnsigned(baseIntent(t))
	if err != nil {
		t.Fatal(err)
	}
	r, s, v := signRSV(t, k, u.SigningHash())
	highS := new(big.Int).Sub(secp256k1N, s)
	other, _ := newKey(t)
	r2, s2, v2 := signRSV(t, other, u.SigningHash())
	cases := []struct {
		name  string
		r, s  *big.Int
		v     byte
		wants string
	}{
		{"high S", r, highS, v ^ 1, "high S"},
		{"r zero", new(big.Int), s, v, "out of range"},
		{"r = n", new(big.Int).Set(secp256k1N), s, v, "out of range"},
		{"nil s", r, nil, v, "out of range"},
		{"recid 2", r, s, 2, "recovery id"},
		{"wrong recid", r, s, v ^ 1, "recovers to"},
		{"other key", r2, s2, v2, "recovers to"},
	}
	for _, c := range cases {
		_, err := u.Assemble(c.r, c.s, c.v, wallet)
		if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), c.wants) {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	st, err := u.Assemble(r, s, v, wallet)
	if err != nil {
		t.Fatal(err)
	}
	// A high-S encoding of the same signature is refused by the parser too.
	tx := st.Transaction()
	_, rr, _ := tx.RawSignatureValues()
	sig := make([]byte, 65)
	rr.FillBytes(sig[:32])
	highS.FillBytes(sig[32:64])
	sig[64] = v ^ 1
	malleated, err := types.NewTx(stripSig(tx)).WithSignature(u.Signer(), sig)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := malleated.MarshalBinary()
	if _, err := ParseSigned(raw); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("high-S signed tx parsed: %v", err)
	}
}

func TestParseRejectsMalformedAndUnsupported(t *testing.T) {
	k, wallet := newKey(t)
	u, err := NewUnsigned(baseIntent(t))
	if err != nil {
		t.Fatal(err)
	}
	raw := u.Bytes()
	r, s, v := signRSV(t, k, u.SigningHash())
	st, err := u.Assemble(r, s, v, wallet)
	if err != nil {
		t.Fatal(err)
	}
	// Unprotected legacy (pre-EIP-155) and a contract call, signed with
	// go-ethereum's signer only to produce the bad input.
	to := common.HexToAddress("0x3333333333333333333333333333333333333333")
	unprotected, _ := types.SignNewTx(k.ToECDSA(), types.HomesteadSigner{}, &types.LegacyTx{Nonce: 1, GasPrice: big.NewInt(1), Gas: 21000, To: &to, Value: big.NewInt(1)})
	unprotectedRaw, _ := unprotected.MarshalBinary()
	call, _ := types.SignNewTx(k.ToECDSA(), types.LatestSignerForChainID(big.NewInt(1337)), &types.DynamicFeeTx{ChainID: big.NewInt(1337), Gas: 50000, GasFeeCap: big.NewInt(1), To: &to, Data: []byte{0x09, 0x5e, 0xa7, 0xb3, 1, 2}})
	callRaw, _ := call.MarshalBinary()
	creation, _ := types.SignNewTx(k.ToECDSA(), types.LatestSignerForChainID(big.NewInt(1337)), &types.DynamicFeeTx{ChainID: big.NewInt(1337), Gas: 50000, GasFeeCap: big.NewInt(1), Data: []byte{0}})
	creationRaw, _ := creation.MarshalBinary()

	for name, b := range map[string][]byte{
		"empty":         nil,
		"garbage":       []byte("hello"),
		"truncated":     raw[:len(raw)-1],
		"trailing byte": append(bytes.Clone(raw), 0),
		"type 1":        append([]byte{1}, raw[1:]...),
		"signed bytes":  st.Bytes(),
	} {
		if _, err := ParseUnsigned(b); !errors.Is(err, ErrMalformedTx) {
			t.Fatalf("ParseUnsigned(%s): %v", name, err)
		}
	}
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":          {nil, ErrMalformedTx},
		"garbage":        {[]byte{0x02, 0xc0}, ErrMalformedTx},
		"unsigned bytes": {raw, ErrMalformedTx},
		"trailing":       {append(st.Bytes(), 0), ErrMalformedTx},
		"unprotected":    {unprotectedRaw, ErrUnsupportedTx},
		"contract call":  {callRaw, ErrUnsupportedTx},
		"creation":       {creationRaw, ErrUnsupportedTx},
	} {
		if _, err := ParseSigned(c.b); !errors.Is(err, c.want) {
			t.Fatalf("ParseSigned(%s): %v, want %v", name, err, c.want)
		}
	}
	// Dirty calldata: an address word with high bits set.
	d := TransferCalldata(to, big.NewInt(1))
	d[4] = 1
	if _, _, err := DecodeTransfer(d); !errors.Is(err, ErrUnsupportedTx) {
		t.Fatalf("dirty calldata: %v", err)
	}
}

// TestSimulatedTransfers is the end-to-end check on a real EVM: a key held
// outside go-ethereum signs through Assemble an ETH transfer (type 2), a
// legacy EIP-155 ETH transfer and an ERC-20 transfer of a token deployed
// here; all are mined and balances change exactly.
func TestSimulatedTransfers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, wallet := newKey(t)
	start := ether(t, "100")
	sim := NewSimulated(types.GenesisAlloc{wallet: {Balance: start}})
	defer sim.Close()

	id, err := sim.ChainID(ctx)
	if err != nil || id.Cmp(SimulatedChainID) != 0 {
		t.Fatalf("chain id %v %v", id, err)
	}

	supply := big.NewInt(1_000_000_000_000) // 1e6 tokens with 6 decimals
	tokenAddr := deployToken(ctx, t, sim, key, supply)
	tkn := ERC20("TKN", 6, tokenAddr)

	send := func(in Intent) (*Receipt, *Signed) {
		t.Helper()
		var err error
		if in.Nonce, err = sim.Nonce(ctx, wallet); err != nil {
			t.Fatal(err)
		}
		u, err := NewUnsigned(in)
		if err != nil {
			t.Fatal(err)
		}
		// The signer's view: re-parse the bytes, compare with approved.
		p, err := ParseUnsigned(u.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if err := Compare(u.Description(), p.Description()); err != nil {
			t.Fatal(err)
		}
		r, s, v := signRSV(t, key, p.SigningHash())
		st, err := p.Assemble(r, s, v, wallet)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseSigned(st.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if back.From() != wallet || back.Verify(u.PayloadHash(), wallet) != nil {
			t.Fatal("signed tx does not verify")
		}
		if _, err := sim.Broadcast(ctx, st); err != nil {
			t.Fatal(err)
		}
		if _, err := sim.Receipt(ctx, st.Hash()); !errors.Is(err, ErrNotMined) {
			t.Fatalf("receipt before mining: %v", err)
		}
		sim.Commit()
		rc, err := mined(t, sim, st.Hash())
		if err != nil || !rc.Success {
			t.Fatalf("receipt %+v %v", rc, err)
		}
		return rc, st
	}
	fees, err := sim.SuggestFees(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fees.Legacy = false

	// ETH, EIP-1559.
	_, alice := newKey(t)
	before, _ := sim.Balance(ctx, wallet, nil)
	amount := ether(t, "1.5")
	rc1, _ := send(Intent{ChainID: id, To: alice, Asset: ETH, Amount: amount, GasLimit: 21000, Fees: fees})
	after, _ := sim.Balance(ctx, wallet, nil)
	got, _ := sim.Balance(ctx, alice, nil)
	if got.Cmp(amount) != 0 {
		t.Fatalf("alice has %s wei, want %s", got, amount)
	}
	spent := new(big.Int).Add(amount, new(big.Int).Mul(new(big.Int).SetUint64(rc1.GasUsed), rc1.EffectiveGasPrice))
	if new(big.Int).Sub(before, after).Cmp(spent) != 0 {
		t.Fatalf("wallet spent %s, want %s", new(big.Int).Sub(before, after), spent)
	}

	// ETH, legacy EIP-155.
	_, bob := newKey(t)
	before, _ = sim.Balance(ctx, wallet, nil)
	small := ether(t, "0.000000000000000001")
	rc2, _ := send(Intent{ChainID: id, To: bob, Asset: ETH, Amount: small, GasLimit: 21000, Fees: Fees{Legacy: true, GasPrice: fees.GasFeeCap}})
	after, _ = sim.Balance(ctx, wallet, nil)
	if got, _ := sim.Balance(ctx, bob, nil); got.Cmp(small) != 0 {
		t.Fatalf("bob has %s wei", got)
	}
	spent = new(big.Int).Add(small, new(big.Int).Mul(new(big.Int).SetUint64(rc2.GasUsed), rc2.EffectiveGasPrice))
	if new(big.Int).Sub(before, after).Cmp(spent) != 0 {
		t.Fatalf("legacy: wallet spent %s, want %s", new(big.Int).Sub(before, after), spent)
	}

	// ERC-20.
	tokAmount, err := tkn.ParseAmount("12.345678")
	if err != nil {
		t.Fatal(err)
	}
	in := Intent{ChainID: id, To: alice, Asset: tkn, Amount: tokAmount, GasLimit: 21000, Fees: fees}
	probe, err := NewUnsigned(in)
	if err != nil {
		t.Fatal(err)
	}
	gas, err := sim.EstimateGas(ctx, wallet, probe)
	if err != nil {
		t.Fatal(err)
	}
	in.GasLimit = gas
	ethBefore, _ := sim.Balance(ctx, alice, nil)
	_, st := send(in)
	if d := st.Description(); d.Token == nil || *d.Token != tokenAddr || d.To != alice || d.Amount.Cmp(tokAmount) != 0 {
		t.Fatalf("token description %+v", d)
	}
	if got, _ := sim.Balance(ctx, alice, &tokenAddr); got.Cmp(tokAmount) != 0 {
		t.Fatalf("alice has %s token units, want %s", got, tokAmount)
	}
	if got, _ := sim.Balance(ctx, wallet, &tokenAddr); got.Cmp(new(big.Int).Sub(supply, tokAmount)) != 0 {
		t.Fatalf("wallet has %s token units", got)
	}
	if got, _ := sim.Balance(ctx, alice, nil); got.Cmp(ethBefore) != 0 {
		t.Fatal("token transfer moved ETH")
	}
}

// deployToken deploys the test token (devtoken.TokenInitCode) from key's account,
// which must be funded and have sent nothing yet, crediting it supply; the
// deployment is not under test, so go-ethereum's signer is fine.
func deployToken(ctx context.Context, t *testing.T, sim *Simulated, key *btcec.PrivateKey, supply *big.Int) common.Address {
	t.Helper()
	deployer := crypto.PubkeyToAddress(key.ToECDSA().PublicKey)
	deploy, err := types.SignNewTx(key.ToECDSA(), types.LatestSignerForChainID(SimulatedChainID), &types.DynamicFeeTx{
		ChainID: SimulatedChainID, Nonce: 0, GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(100e9), Gas: 300000, Data: devtoken.TokenInitCode(supply),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.b.SendTransaction(ctx, deploy); err != nil {
		t.Fatal(err)
	}
	sim.Commit()
	rc, err := mined(t, sim, deploy.Hash())
	if err != nil || !rc.Success {
		t.Fatalf("deploy receipt %+v %v", rc, err)
	}
	token := crypto.CreateAddress(deployer, 0)
	if bal, err := sim.Balance(ctx, deployer, &token); err != nil || bal.Cmp(supply) != 0 {
		t.Fatalf("token supply %v %v", bal, err)
	}
	return token
}

// mined waits (with a deadline) for the receipt of a transaction just
// committed: the simulated node may still be indexing it.
func mined(t *testing.T, c RPC, hash common.Hash) (*Receipt, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return WaitMined(ctx, c, hash, 10*time.Millisecond)
}

// TestAssetAmountsTable runs the shared amount table through an asset's
// ParseAmount: the same inputs are accepted with the same value or refused
// with the same sentinel as amount.ParseUnits, and an accepted amount is
// shown in the transaction's description exactly as it was typed.
func TestAssetAmountsTable(t *testing.T) {
	token := common.HexToAddress("0x1111111111111111111111111111111111111111")
	for _, c := range amounttest.Units {
		asset := ERC20("TKN", uint8(c.Decimals), token)
		if c.Decimals == 18 {
			asset = ETH
		}
		v, err := asset.ParseAmount(c.In)
		if c.Err != nil {
			if !errors.Is(err, c.Err) {
				t.Errorf("%s.ParseAmount(%q): error %v, want %v", asset.Symbol, c.In, err, c.Err)
			}
			continue
		}
		if err != nil || v.String() != c.Base {
			t.Errorf("%s.ParseAmount(%q) = %v, %v; want %s", asset.Symbol, c.In, v, err, c.Base)
			continue
		}
		if v.Sign() == 0 {
			continue // not a withdrawal
		}
		in := baseIntent(t)
		in.Asset, in.Amount = asset, v
		u, err := NewUnsigned(in)
		if err != nil {
			t.Fatal(err)
		}
		if text := u.Description().Text(asset); !strings.HasPrefix(text, "send "+c.In+" "+asset.Symbol+" (") {
			t.Errorf("%q is described as %q", c.In, text)
		}
	}
}
