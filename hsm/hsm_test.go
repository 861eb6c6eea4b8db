package hsm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	btcecdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/miekg/pkcs11"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm"
)

// openTest opens a fresh SoftHSM token for the test and closes it after.
func openTest(t testing.TB, name string) (*hsm.Token, hsm.Config) {
	t.Helper()
	cfg := softhsm.NewTestToken(t, name)
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tok.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tok, cfg
}

func newKEK(t testing.TB, tok *hsm.Token) *hsm.Sealer {
	t.Helper()
	s, err := tok.CreateKEK("kek")
	if err != nil {
		t.Fatalf("CreateKEK: %v", err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	tok, _ := openTest(t, "seal")
	s := newKEK(t, tok)
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("share"), 2000)} {
		aad := []byte("wallet=w1/party=2/v=1")
		blob, err := s.Seal(pt, aad)
		if err != nil {
			t.Fatalf("Seal(%d bytes): %v", len(pt), err)
		}
		if len(pt) > 4 && bytes.Contains(blob, pt[:5]) {
			t.Fatalf("blob contains plaintext")
		}
		got, err := s.Open(blob, aad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("round trip: got %d bytes, want %d", len(got), len(pt))
		}
		blob2, err := s.Seal(pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(blob, blob2) {
			t.Fatalf("two seals of the same plaintext are identical: IV reused")
		}
	}
	// The KEK is found again by label, and opens what the first handle sealed.
	blob, _ := s.Seal([]byte("again"), nil)
	s2, err := tok.KEK("kek")
	if err != nil {
		t.Fatalf("KEK: %v", err)
	}
	if got, err := s2.Open(blob, nil); err != nil || string(got) != "again" {
		t.Fatalf("Open via KEK(): %q, %v", got, err)
	}
}

func TestSignSmoke(t *testing.T) {
	tok, _ := openTest(t, "sign")
	for _, c := range []hsm.Curve{hsm.Secp256k1, hsm.P256} {
		k, err := tok.GenerateECKey("k-"+c.String(), c)
		if err != nil {
			t.Fatalf("GenerateECKey(%v): %v", c, err)
		}
		d := sha256.Sum256([]byte("hello"))
		sig, err := k.Sign(nil, d[:], nil)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if c == hsm.P256 && !ecdsa.VerifyASN1(k.PublicKey(), d[:], sig) {
			t.Fatalf("P-256 signature does not verify with crypto/ecdsa")
		}
		if c == hsm.Secp256k1 {
			ps, err := btcecdsa.ParseDERSignature(sig)
			if err != nil || !ps.Verify(d[:], k.BTCECPublicKey()) {
				t.Fatalf("secp256k1 signature does not verify with btcec: %v", err)
			}
		}
	}
	_ = big.NewInt
	_ = btcec.S256
	_ = pkcs11.CKA_CLASS
	_ = errors.Is
	_ = strings.Contains
	_ = sync.WaitGroup{}
}
