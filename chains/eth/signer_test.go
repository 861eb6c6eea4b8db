package eth

import (
	"errors"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
)

// TestChainAdapter: eth.Chain parses a native transfer for its network into
// the ledger's terms, names the wallet's nonce as the spend key, assembles a
// threshold-style signature into a transaction that verifies against the
// wallet key and the approved payload hash, and refuses another network,
// another chain ID, token transfers, a high-S signature and another key.
func TestChainAdapter(t *testing.T) {
	c := NewChain(map[string]uint64{"devnet": 1337, "other": 5})
	key, wallet := newKey(t)
	pub := key.PubKey().SerializeCompressed()
	u, err := NewUnsigned(baseIntent(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.ParseUnsigned("devnet", u.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	tr := got.Transfer()
	want, _ := amount.ParseUnits("1.5", 18)
	if tr.Asset != "ETH" || tr.To != baseIntent(t).To.Hex() || tr.Amount != want || tr.Nonce == nil || *tr.Nonce != 7 || len(tr.Outpoints) != 0 {
		t.Fatalf("transfer %+v", tr)
	}
	if got.PayloadHash() != u.PayloadHash() || len(got.Digests()) != 1 || got.Digests()[0] != u.SigningHash() {
		t.Fatal("payload hash or digest differs from the unsigned transaction's")
	}
	if keys := got.SpendKeys("hot"); len(keys) != 1 || keys[0] != (chains.SpendKey{Kind: chains.KindETHNonce, Scope: "hot/1337", ID: "7"}) {
		t.Fatalf("spend keys %+v", keys)
	}
	if addr, err := c.Address("devnet", pub); err != nil || addr != wallet.Hex() {
		t.Fatalf("address %s, %v; want %s", addr, err, wallet.Hex())
	}
	if got.Describe() == "" {
		t.Fatal("empty description")
	}

	r, s, v := signRSV(t, key, u.SigningHash())
	var sig chains.Signature
	r.FillBytes(sig.R[:])
	s.FillBytes(sig.S[:])
	sig.V = v
	signed, err := got.Assemble(pub, []chains.Signature{sig})
	if err != nil {
		t.Fatal(err)
	}
	if err := signed.Verify(u.PayloadHash(), pub); err != nil {
		t.Fatal(err)
	}
	back, err := c.ParseSigned("devnet", signed.Bytes())
	if err != nil || back.Hash() != signed.Hash() {
		t.Fatalf("signed round trip: %v", err)
	}

	other, _ := newKey(t)
	otherPub := other.PubKey().SerializeCompressed()
	highS := sig
	new(big.Int).Sub(btcec.S256().N, s).FillBytes(highS.S[:])
	highS.V ^= 1
	for name, f := range map[string]func() error{
		"unknown network":   func() error { _, err := c.ParseUnsigned("mainnet", u.Bytes()); return err },
		"other chain ID":    func() error { _, err := c.ParseUnsigned("other", u.Bytes()); return err },
		"signed elsewhere":  func() error { _, err := c.ParseSigned("other", signed.Bytes()); return err },
		"other key":         func() error { _, err := got.Assemble(otherPub, []chains.Signature{sig}); return err },
		"high S":            func() error { _, err := got.Assemble(pub, []chains.Signature{highS}); return err },
		"two signatures":    func() error { _, err := got.Assemble(pub, []chains.Signature{sig, sig}); return err },
		"other payload":     func() error { return signed.Verify([32]byte{1}, pub) },
		"verify other key":  func() error { return signed.Verify(u.PayloadHash(), otherPub) },
		"address elsewhere": func() error { _, err := c.Address("mainnet", pub); return err },
	} {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	in := baseIntent(t)
	in.Asset = ERC20("USDC", 6, common.HexToAddress("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"))
	in.Amount = big.NewInt(1_000_000)
	in.GasLimit = 60000
	tok, err := NewUnsigned(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ParseUnsigned("devnet", tok.Bytes()); !errors.Is(err, ErrNotSignedOnline) {
		t.Fatalf("token transfer: %v, want ErrNotSignedOnline", err)
	}
}
