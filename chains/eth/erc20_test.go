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
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
)

// chainSig signs digest with key as a threshold signer returns it.
func chainSig(t testing.TB, key *btcec.PrivateKey, digest [32]byte) chains.Signature {
	t.Helper()
	r, s, v := signRSV(t, key, digest)
	var sig chains.Signature
	r.FillBytes(sig.R[:])
	s.FillBytes(sig.S[:])
	sig.V = v
	return sig
}

// rawUnsigned is the unsigned encoding of any transaction, built around
// NewUnsigned's checks, to hand the adapter what a compromised leader could
// store.
func rawUnsigned(t testing.TB, inner types.TxData, chainID *big.Int) []byte {
	t.Helper()
	b, err := preimage(types.NewTx(inner), chainID)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNewRefusesBadTokenRegistry: the token registry is strict. A symbol or
// contract twice on one network (symbols compared case-insensitively), a
// token on an unconfigured network, the zero contract, the native symbol,
// an invalid symbol and decimals policy cannot declare are refused with
// ErrBadConfig naming the entry; one symbol on two networks is fine.
func TestNewRefusesBadTokenRegistry(t *testing.T) {
	a := common.HexToAddress("0x1111111111111111111111111111111111111111")
	b := common.HexToAddress("0x2222222222222222222222222222222222222222")
	nets := map[string]uint64{"devnet": 1337, "sepolia": 11155111}
	c, err := New(Config{Networks: nets, Tokens: map[string][]Token{
		"devnet":  {{Symbol: "USDC", Address: a, Decimals: 6}, {Symbol: "DAI", Address: b, Decimals: 18}},
		"sepolia": {{Symbol: "USDC", Address: b, Decimals: 6}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := c.Token("sepolia", "USDC"); !ok || tok.Address != b {
		t.Fatalf("sepolia USDC: %+v %v", tok, ok)
	}
	if _, ok := c.Token("devnet", "usdc"); ok {
		t.Fatal("symbol lookup is not exact")
	}
	for name, c := range map[string]struct {
		cfg  Config
		want string
	}{
		"duplicate symbol":        {Config{Networks: nets, Tokens: map[string][]Token{"devnet": {{"USDC", a, 6}, {"USDC", b, 6}}}}, "tokens.devnet[1]: symbol USDC"},
		"symbol differing case":   {Config{Networks: nets, Tokens: map[string][]Token{"devnet": {{"USDC", a, 6}, {"usdc", b, 6}}}}, "tokens.devnet[1]: symbol usdc"},
		"duplicate address":       {Config{Networks: nets, Tokens: map[string][]Token{"devnet": {{"USDC", a, 6}, {"USDT", a, 6}}}}, "tokens.devnet[1]: contract"},
		"unknown network":         {Config{Networks: nets, Tokens: map[string][]Token{"mainnet": {{"USDC", a, 6}}}}, "tokens.mainnet: not a configured network"},
		"zero address":            {Config{Networks: nets, Tokens: map[string][]Token{"devnet": {{"USDC", common.Address{}, 6}}}}, "zero address"},
		"native symbol":           {Config{Networks: nets, Tokens: map[string][]Token{"devnet": {{"eth", a, 18}}}}, "native asset"},
		"empty symbol":            {Config{Networks: nets, Tokens: map[string][]Token{"devnet": {{"", a, 6}}}}, "1..64 characters"},
		"symbol with a space":     {Config{Networks: nets, Tokens: map[string][]Token{"devnet": {{"US DC", a, 6}}}}, "only letters"},
		"decimals over 36":        {Config{Networks: nets, Tokens: map[string][]Token{"devnet": {{"BIG", a, 37}}}}, "37 decimals"},
		"network with chain ID 0": {Config{Networks: map[string]uint64{"devnet": 0}}, "chain ID 0"},
	} {
		_, err := New(c.cfg)
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadConfig mentioning %q", name, err, c.want)
		}
	}
}

// TestChainERC20OnSimulated is the adapter's token path end to end on a real
// EVM: a hand-assembled ERC-20 (devtoken.TokenRuntime) is deployed and funds the
// wallet; the leader's Intent becomes a transaction the adapter parses into
// the ledger's terms (symbol, recipient and amount from the calldata,
// maximum fee in ETH); a plain secp256k1 key signs its one digest, Assemble
// checks it, the chain mines it and the recipient holds the tokens.
func TestChainERC20OnSimulated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, wallet := newKey(t)
	pub := key.PubKey().SerializeCompressed()
	sim := NewSimulated(types.GenesisAlloc{wallet: {Balance: ether(t, "10")}})
	defer sim.Close()
	supply := big.NewInt(5_000_000_000) // 5000 tokens of 6 decimals, all the wallet's
	tokenAddr := deployToken(ctx, t, sim, key, supply)

	c, err := New(Config{Networks: map[string]uint64{"devnet": 1337}, Tokens: map[string][]Token{"devnet": {{Symbol: "TKN", Address: tokenAddr, Decimals: 6}}}})
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := c.Token("devnet", "TKN")
	if !ok {
		t.Fatal("TKN not registered")
	}
	_, alice := newKey(t)
	amt, err := tok.Asset().ParseAmount("1234.5")
	if err != nil {
		t.Fatal(err)
	}
	nonce, err := sim.Nonce(ctx, wallet)
	if err != nil {
		t.Fatal(err)
	}
	fees, err := sim.SuggestFees(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := Intent{ChainID: SimulatedChainID, Nonce: nonce, To: alice, Asset: tok.Asset(), Amount: amt, GasLimit: 21000, Fees: fees}
	probe, err := NewUnsigned(in)
	if err != nil {
		t.Fatal(err)
	}
	if in.GasLimit, err = sim.EstimateGas(ctx, wallet, probe); err != nil {
		t.Fatal(err)
	}
	u, err := NewUnsigned(in)
	if err != nil {
		t.Fatal(err)
	}

	// The member's view.
	got, err := c.ParseUnsigned("devnet", u.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	tr := got.Transfer()
	wantAmt, _ := amount.ParseUnits("1234.5", 6)
	wantFee, _ := amount.FromBig(new(big.Int).Mul(new(big.Int).SetUint64(in.GasLimit), fees.GasFeeCap))
	if tr.Asset != "TKN" || tr.To != alice.Hex() || tr.Amount != wantAmt || tr.MaxFee != wantFee || tr.Nonce == nil || *tr.Nonce != nonce || len(tr.Outpoints) != 0 {
		t.Fatalf("transfer %+v; want TKN %s to %s, max fee %s, nonce %d", tr, wantAmt, alice.Hex(), wantFee, nonce)
	}
	if desc := got.Describe(); !strings.Contains(desc, "send 1234.5 TKN (token "+tokenAddr.Hex()+") to "+alice.Hex()) {
		t.Fatalf("description %q", desc)
	}
	if keys := got.SpendKeys("hot"); len(keys) != 1 || keys[0] != (chains.SpendKey{Kind: chains.KindETHNonce, Scope: "hot/1337", ID: "1"}) {
		t.Fatalf("spend keys %+v", keys)
	}
	digests := got.Digests()
	if len(digests) != 1 || digests[0] != u.SigningHash() || got.PayloadHash() != u.PayloadHash() {
		t.Fatal("digest or payload hash differs from the unsigned transaction's")
	}
	signed, err := got.Assemble(pub, []chains.Signature{chainSig(t, key, digests[0])})
	if err != nil {
		t.Fatal(err)
	}
	if err := signed.Verify(u.PayloadHash(), pub); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ParseSigned("devnet", signed.Bytes()); err != nil {
		t.Fatal(err)
	}

	st, err := ParseSigned(signed.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ethBefore, _ := sim.Balance(ctx, wallet, nil)
	if _, err := sim.Broadcast(ctx, st); err != nil {
		t.Fatal(err)
	}
	sim.Commit()
	rc, err := mined(t, sim, st.Hash())
	if err != nil || !rc.Success {
		t.Fatalf("receipt %+v %v", rc, err)
	}
	if bal, err := sim.Balance(ctx, alice, &tokenAddr); err != nil || bal.Cmp(amt) != 0 {
		t.Fatalf("alice holds %v token units (%v), want %s", bal, err, amt)
	}
	if bal, _ := sim.Balance(ctx, wallet, &tokenAddr); bal.Cmp(new(big.Int).Sub(supply, amt)) != 0 {
		t.Fatalf("wallet holds %s token units", bal)
	}
	// The wallet paid gas in ETH, never more than the maximum fee.
	ethAfter, _ := sim.Balance(ctx, wallet, nil)
	paid := new(big.Int).Sub(ethBefore, ethAfter)
	if want := new(big.Int).Mul(new(big.Int).SetUint64(rc.GasUsed), rc.EffectiveGasPrice); paid.Cmp(want) != 0 || paid.Cmp(tr.MaxFee.Big()) > 0 {
		t.Fatalf("wallet paid %s wei, gas cost %s, max fee %s", paid, want, tr.MaxFee)
	}
}

// TestChainERC20Refusals: the adapter signs a token transfer only as exact
// transfer(address,uint256) calldata to a registered contract of the
// transaction's network, with no ETH value, in an EIP-1559 transaction.
// Every other shape is refused with ErrNotSignedOnline and a message
// naming the cause; and a registered transfer whose recipient or amount is
// not the request's differs in Transfer(), which the member compares field
// by field with the request (signer/member TestERC20PayloadNotTheRequest).
func TestChainERC20Refusals(t *testing.T) {
	token := common.HexToAddress("0x1111111111111111111111111111111111111111")
	other := common.HexToAddress("0x3333333333333333333333333333333333333333")
	c, err := New(Config{Networks: map[string]uint64{"devnet": 1337, "sepolia": 11155111},
		Tokens: map[string][]Token{"devnet": {{Symbol: "TKN", Address: token, Decimals: 6}}}})
	if err != nil {
		t.Fatal(err)
	}
	alice := common.HexToAddress("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
	bob := common.HexToAddress("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359")
	id := big.NewInt(1337)
	good := TransferCalldata(alice, big.NewInt(1_000_000))
	tx := func(to common.Address, value int64, data []byte) []byte {
		return rawUnsigned(t, &types.DynamicFeeTx{ChainID: id, Nonce: 3, GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(30e9), Gas: 60000,
			To: &to, Value: big.NewInt(value), Data: data}, id)
	}
	edit := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	word := func(b byte) []byte { w := make([]byte, 32); w[31] = b; return w }

	// The accepted shape, for contrast.
	ok, err := c.ParseUnsigned("devnet", tx(token, 0, good))
	if err != nil {
		t.Fatal(err)
	}
	if tr := ok.Transfer(); tr.Asset != "TKN" || tr.To != alice.Hex() || tr.Amount != amount.FromUint64(1_000_000) {
		t.Fatalf("transfer %+v", tr)
	}

	for name, c2 := range map[string]struct {
		network string
		b       []byte
		want    string
	}{
		"unregistered contract":                       {"devnet", tx(other, 0, good), "not a registered token on devnet"},
		"token of another network":                    {"sepolia", rawUnsigned(t, &types.DynamicFeeTx{ChainID: big.NewInt(11155111), GasFeeCap: big.NewInt(1), Gas: 60000, To: &token, Value: new(big.Int), Data: good}, big.NewInt(11155111)), "not a registered token on sepolia"},
		"ETH value with the transfer":                 {"devnet", tx(token, 1, good), "also sends ETH"},
		"one extra calldata byte":                     {"devnet", tx(token, 0, append(bytes.Clone(good), 0)), "not ERC-20 transfer"},
		"an extra calldata word":                      {"devnet", tx(token, 0, append(bytes.Clone(good), word(1)...)), "not ERC-20 transfer"},
		"calldata one byte short":                     {"devnet", tx(token, 0, good[:67]), "not ERC-20 transfer"},
		"selector only":                               {"devnet", tx(token, 0, good[:4]), "not ERC-20 transfer"},
		"approve(address,uint256)":                    {"devnet", tx(token, 0, edit(func(d []byte) []byte { copy(d, []byte{0x09, 0x5e, 0xa7, 0xb3}); return d })), "not ERC-20 transfer"},
		"transferFrom(address,address,uint256)":       {"devnet", tx(token, 0, append(append([]byte{0x23, 0xb8, 0x72, 0xdd}, good[4:36]...), append(good[4:36:36], word(1)...)...)), "not ERC-20 transfer"},
		"address word dirty in its first byte":        {"devnet", tx(token, 0, edit(func(d []byte) []byte { d[4] = 1; return d })), "dirty address word"},
		"address word dirty in its last padding byte": {"devnet", tx(token, 0, edit(func(d []byte) []byte { d[15] = 0xff; return d })), "dirty address word"},
		"calldata to a non-token address":             {"devnet", tx(alice, 0, []byte{0xde, 0xad}), "not ERC-20 transfer"},
		"legacy token transfer":                       {"devnet", rawUnsigned(t, &types.LegacyTx{Nonce: 3, GasPrice: big.NewInt(30e9), Gas: 60000, To: &token, Value: new(big.Int), Data: good}, id), "EIP-1559 transactions only"},
	} {
		_, err := c.ParseUnsigned(c2.network, c2.b)
		if !errors.Is(err, ErrNotSignedOnline) || !strings.Contains(err.Error(), c2.want) {
			t.Errorf("%s: %v, want ErrNotSignedOnline mentioning %q", name, err, c2.want)
		}
	}

	// Registered, well-formed, but not what the request says: Transfer()
	// shows the calldata's recipient and amount, so the member's field by
	// field comparison with the request refuses.
	request := chains.Transfer{To: alice.Hex(), Asset: "TKN", Amount: amount.FromUint64(1_000_000)}
	for name, data := range map[string][]byte{
		"other recipient": TransferCalldata(bob, big.NewInt(1_000_000)),
		"other amount":    TransferCalldata(alice, big.NewInt(1_000_001)),
	} {
		u, err := c.ParseUnsigned("devnet", tx(token, 0, data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tr := u.Transfer(); tr.Asset == request.Asset && tr.To == request.To && tr.Amount == request.Amount {
			t.Errorf("%s: transfer %+v reads as the request", name, tr)
		}
	}
}
