package tss_test

import (
	"context"
	"errors"
	"github.com/custody-dev/custody/signer/tss"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

func verifySig(t *testing.T, sig *tss.Signature, pub []byte, digest [32]byte) {
	t.Helper()
	pk, err := btcec.ParsePubKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var r, s btcec.ModNScalar
	r.SetByteSlice(sig.R[:])
	s.SetByteSlice(sig.S[:])
	if !becdsa.NewSignature(&r, &s).Verify(digest[:], pk) {
		t.Fatal("signature does not verify")
	}
	if new(big.Int).SetBytes(sig.S[:]).Cmp(new(big.Int).Rsh(btcec.S256().N, 1)) > 0 {
		t.Fatal("high S")
	}
	compact := append([]byte{27 + 4 + sig.V}, append(sig.R[:], sig.S[:]...)...)
	got, _, err := becdsa.RecoverCompact(compact, digest[:])
	if err != nil || !got.IsEqual(pk) {
		t.Fatalf("recovery id %d does not recover the key", sig.V)
	}
}

func TestKeygenSign2of3(t *testing.T) {
	c, shares := shared2of3(t)
	pub := shares["node1"].PubKey
	for id, s := range shares {
		if string(s.PubKey) != string(pub) {
			t.Fatalf("%s has a different public key", id)
		}
	}
	d := digestOf("2of3")
	sig := c.mustSign(t, shares, []tss.PartyID{"node1", "node3"}, d)
	verifySig(t, sig, pub, d)
}

func TestSignEverySubset2of3(t *testing.T) {
	c, shares := shared2of3(t)
	for _, sub := range [][]tss.PartyID{{"node1", "node2"}, {"node1", "node3"}, {"node2", "node3"}} {
		d := digestOf("subset " + string(sub[0]) + string(sub[1]))
		verifySig(t, c.mustSign(t, shares, sub, d), shares["node1"].PubKey, d)
	}
}

func TestSignRefusals(t *testing.T) {
	c, shares := shared2of3(t)
	ctx := context.Background()
	e := c.engines["node1"]
	if _, err := e.Sign(ctx, shares["node1"], tss.SignParams{Session: tss.NewSessionID(), Signers: []tss.PartyID{"node1"}}); !errors.Is(err, tss.ErrBadParams) {
		t.Fatalf("too few signers: %v", err)
	}
	if _, err := e.Sign(ctx, shares["node1"], tss.SignParams{Session: tss.NewSessionID(), Signers: []tss.PartyID{"node1", "node9"}}); !errors.Is(err, tss.ErrBadParams) {
		t.Fatalf("non-member signer: %v", err)
	}
	if _, err := e.Sign(ctx, shares["node1"], tss.SignParams{Session: tss.NewSessionID(), Signers: []tss.PartyID{"node2", "node3"}}); !errors.Is(err, tss.ErrBadParams) {
		t.Fatalf("self not a signer: %v", err)
	}
}
