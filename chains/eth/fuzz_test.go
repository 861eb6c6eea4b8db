package eth

import (
	"bytes"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// fuzzToken is the token the ERC-20 seeds pay from; fuzzChain registers it.
var fuzzToken = common.HexToAddress("0x1111111111111111111111111111111111111111")

// erc20Seeds are unsigned ERC-20 payloads: the accepted transfer, and the
// shapes one byte away from it that signers refuse (dirty address padding,
// extra or missing calldata bytes, approve and transferFrom selectors, an
// ETH value, another contract, a legacy transaction).
func erc20Seeds(t testing.TB) [][]byte {
	to := common.HexToAddress("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
	good := TransferCalldata(to, big.NewInt(1_000_000))
	id := big.NewInt(1337)
	tx := func(contract common.Address, value int64, data []byte) []byte {
		return rawUnsigned(t, &types.DynamicFeeTx{ChainID: id, Nonce: 1, GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(30e9), Gas: 60000,
			To: &contract, Value: big.NewInt(value), Data: data}, id)
	}
	dirty := bytes.Clone(good)
	dirty[15] = 1
	approve := bytes.Clone(good)
	copy(approve, []byte{0x09, 0x5e, 0xa7, 0xb3})
	from := append(append([]byte{0x23, 0xb8, 0x72, 0xdd}, good[4:36]...), good[4:]...)
	return [][]byte{
		tx(fuzzToken, 0, good),
		tx(fuzzToken, 0, dirty),
		tx(fuzzToken, 0, append(bytes.Clone(good), 0)),
		tx(fuzzToken, 0, good[:67]),
		tx(fuzzToken, 0, approve),
		tx(fuzzToken, 0, from),
		tx(fuzzToken, 1, good),
		tx(common.HexToAddress("0x3333333333333333333333333333333333333333"), 0, good),
		rawUnsigned(t, &types.LegacyTx{Nonce: 1, GasPrice: big.NewInt(30e9), Gas: 60000, To: &fuzzToken, Value: new(big.Int), Data: good}, id),
	}
}

// FuzzParseUnsigned: arbitrary bytes never panic; whatever parses is
// canonical (Bytes() returns the input) and re-parses to the same payload.
func FuzzParseUnsigned(f *testing.F) {
	f.Add([]byte{0x02, 0xc0})
	f.Add([]byte{0xc0})
	for _, b := range erc20Seeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseUnsigned(b)
		if err != nil {
			return
		}
		if !bytes.Equal(u.Bytes(), b) {
			t.Fatalf("accepted non-canonical %x", b)
		}
		again, err := ParseUnsigned(u.Bytes())
		if err != nil || again.PayloadHash() != u.PayloadHash() {
			t.Fatalf("re-parse: %v", err)
		}
		if err := Compare(u.Description(), again.Description()); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzChainParseUnsigned: through the adapter, arbitrary bytes never
// panic, and whatever it accepts is either a native transfer without
// calldata or exactly transfer(Transfer().To, Transfer().Amount) calldata,
// with no ETH value, to the contract registered under Transfer().Asset, in
// an EIP-1559 transaction; the maximum fee is gas limit x max fee per gas.
func FuzzChainParseUnsigned(f *testing.F) {
	for _, b := range erc20Seeds(f) {
		f.Add(b)
	}
	c, err := New(Config{Networks: map[string]uint64{"devnet": 1337}, Tokens: map[string][]Token{"devnet": {{Symbol: "TKN", Address: fuzzToken, Decimals: 6}}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := c.ParseUnsigned("devnet", b)
		if err != nil {
			return
		}
		u, err := ParseUnsigned(b)
		if err != nil {
			t.Fatalf("adapter accepted what ParseUnsigned refuses: %v", err)
		}
		d, tr := u.Description(), got.Transfer()
		if tr.MaxFee.Big().Cmp(d.MaxFee()) != 0 || tr.Amount.Big().Cmp(d.Amount) != 0 || tr.To != d.To.Hex() {
			t.Fatalf("transfer %+v does not match description %+v", tr, d)
		}
		if tr.Asset == ETH.Symbol {
			if d.Token != nil || len(d.Data) != 0 {
				t.Fatalf("native transfer with calldata %x", d.Data)
			}
			return
		}
		tok, ok := c.Token("devnet", tr.Asset)
		if !ok || d.Token == nil || *d.Token != tok.Address || u.tx.To() == nil || *u.tx.To() != tok.Address {
			t.Fatalf("token transfer of %s to contract %v", tr.Asset, u.tx.To())
		}
		if u.tx.Value().Sign() != 0 || u.tx.Type() != types.DynamicFeeTxType || !bytes.Equal(u.tx.Data(), TransferCalldata(d.To, d.Amount)) {
			t.Fatalf("token transfer: value %s, type %d, calldata %x", u.tx.Value(), u.tx.Type(), u.tx.Data())
		}
	})
}

// FuzzParseSigned: arbitrary bytes never panic; whatever parses has a
// low-S signature, a recovered sender and a canonical encoding.
func FuzzParseSigned(f *testing.F) {
	f.Add([]byte{0x02, 0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSigned(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Bytes(), b) {
			t.Fatalf("accepted non-canonical %x", b)
		}
		d := s.Description()
		if d.From == nil || *d.From != s.From() {
			t.Fatal("signed description without sender")
		}
		if _, err := ParseUnsigned(s.Unsigned().Bytes()); err != nil {
			t.Fatalf("unsigned part does not re-parse: %v", err)
		}
	})
}
