package hsm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	btcecdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

// FuzzParseBlobHeader: arbitrary bytes never panic, and an accepted header
// is self-consistent.
func FuzzParseBlobHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("CSB"))
	f.Add(append([]byte("CSB\x01"), make([]byte, 44)...))
	f.Add(append([]byte("CSB\x02"), make([]byte, 44)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := hsm.ParseBlobHeader(b)
		if err != nil {
			if !errors.Is(err, hsm.ErrMalformedBlob) && !errors.Is(err, hsm.ErrUnknownVersion) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if h.Version != 1 || len(h.KEKID) != 16 || len(h.IV) != 12 || len(b) < 48 {
			t.Fatalf("accepted inconsistent header %+v from %d bytes", h, len(b))
		}
	})
}

// FuzzSealerOpen opens arbitrary blobs with a real SoftHSM KEK: no panic,
// a classified error, and nothing but the genuine blob ever opens.
func FuzzSealerOpen(f *testing.F) {
	cfg := softhsmtest.NewToken(f, "fuzz")
	tok, err := hsm.Open(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { tok.Close() })
	s, err := tok.CreateKEK("kek")
	if err != nil {
		f.Fatal(err)
	}
	genuine, err := s.Seal([]byte("secret share"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine, []byte("aad"))
	f.Add(genuine[:40], []byte("aad"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, blob, aad []byte) {
		pt, err := s.Open(blob, aad)
		if err == nil {
			if !bytes.Equal(blob, genuine) || !bytes.Equal(aad, []byte("aad")) || string(pt) != "secret share" {
				t.Fatalf("forged blob opened: %x", blob)
			}
			return
		}
		for _, want := range []error{hsm.ErrMalformedBlob, hsm.ErrUnknownVersion, hsm.ErrWrongKEK, hsm.ErrAuthFailed} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("unclassified error: %v", err)
	})
}

// FuzzVerifySignature feeds arbitrary signature bytes to VerifySignature
// under fixed secp256k1 and P-256 keys: no panic, every refusal is
// ErrInvalidSignature, and it agrees with the reference verifiers: crypto/ecdsa
// for P-256, and for secp256k1 btcec's DER parser and verifier plus the
// low-S rule and no bytes after the signature (btcec ignores them).
func FuzzVerifySignature(f *testing.F) {
	digest := sha256.Sum256([]byte("custody fuzz digest"))
	seed := sha256.Sum256([]byte("custody fuzz key"))
	k1, _ := btcec.PrivKeyFromBytes(seed[:])
	k1Pub, err := hsm.ParsePublicKey(hsm.Secp256k1, k1.PubKey().SerializeCompressed())
	if err != nil {
		f.Fatal(err)
	}
	p256, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed[:])
	if err != nil {
		f.Fatal(err)
	}
	k1Sig := btcecdsa.Sign(k1, digest[:]).Serialize()
	p256Sig, err := ecdsa.SignASN1(rand.Reader, p256, digest[:])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(k1Sig, false)
	f.Add(p256Sig, true)
	f.Add(k1Sig[:len(k1Sig)-1], false)
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, true)
	f.Fuzz(func(t *testing.T, sig []byte, onP256 bool) {
		var pub *ecdsa.PublicKey
		var want bool
		if onP256 {
			pub, want = &p256.PublicKey, ecdsa.VerifyASN1(&p256.PublicKey, digest[:], sig)
		} else {
			pub = k1Pub
			if parsed, err := btcecdsa.ParseDERSignature(sig); err == nil && len(sig) == int(sig[1])+2 {
				var rs struct{ R, S *big.Int }
				if _, err := asn1.Unmarshal(sig, &rs); err != nil {
					t.Fatalf("btcec parsed what encoding/asn1 cannot: %x", sig)
				}
				want = parsed.Verify(digest[:], k1.PubKey()) && hsm.Secp256k1.IsLowS(rs.S)
			}
		}
		err := hsm.VerifySignature(pub, digest[:], sig)
		if err != nil && !errors.Is(err, hsm.ErrInvalidSignature) {
			t.Fatalf("unclassified error: %v", err)
		}
		if (err == nil) != want {
			t.Fatalf("VerifySignature: %v, reference verifier: %t, for %x", err, want, sig)
		}
	})
}
