package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
)

// Validate checks that id is usable as a node ID: 1..64 bytes of letters,
// digits and . _ -. A node ID is a raft server ID, a tss party, a file name
// and a log field, so it stays boring. Certificates are not refused for
// other IDs here; the genesis and the ledger's node set are where IDs are
// pinned, and they require this form.
func (id NodeID) Validate() error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("pki: node id %q must be 1..64 characters", string(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("pki: node id %q: only letters, digits and . _ - are allowed", string(id))
		}
	}
	return nil
}

// KeyFingerprint is how the cluster pins a certificate's key: the lowercase
// hex SHA-256 of the certificate's DER-encoded SubjectPublicKeyInfo. It
// survives re-issuing a certificate for the same key (new validity, new
// serial) and changes when the key changes.
func KeyFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// ValidKeyFingerprint checks the form of a [KeyFingerprint]: exactly 64
// lowercase hex digits (one spelling per key, so fingerprints compare as
// strings).
func ValidKeyFingerprint(s string) error {
	if len(s) != 2*sha256.Size {
		return fmt.Errorf("pki: key fingerprint must be %d hex digits, got %d characters", 2*sha256.Size, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("pki: key fingerprint: character %d is not a lowercase hex digit", i)
		}
	}
	return nil
}

// NodeCertificate returns the node ID a node certificate names, applying
// the identity rules [VerifyPeer] applies to a node (exactly one role,
// RoleNode; the ID in the CommonName; both server and client
// authentication) plus [NodeID.Validate]. It does not verify the chain: it
// is for ceremonies that pin the certificate's key by [KeyFingerprint]
// instead (the genesis).
func NodeCertificate(cert *x509.Certificate) (NodeID, error) {
	if ou := cert.Subject.OrganizationalUnit; len(ou) != 1 || Role(ou[0]) != RoleNode {
		return "", fmt.Errorf("pki: not a node certificate (OU %q, want exactly %q)", ou, RoleNode)
	}
	id := NodeID(cert.Subject.CommonName)
	if err := id.Validate(); err != nil {
		return "", err
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if !slices.Contains(cert.ExtKeyUsage, u) {
			return "", fmt.Errorf("pki: node certificate %q lacks server and client authentication", string(id))
		}
	}
	return id, nil
}

// Node is one node of a cluster's node set: its ID (the CommonName of its
// node certificate) and the [KeyFingerprint] of that certificate's public
// key. A certificate for another key does not make a node of the set.
type Node struct {
	ID             NodeID `json:"id"`
	KeyFingerprint string `json:"key_fingerprint"`
}
