package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"

	"github.com/btcsuite/btcd/btcec/v2"
	btcecdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/miekg/pkcs11"
)

// Curve names an elliptic curve supported for native token keys.
type Curve int

// Supported curves.
const (
	// Secp256k1 is the Bitcoin/Ethereum curve; signatures are low-S.
	Secp256k1 Curve = iota + 1
	// P256 is NIST P-256 (operator device keys).
	P256
)

// DER-encoded named-curve OIDs for CKA_EC_PARAMS.
var (
	oidSecp256k1 = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}                   // 1.3.132.0.10
	oidP256      = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07} // 1.2.840.10045.3.1.7
)

// String returns the curve's conventional name.
func (c Curve) String() string {
	switch c {
	case Secp256k1:
		return "secp256k1"
	case P256:
		return "P-256"
	}
	return fmt.Sprintf("Curve(%d)", int(c))
}

// ParseCurve accepts "secp256k1" and "p256"/"P-256"/"prime256v1".
func ParseCurve(s string) (Curve, error) {
	switch s {
	case "secp256k1":
		return Secp256k1, nil
	case "p256", "P256", "P-256", "prime256v1", "secp256r1":
		return P256, nil
	}
	return 0, fmt.Errorf("hsm: unknown curve %q (want secp256k1 or p256)", s)
}

func (c Curve) params() ([]byte, error) {
	switch c {
	case Secp256k1:
		return oidSecp256k1, nil
	case P256:
		return oidP256, nil
	}
	return nil, fmt.Errorf("hsm: unsupported curve %v", c)
}

func (c Curve) order() *big.Int {
	if c == Secp256k1 {
		return btcec.S256().N
	}
	return elliptic.P256().Params().N
}

// ECKey is an EC key pair whose private half lives in the token. It
// implements crypto.Signer and is safe for concurrent use.
type ECKey struct {
	tok   *Token
	label string
	id    []byte
	curve Curve
	priv  pkcs11.ObjectHandle
	point []byte // uncompressed SEC1 point
	pub   *ecdsa.PublicKey
	k1    *btcec.PublicKey // only for Secp256k1
}

var _ crypto.Signer = (*ECKey)(nil)

