package tsstest

import (
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"

	"github.com/custody-dev/custody/signer/tss"
)

// VerifySignature fails t unless sig verifies over digest under the wallet
// key pub (SEC1), has low S, and its recovery id recovers pub. It checks
// with btcec, independently of the engine's own verification.
func VerifySignature(t testing.TB, sig *tss.Signature, pub []byte, digest [32]byte) {
	t.Helper()
	pk, err := btcec.ParsePubKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var r, s btcec.ModNScalar
	r.SetByteSlice(sig.R[:])
	s.SetByteSlice(sig.S[:])
	if !becdsa.NewSignature(&r, &s).Verify(digest[:], pk) {
		t.Fatal("signature does not verify against the wallet key")
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
