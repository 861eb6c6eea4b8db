package hsm_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
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
)

// softKey is a software key pair on curve c with its public key as
// ParsePublicKey returns it, for tests that need no token.
type softKey struct {
	curve hsm.Curve
	priv  *ecdsa.PrivateKey
	k1    *btcec.PrivateKey // secp256k1 only
	pub   *ecdsa.PublicKey
}

func newSoftKey(t *testing.T, c hsm.Curve) softKey {
	t.Helper()
	var point []byte
	k := softKey{curve: c}
	switch c {
	case hsm.Secp256k1:
		priv, err := btcec.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		k.k1, k.priv = priv, priv.ToECDSA()
		point = priv.PubKey().SerializeUncompressed()
	case hsm.P256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k.priv = priv
		if point, err = priv.PublicKey.Bytes(); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := hsm.ParsePublicKey(c, point)
	if err != nil {
		t.Fatal(err)
	}
	k.pub = pub
	return k
}

// signRS signs digest in software; secp256k1 signatures come out low-S
// (btcec's RFC 6979 signer), P-256 ones as crypto/ecdsa makes them.
func (k softKey) signRS(t *testing.T, digest []byte) (r, s *big.Int) {
	t.Helper()
	if k.curve == hsm.Secp256k1 {
		sig := btcecdsa.Sign(k.k1, digest)
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(sig.Serialize(), &rs); err != nil {
			t.Fatal(err)
		}
		return rs.R, rs.S
	}
	der, err := ecdsa.SignASN1(rand.Reader, k.priv, digest)
	if err != nil {
		t.Fatal(err)
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		t.Fatal(err)
	}
	return rs.R, rs.S
}

func order(c hsm.Curve) *big.Int {
	if c == hsm.Secp256k1 {
		return btcec.S256().N
	}
	return elliptic.P256().Params().N
}

func mustDER(t *testing.T, r, s *big.Int) []byte {
	t.Helper()
	der, err := hsm.MarshalSignature(r, s)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifySignature(t *testing.T) {
	digest := sha256.Sum256([]byte("withdrawal"))
	for _, c := range []hsm.Curve{hsm.Secp256k1, hsm.P256} {
		t.Run(c.String(), func(t *testing.T) {
			k, other := newSoftKey(t, c), newSoftKey(t, c)
			r, s := k.signRS(t, digest[:])
			der := mustDER(t, r, s)
			if err := hsm.VerifySignature(k.pub, digest[:], der); err != nil {
				t.Fatalf("valid signature refused: %v", err)
			}
			// The encoding is the one crypto/ecdsa and btcec read.
			if c == hsm.P256 && !ecdsa.VerifyASN1(k.pub, digest[:], der) {
				t.Fatal("MarshalSignature output does not verify with crypto/ecdsa")
			}
			if c == hsm.Secp256k1 {
				if sig, err := btcecdsa.ParseDERSignature(der); err != nil || !sig.Verify(digest[:], k.k1.PubKey()) {
					t.Fatalf("MarshalSignature output does not verify with btcec: %v", err)
				}
			}
			n := order(c)
			high := new(big.Int).Sub(n, s) // the same signature, other half
			otherDigest := sha256.Sum256([]byte("another withdrawal"))
			flipped := append([]byte(nil), der...)
			flipped[len(flipped)-1] ^= 1
			cases := map[string]verifyCase{
				"wrong key":           {other.pub, digest[:], der},
				"other digest":        {k.pub, otherDigest[:], der},
				"tampered signature":  {k.pub, digest[:], flipped},
				"truncated DER":       {k.pub, digest[:], der[:len(der)-1]},
				"trailing bytes":      {k.pub, digest[:], append(append([]byte(nil), der...), 0)},
				"empty":               {k.pub, digest[:], nil},
				"raw r||s, not DER":   {k.pub, digest[:], append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)},
				"non-minimal integer": {k.pub, digest[:], derPaddedR(r, s)},
				"long-form length":    {k.pub, digest[:], append([]byte{0x30, 0x81}, der[1:]...)},
				"r zero":              {k.pub, digest[:], mustDER(t, big.NewInt(0), s)},
				"s zero":              {k.pub, digest[:], mustDER(t, r, big.NewInt(0))},
				"r negative":          {k.pub, digest[:], mustDER(t, new(big.Int).Neg(r), s)},
				"r + n":               {k.pub, digest[:], mustDER(t, new(big.Int).Add(r, n), s)},
				"s = n":               {k.pub, digest[:], mustDER(t, r, n)},
				"empty digest":        {k.pub, nil, der},
				"ed25519 key":         {ed25519.PublicKey(make([]byte, 32)), digest[:], der},
				"nil key":             {(*ecdsa.PublicKey)(nil), digest[:], der},
				"not a key":           {nil, digest[:], der},
				"other curve's key":   {newSoftKey(t, otherCurve(c)).pub, digest[:], der},
			}
			if c == hsm.Secp256k1 {
				cases["high-S"] = verifyCase{k.pub, digest[:], mustDER(t, r, high)}
				cases["20-byte digest"] = verifyCase{k.pub, digest[:20], der}
			}
			for name, tc := range cases {
				if err := hsm.VerifySignature(tc.pub, tc.digest, tc.sig); !errors.Is(err, hsm.ErrInvalidSignature) {
					t.Errorf("%s: got %v, want ErrInvalidSignature", name, err)
				}
			}
			// P-256 has no low-S rule: the other half verifies too.
			if c == hsm.P256 {
				if err := hsm.VerifySignature(k.pub, digest[:], mustDER(t, r, high)); err != nil {
					t.Errorf("P-256 high-S refused: %v", err)
				}
			}
			if !c.IsLowS(new(big.Int).Rsh(n, 1)) || c.IsLowS(new(big.Int).Add(new(big.Int).Rsh(n, 1), big.NewInt(1))) {
				t.Error("IsLowS does not split at n/2")
			}
		})
	}
}

type verifyCase struct {
	pub         any
	digest, sig []byte
}

// derPaddedR is the DER of (r, s) but for one leading zero byte too many in
// r: BER would read the same numbers, DER forbids it.
func derPaddedR(r, s *big.Int) []byte {
	integer := func(v *big.Int) []byte {
		b := v.Bytes()
		if b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return append([]byte{0x02, byte(len(b))}, b...)
	}
	ri := integer(r)
	ri = append([]byte{0x02, ri[1] + 1, 0}, ri[2:]...)
	body := append(ri, integer(s)...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

func otherCurve(c hsm.Curve) hsm.Curve {
	if c == hsm.Secp256k1 {
		return hsm.P256
	}
	return hsm.Secp256k1
}

func TestParsePublicKey(t *testing.T) {
	k1 := newSoftKey(t, hsm.Secp256k1)
	compressed := k1.k1.PubKey().SerializeCompressed()
	pub, err := hsm.ParsePublicKey(hsm.Secp256k1, compressed)
	if err != nil || !pub.Equal(k1.pub) || pub.Curve != btcec.S256() {
		t.Fatalf("compressed secp256k1 key: %v", err)
	}
	p := newSoftKey(t, hsm.P256)
	pPoint, _ := p.priv.PublicKey.Bytes()
	offCurve := append([]byte(nil), pPoint...)
	offCurve[64] ^= 1
	for name, tc := range map[string]struct {
		c hsm.Curve
		b []byte
	}{
		"P-256 compressed":       {hsm.P256, elliptic.MarshalCompressed(elliptic.P256(), p.pub.X, p.pub.Y)},
		"P-256 off the curve":    {hsm.P256, offCurve},
		"secp256k1 off curve":    {hsm.Secp256k1, func() []byte { b := k1.k1.PubKey().SerializeUncompressed(); b[64] ^= 1; return b }()},
		"P-256 point as k1":      {hsm.Secp256k1, pPoint},
		"empty":                  {hsm.Secp256k1, nil},
		"unknown curve":          {hsm.Curve(99), pPoint},
		"secp256k1 wrong prefix": {hsm.Secp256k1, append([]byte{0x01}, k1.k1.PubKey().SerializeUncompressed()[1:]...)},
	} {
		if _, err := hsm.ParsePublicKey(tc.c, tc.b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestVerifySignatureOfTokenKeys: what an ECKey signs in the token verifies
// with VerifySignature against ECKey.Public, and only for its digest.
func TestVerifySignatureOfTokenKeys(t *testing.T) {
	tok, _ := openTest(t, "verify")
	for _, c := range []hsm.Curve{hsm.Secp256k1, hsm.P256} {
		k, err := tok.GenerateECKey("k-"+c.String(), c)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte(c.String()))
		sig, err := k.Sign(nil, d[:], nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := hsm.VerifySignature(k.Public(), d[:], sig); err != nil {
			t.Fatalf("%v: token signature refused: %v", c, err)
		}
		pub, err := hsm.ParsePublicKey(c, k.PublicKeyBytes())
		if err != nil || !pub.Equal(k.Public()) {
			t.Fatalf("%v: ParsePublicKey(PublicKeyBytes) differs from Public: %v", c, err)
		}
		d[0] ^= 1
		if err := hsm.VerifySignature(pub, d[:], sig); !errors.Is(err, hsm.ErrInvalidSignature) {
			t.Fatalf("%v: signature verified for another digest: %v", c, err)
		}
	}
}