// GenerateECKey generates a key pair on curve c inside the token. The private
// key is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE=true, CKA_EXTRACTABLE=false
// and sign-only. It returns ErrKeyExists if a private key with this label is
// present.
func (t *Token) GenerateECKey(label string, c Curve) (*ECKey, error) {
	if label == "" {
		return nil, fmt.Errorf("hsm: empty key label")
	}
	params, err := c.params()
	if err != nil {
		return nil, err
	}
	t.keys.Lock()
	defer t.keys.Unlock()
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("hsm: random: %w", err)
	}
	err = t.withSession(func(sh pkcs11.SessionHandle) error {
		hs, err := t.findObjects(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		})
		if err != nil {
			return t.wrap("find key", err)
		}
		if len(hs) > 0 {
			return fmt.Errorf("%w: a private key labelled %q is in token %q", ErrKeyExists, label, t.info.Label)
		}
		_, _, err = t.ctx.GenerateKeyPair(sh,
			[]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
			[]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
				pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			},
			[]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
				pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
				pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			})
		if err != nil {
			return t.wrap("generate EC key pair", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t.ECKey(label)
}

// ECKey finds the EC key pair labelled label, checks that its private key is
// safe (sensitive, never extractable), decodes the public key, and checks
// with a probe signature that the two halves belong together, so Public()
// is the key that signs. It returns ErrKeyNotFound if there is none.
func (t *Token) ECKey(label string) (*ECKey, error) {
	k := &ECKey{tok: t, label: label}
	err := t.withSession(func(sh pkcs11.SessionHandle) error {
		priv, err := t.findOne(sh, "EC private key", label, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		})
		if err != nil {
			if isPKCS11(err) {
				return t.wrap("find key", err)
			}
			return err
		}
		a, err := t.keyAttributes(sh, priv)
		if err != nil {
			return t.wrap("read key attributes", err)
		}
		if !a.Safe() {
			return fmt.Errorf("%w: EC key %q: token=%t sensitive=%t extractable=%t always_sensitive=%t never_extractable=%t",
				ErrUnsafeKey, label, a.Token, a.Sensitive, a.Extractable, a.AlwaysSensitive, a.NeverExtractable)
		}
		id, _ := hex.DecodeString(a.ID)
		pubTmpl := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		}
		if len(id) > 0 {
			pubTmpl = append(pubTmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
		}
		pub, err := t.findOne(sh, "EC public key", label, pubTmpl)
		if err != nil {
			if isPKCS11(err) {
				return t.wrap("find public key", err)
			}
			return err
		}
		m, err := t.getAttrs(sh, pub, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
		if err != nil {
			return t.wrap("read public key", err)
		}
		switch params := m[pkcs11.CKA_EC_PARAMS]; {
		case bytes.Equal(params, oidSecp256k1):
			k.curve = Secp256k1
		case bytes.Equal(params, oidP256):
			k.curve = P256
		default:
			return fmt.Errorf("hsm: EC key %q: unsupported curve parameters %x", label, params)
		}
		if err := k.setPoint(m[pkcs11.CKA_EC_POINT]); err != nil {
			return fmt.Errorf("hsm: EC key %q: %w", label, err)
		}
		k.id, k.priv = id, priv
		return nil
	})
	if err != nil {
		return nil, err
	}
	probe := sha256.Sum256(append([]byte("custody/hsm key probe\x00"), k.point...))
	if _, _, err := k.SignRS(probe[:]); err != nil {
		return nil, fmt.Errorf("hsm: EC key %q: private and public halves do not match: %w", label, err)
	}
	return k, nil
}

// setPoint decodes CKA_EC_POINT (see parseECPoint) and sets the key's
// public halves; on error the key is left unchanged.
func (k *ECKey) setPoint(v []byte) error {
	point, pub, k1, err := parseECPoint(k.curve, v)
	if err != nil {
		return err
	}
	k.pub, k.k1, k.point = pub, k1, point
	return nil
}

// pointLen is the length of an uncompressed SEC 1 point on c (0x04 || X ||
// Y), or 0 for an unsupported curve.
func (c Curve) pointLen() int {
	switch c {
	case Secp256k1, P256:
		return 1 + 2*32
	}
	return 0
}

// parseECPoint decodes CKA_EC_POINT of a key on curve c and returns the
// uncompressed SEC 1 point (a copy) and the public key it holds. PKCS#11
// 2.40 makes CKA_EC_POINT a DER OCTET STRING around the point; some tokens
// return the raw point. The two cannot be told apart by their first bytes: a
// raw point whose X starts with 0x3f (04 3f ...) is also a complete DER
// OCTET STRING of 63 bytes. So each form is taken only if it yields a valid
// point: the DER form if v parses as an OCTET STRING with nothing after it
// and its content is an uncompressed point on c, else the raw form if v
// itself is one. At most one can hold (the wrapped point is two bytes
// longer than the raw one), so the result does not depend on the order.
func parseECPoint(c Curve, v []byte) (point []byte, pub *ecdsa.PublicKey, k1 *btcec.PublicKey, err error) {
	n := c.pointLen()
	if n == 0 {
		return nil, nil, nil, fmt.Errorf("CKA_EC_POINT of %d bytes: unsupported curve %v", len(v), c)
	}
	isPoint := func(b []byte) bool { return len(b) == n && b[0] == 4 }
	var inner []byte
	rest, derErr := asn1.Unmarshal(v, &inner)
	wrapped := derErr == nil && len(rest) == 0 && isPoint(inner)
	if wrapped {
		pub, k1, err := parsePublicKey(c, inner)
		if err == nil {
			return bytes.Clone(inner), pub, k1, nil
		}
		derErr = err
	}
	if isPoint(v) {
		pub, k1, err := parsePublicKey(c, v)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("CKA_EC_POINT of %d bytes: raw point not on %v: %v", len(v), c, err)
		}
		return bytes.Clone(v), pub, k1, nil
	}
	if wrapped {
		return nil, nil, nil, fmt.Errorf("CKA_EC_POINT of %d bytes: DER OCTET STRING holds a point not on %v: %v", len(v), c, derErr)
	}
	return nil, nil, nil, fmt.Errorf("CKA_EC_POINT of %d bytes is not an uncompressed %v point, raw (%d bytes: 04 || X || Y) or in a DER OCTET STRING (%d bytes)",
		len(v), c, n, n+2)
}

// Label returns the key's label.
func (k *ECKey) Label() string { return k.label }

// Curve returns the key's curve.
func (k *ECKey) Curve() Curve { return k.curve }

// Public returns the public key as *ecdsa.PublicKey. For Secp256k1 its Curve
// is btcec.S256(), as go-ethereum and tss-lib expect.
func (k *ECKey) Public() crypto.PublicKey { return k.pub }

// PublicKey is Public without the interface conversion.
func (k *ECKey) PublicKey() *ecdsa.PublicKey { return k.pub }

// PublicKeyBytes returns the uncompressed SEC1 point (0x04 || X || Y).
func (k *ECKey) PublicKeyBytes() []byte { return bytes.Clone(k.point) }

// BTCECPublicKey returns the secp256k1 public key, or nil for other curves.
func (k *ECKey) BTCECPublicKey() *btcec.PublicKey { return k.k1 }

