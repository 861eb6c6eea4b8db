package quorum

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// DeviceKind says how a device's public key verifies signatures and where its
// private key lives.
type DeviceKind string

// Device kinds.
const (
	// DeviceEd25519 is an Ed25519 key kept in a key file on the operator's
	// machine (`custody operator keygen`). PublicKey is the 32-byte key; the
	// signature is Ed25519 (RFC 8032) over the 32-byte approval digest.
	DeviceEd25519 DeviceKind = "ed25519"
	// DeviceP256 is an EC P-256 key held on the operator's own PKCS#11 token.
	// PublicKey is the 65-byte uncompressed SEC 1 point; the signature is
	// ASN.1 DER ECDSA over the 32-byte approval digest.
	DeviceP256 DeviceKind = "ecdsa-p256"
	// DeviceWebAuthn is reserved for FIDO2/WebAuthn credentials (opaque
	// Credential data). Such devices can be enrolled later but do not verify
	// yet: their approvals are ignored as ReasonUnsupportedDevice.
	DeviceWebAuthn DeviceKind = "webauthn"
)

// DeviceStatus is active or revoked. Revocation is permanent: a revoked key
// is never re-enrolled under the same ID.
type DeviceStatus string

// Device statuses.
const (
	DeviceActive  DeviceStatus = "active"
	DeviceRevoked DeviceStatus = "revoked"
)

// ErrUnsupportedDevice is returned when verifying with a device kind this
// build cannot verify (WebAuthn for now).
var ErrUnsupportedDevice = errors.New("quorum: device kind cannot verify approvals yet")

// ErrBadSignature is returned when a signature does not verify.
var ErrBadSignature = errors.New("quorum: signature does not verify")

// Device is a public key an operator approves with.
type Device struct {
	// ID is derived from Kind and PublicKey by DeviceID; registries refuse
	// devices whose ID does not match.
	ID         string       `json:"id"`
	OperatorID string       `json:"operator_id"`
	Kind       DeviceKind   `json:"kind"`
	PublicKey  []byte       `json:"public_key"`
	Credential []byte       `json:"credential,omitempty"` // opaque, WebAuthn later
	Label      string       `json:"label,omitempty"`
	Status     DeviceStatus `json:"status"`
	RevokedAt  time.Time    `json:"revoked_at,omitzero"`
}

// DeviceID derives a device's ID from its kind and public key: the first 16
// bytes of SHA-256("custody/device/v1" 0x00 kind 0x00 key) in hex. The same
// key therefore always has the same ID and cannot be enrolled twice.
func DeviceID(kind DeviceKind, publicKey []byte) string {
	h := sha256.New()
	h.Write([]byte("custody/device/v1\x00"))
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(publicKey)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// ValidatePublicKey checks that key is well formed for kind.
func ValidatePublicKey(kind DeviceKind, key []byte) error {
	switch kind {
	case DeviceEd25519:
		if len(key) != ed25519.PublicKeySize {
			return fmt.Errorf("quorum: ed25519 public key must be %d bytes, got %d", ed25519.PublicKeySize, len(key))
		}
		return nil
	case DeviceP256:
		if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), key); err != nil {
			return fmt.Errorf("quorum: p-256 public key: %w", err)
		}
		return nil
	case DeviceWebAuthn:
		if len(key) == 0 || len(key) > 1024 {
			return errors.New("quorum: webauthn public key must be 1..1024 bytes")
		}
		return nil
	}
	return fmt.Errorf("quorum: unknown device kind %q", kind)
}

// VerifyDigest checks sig over digest with the device's public key. It does
// not look at the device's status: that is the registry's business.
func (d Device) VerifyDigest(digest [32]byte, sig []byte) error {
	switch d.Kind {
	case DeviceEd25519:
		if len(d.PublicKey) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return ErrBadSignature
		}
		if !ed25519.Verify(ed25519.PublicKey(d.PublicKey), digest[:], sig) {
			return ErrBadSignature
		}
		return nil
	case DeviceP256:
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), d.PublicKey)
		if err != nil {
			return ErrBadSignature
		}
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			return ErrBadSignature
		}
		return nil
	case DeviceWebAuthn:
		return ErrUnsupportedDevice
	}
	return fmt.Errorf("quorum: unknown device kind %q", d.Kind)
}

// PublicKeyBytes returns the registry encoding of a public key: 32 raw bytes
// for ed25519.PublicKey, the uncompressed SEC 1 point for a P-256
// *ecdsa.PublicKey.
func PublicKeyBytes(pub any) (DeviceKind, []byte, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return DeviceEd25519, append([]byte(nil), k...), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", nil, errors.New("quorum: only P-256 ECDSA device keys are supported")
		}
		b, err := k.Bytes()
		if err != nil {
			return "", nil, fmt.Errorf("quorum: p-256 public key: %w", err)
		}
		return DeviceP256, b, nil
	}
	return "", nil, fmt.Errorf("quorum: unsupported public key type %T", pub)
}

// checkNewDevice validates d for enrollment into r and fills its ID.
func (r Registry) checkNewDevice(d Device) (Device, error) {
	if err := ValidatePublicKey(d.Kind, d.PublicKey); err != nil {
		return Device{}, err
	}
	id := DeviceID(d.Kind, d.PublicKey)
	if d.ID != "" && d.ID != id {
		return Device{}, fmt.Errorf("quorum: device id %q does not match its key (want %s)", d.ID, id)
	}
	d.ID = id
	if _, dup := r.Devices[id]; dup {
		return Device{}, fmt.Errorf("quorum: device %s is already enrolled (or was revoked)", id)
	}
	op, ok := r.Operators[d.OperatorID]
	if !ok {
		return Device{}, fmt.Errorf("quorum: device %s: unknown operator %q", id, d.OperatorID)
	}
	if op.Status != StatusActive {
		return Device{}, fmt.Errorf("quorum: device %s: operator %q is suspended", id, op.ID)
	}
	if len(d.Credential) > 4096 || len(d.Label) > 128 {
		return Device{}, fmt.Errorf("quorum: device %s: credential or label too long", id)
	}
	if d.Status == "" {
		d.Status = DeviceActive
	}
	if d.Status != DeviceActive {
		return Device{}, fmt.Errorf("quorum: device %s: a new device must be active", id)
	}
	d.PublicKey = append([]byte(nil), d.PublicKey...)
	d.Credential = append([]byte(nil), d.Credential...)
	if len(d.Credential) == 0 {
		d.Credential = nil
	}
	d.RevokedAt = time.Time{}
	return d, nil
}
