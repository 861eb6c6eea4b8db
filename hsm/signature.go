package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/btcec/v2"
	btcecdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

// ErrInvalidSignature means a signature given to VerifySignature is not
// canonical DER, has r or s out of range, is high-S on secp256k1, or does not
// verify against the public key.
var ErrInvalidSignature = errors.New("hsm: invalid signature")

// ecdsaSig is the ASN.1 ECDSA-Sig-Value (SEC 1, RFC 3279).
type ecdsaSig struct{ R, S *big.Int }

// MarshalSignature returns the ASN.1 DER ECDSA-Sig-Value SEQUENCE { r
// INTEGER, s INTEGER } of (r, s), the encoding crypto/ecdsa, Bitcoin and
// X.509 use.
func MarshalSignature(r, s *big.Int) ([]byte, error) {
	return asn1.Marshal(ecdsaSig{r, s})
}

// IsLowS reports whether s is at most half the order of c. Secp256k1
// signatures must be low-S (Bitcoin BIP 62/146, Ethereum EIP-2); P-256 has no
// such rule.
func (c Curve) IsLowS(s *big.Int) bool {
	return s.Cmp(new(big.Int).Rsh(c.order(), 1)) <= 0
}

// ParsePublicKey decodes a SEC 1 public key on curve c: for P256 the
// uncompressed point (0x04 || X || Y); for Secp256k1 whatever
// btcec.ParsePubKey accepts (uncompressed, 33-byte compressed, or hybrid).
// The point is checked to be on the curve. As with ECKey.Public, the
// Secp256k1 key's Curve is btcec.S256().
func ParsePublicKey(c Curve, b []byte) (*ecdsa.PublicKey, error) {
	pub, _, err := parsePublicKey(c, b)
	if err != nil {
		return nil, fmt.Errorf("hsm: public key: %w", err)
	}
	return pub, nil
}

// parsePublicKey is ParsePublicKey without the error prefix; k1, the btcec
// form, is set for Secp256k1.
func parsePublicKey(c Curve, b []byte) (pub *ecdsa.PublicKey, k1 *btcec.PublicKey, err error) {
	switch c {
	case Secp256k1:
		if k1, err = btcec.ParsePubKey(b); err != nil {
			return nil, nil, err
		}
		return k1.ToECDSA(), k1, nil
	case P256:
		if pub, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b); err != nil {
			return nil, nil, err
		}
		return pub, nil, nil
	}
	return nil, nil, fmt.Errorf("unsupported curve %v", c)
}

// VerifySignature checks sig, an ASN.1 DER ECDSA-Sig-Value, over digest
// (already hashed) with pub, an *ecdsa.PublicKey on secp256k1 (Curve
// btcec.S256(), as ECKey.Public and ParsePublicKey return) or P-256. It is
// strict: the encoding must be canonical DER with nothing after it, r and s
// must be in [1, n-1], a secp256k1 signature must be low-S and its digest 32
// bytes. Every refusal wraps ErrInvalidSignature.
func VerifySignature(pub crypto.PublicKey, digest, sig []byte) error {
	pk, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: public key is %T, want *ecdsa.PublicKey", ErrInvalidSignature, pub)
	}
	if pk == nil {
		return fmt.Errorf("%w: nil public key", ErrInvalidSignature)
	}
	v, err := newVerifier(pk)
	if err != nil {
		return err
	}
	if len(digest) == 0 || len(digest) > 64 || (v.curve == Secp256k1 && len(digest) != 32) {
		return fmt.Errorf("%w: digest of %d bytes for %v", ErrInvalidSignature, len(digest), v.curve)
	}
	var rs ecdsaSig
	rest, err := asn1.Unmarshal(sig, &rs)
	if err != nil {
		// encoding/asn1's own message can be a page long: one line here.
		return fmt.Errorf("%w: not a DER ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER })", ErrInvalidSignature)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after the DER signature", ErrInvalidSignature, len(rest))
	}
	// Whatever encoding/asn1 tolerates, only the one canonical DER form of
	// (r, s) is accepted: signatures are not malleable through encoding.
	if canonical, err := MarshalSignature(rs.R, rs.S); err != nil || !bytes.Equal(canonical, sig) {
		return fmt.Errorf("%w: not canonical DER", ErrInvalidSignature)
	}
	n := v.curve.order()
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.Cmp(n) >= 0 || rs.S.Cmp(n) >= 0 {
		return fmt.Errorf("%w: r or s out of range", ErrInvalidSignature)
	}
	if v.curve == Secp256k1 && !v.curve.IsLowS(rs.S) {
		return fmt.Errorf("%w: high-S secp256k1 signature", ErrInvalidSignature)
	}
	if !v.verifyRS(digest, rs.R, rs.S) {
		return fmt.Errorf("%w: does not verify against the public key", ErrInvalidSignature)
	}
	return nil
}

// verifier is a public key in the form each curve's verifier wants: btcec for
// secp256k1, crypto/ecdsa for P-256. It is the one software ECDSA check of
// this package, for VerifySignature and for every signature a token returns.
type verifier struct {
	curve Curve
	ec    *ecdsa.PublicKey // used for P256
	k1    *btcec.PublicKey // used for Secp256k1
}

func newVerifier(pk *ecdsa.PublicKey) (verifier, error) {
	switch {
	case pk.Curve == elliptic.P256():
		return verifier{curve: P256, ec: pk}, nil
	case pk.Curve == btcec.S256():
		if pk.X == nil || pk.Y == nil || pk.X.Sign() < 0 || pk.Y.Sign() < 0 || pk.X.BitLen() > 256 || pk.Y.BitLen() > 256 {
			return verifier{}, fmt.Errorf("%w: secp256k1 public key out of range", ErrInvalidSignature)
		}
		point := make([]byte, 65)
		point[0] = 4
		pk.X.FillBytes(point[1:33])
		pk.Y.FillBytes(point[33:])
		k1, err := btcec.ParsePubKey(point) // checks the point is on the curve
		if err != nil {
			return verifier{}, fmt.Errorf("%w: public key: %v", ErrInvalidSignature, err)
		}
		return verifier{curve: Secp256k1, k1: k1}, nil
	}
	return verifier{}, fmt.Errorf("%w: public key on an unsupported curve", ErrInvalidSignature)
}

// verifyRS checks (r, s), each in [1, n-1], over digest.
func (v verifier) verifyRS(digest []byte, r, s *big.Int) bool {
	switch v.curve {
	case Secp256k1:
		var rs, ss btcec.ModNScalar
		if rs.SetByteSlice(r.Bytes()) || ss.SetByteSlice(s.Bytes()) {
			return false // overflowed n: out of range
		}
		return btcecdsa.NewSignature(&rs, &ss).Verify(digest, v.k1)
	case P256:
		return ecdsa.Verify(v.ec, digest, r, s)
	}
	return false
}