// Sign signs digest (already hashed by the caller; rand is ignored, the token
// brings its own randomness) and returns an ASN.1 DER ECDSA-Sig-Value, as
// crypto/ecdsa does. When opts names a hash, digest must have its size.
func (k *ECKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 && len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("hsm: sign: digest is %d bytes, %v needs %d", len(digest), opts.HashFunc(), opts.HashFunc().Size())
	}
	r, s, err := k.SignRS(digest)
	if err != nil {
		return nil, err
	}
	return MarshalSignature(r, s)
}

// SignRS signs digest with CKM_ECDSA in the token and returns (r, s). The
// signature has been verified against the public key; for Secp256k1, s is
// in the lower half of the group order (low-S, as Bitcoin and Ethereum
// require). Secp256k1 digests must be 32 bytes.
func (k *ECKey) SignRS(digest []byte) (r, s *big.Int, err error) {
	if len(digest) == 0 || len(digest) > 64 {
		return nil, nil, fmt.Errorf("hsm: sign: digest of %d bytes (want 1..64)", len(digest))
	}
	if k.curve == Secp256k1 && len(digest) != 32 {
		return nil, nil, fmt.Errorf("hsm: sign: secp256k1 digest is %d bytes, want 32", len(digest))
	}
	var raw []byte
	err = k.tok.withSession(func(sh pkcs11.SessionHandle) error {
		if err := k.tok.ctx.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, k.priv); err != nil {
			return k.tok.wrap("sign: C_SignInit", err)
		}
		var err error
		raw, err = k.tok.ctx.Sign(sh, digest)
		if err != nil {
			return k.tok.wrap("sign: C_Sign", err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	r, s, err = k.splitRS(raw)
	if err != nil {
		return nil, nil, err
	}
	if err := k.verify(digest, r, s); err != nil {
		return nil, nil, err
	}
	return r, s, nil
}

// splitRS is the one place the token's r||s output is decoded: two
// big-endian halves of equal length, each in [1, n-1]; for Secp256k1 s is
// normalised to low-S here.
func (k *ECKey) splitRS(raw []byte) (r, s *big.Int, err error) {
	if len(raw) != 64 {
		return nil, nil, fmt.Errorf("%w: %d bytes, want 64 (r||s)", ErrBadSignature, len(raw))
	}
	n := k.curve.order()
	r = new(big.Int).SetBytes(raw[:32])
	s = new(big.Int).SetBytes(raw[32:])
	if r.Sign() == 0 || s.Sign() == 0 || r.Cmp(n) >= 0 || s.Cmp(n) >= 0 {
		return nil, nil, fmt.Errorf("%w: r or s out of range", ErrBadSignature)
	}
	if k.curve == Secp256k1 && !k.curve.IsLowS(s) {
		s.Sub(n, s)
	}
	return r, s, nil
}

// verify checks (r, s) over digest with the public key, outside the token.
func (k *ECKey) verify(digest []byte, r, s *big.Int) error {
	v := verifier{curve: k.curve, ec: k.pub, k1: k.k1}
	if !v.verifyRS(digest, r, s) {
		return fmt.Errorf("%w: key %q", ErrBadSignature, k.label)
	}
	return nil
}

// RecoveryID returns the Ethereum recovery id (0 or 1) of the secp256k1
// signature (r, s) over digest by this key: the v that makes ecrecover
// return this key's address (add 27 for legacy v, or use it as the EIP-155
// / typed-transaction y-parity).
func (k *ECKey) RecoveryID(digest []byte, r, s *big.Int) (byte, error) {
	if k.curve != Secp256k1 {
		return 0, fmt.Errorf("hsm: recovery id needs a secp256k1 key, %q is %v", k.label, k.curve)
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 256 || s.BitLen() > 256 {
		return 0, fmt.Errorf("hsm: recovery id: r or s out of range")
	}
	compact := make([]byte, 65)
	r.FillBytes(compact[1:33])
	s.FillBytes(compact[33:])
	for v := byte(0); v < 2; v++ {
		compact[0] = 27 + v
		pk, _, err := btcecdsa.RecoverCompact(compact, digest)
		if err == nil && pk.IsEqual(k.k1) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: no recovery id yields key %q", ErrBadSignature, k.label)
}

// SignEthereum signs a 32-byte digest and returns the 65-byte [R || S || V]
// form of go-ethereum's crypto.Sign (V is 0 or 1, S is low).
func (k *ECKey) SignEthereum(digest []byte) ([]byte, error) {
	r, s, err := k.SignRS(digest)
	if err != nil {
		return nil, err
	}
	v, err := k.RecoveryID(digest, r, s)
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 65)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:64])
	sig[64] = v
	return sig, nil
}
