package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// NodeSig is a signature made with a node key (the key of the node's
// certificate, or the same key in its HSM) over a domain-separated
// SHA-256 digest: checkpoints, claim attestations, wallet key attestations
// and cold export attestations all take this form. PublicKey is the DER
// SubjectPublicKeyInfo, so a verifier checks it against the
// [Node.KeyFingerprint] its own node set pins.
type NodeSig struct {
	Node      NodeID `json:"node"`
	PublicKey []byte `json:"public_key"`
	Signature []byte `json:"signature"`
}

// SignNodeDigest signs digest as node with key: ECDSA (ASN.1) over the
// digest, or Ed25519 over the digest bytes.
func SignNodeDigest(digest []byte, node NodeID, key crypto.Signer) (NodeSig, error) {
	if key == nil {
		return NodeSig{}, errors.New("no node key")
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return NodeSig{}, fmt.Errorf("node key: %w", err)
	}
	opts := crypto.SignerOpts(crypto.SHA256)
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		opts = crypto.Hash(0)
	}
	sig, err := key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return NodeSig{}, err
	}
	return NodeSig{Node: node, PublicKey: pub, Signature: sig}, nil
}

// PinnedBy reports whether s is by a member of nodes with the key the set
// pins for it (the signature itself is not checked: for recounting
// signatures verified when they were accepted).
func (s NodeSig) PinnedBy(nodes map[NodeID]*Node) bool {
	n := nodes[s.Node]
	if n == nil {
		return false
	}
	sum := sha256.Sum256(s.PublicKey)
	return hex.EncodeToString(sum[:]) == n.KeyFingerprint
}

// VerifyDigest checks s over digest against the node set nodes: the signer
// is in it, its key is the one the set pins for it, and the signature
// verifies.
func (s NodeSig) VerifyDigest(digest []byte, nodes map[NodeID]*Node) error {
	n := nodes[s.Node]
	if n == nil {
		return fmt.Errorf("%q is not in the node set", s.Node)
	}
	sum := sha256.Sum256(s.PublicKey)
	if hex.EncodeToString(sum[:]) != n.KeyFingerprint {
		return fmt.Errorf("the key of %q's signature is not the key its node set entry pins", s.Node)
	}
	pub, err := x509.ParsePKIXPublicKey(s.PublicKey)
	if err != nil {
		return fmt.Errorf("%q's public key: %v", s.Node, err)
	}
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest, s.Signature)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, digest, s.Signature)
	default:
		return fmt.Errorf("%q's key type %T is not supported", s.Node, pub)
	}
	if !ok {
		return fmt.Errorf("%q's signature does not verify", s.Node)
	}
	return nil
}

// AttestationDigest is the SHA-256 a node signs to attest head: the
// domain (which ends in 0x00), then the head's JSON (fields in declaration
// order).
func AttestationDigest(domain string, head any) []byte {
	b, err := json.Marshal(head)
	if err != nil {
		panic("pki: attestation head not serialisable: " + err.Error())
	}
	d := sha256.New()
	d.Write([]byte(domain))
	d.Write(b)
	return d.Sum(nil)
}

// NodeQuorum is how many of a node set of n must sign a checkpoint or
// attest a claim or an export: any two quorums share at least two nodes,
// so with one compromised node they still share an honest one, and two
// conflicting histories can never both be certified (a plain majority of 3
// is 2, which one compromised node and one follower it fed a forged log
// would reach). 3 of 3, 3 of 4, 4 of 5, 5 of 7.
func NodeQuorum(n int) int { return min(n, (n+3)/2) }

// MinTolerantNodes is the smallest node set that tolerates one compromised
// node and one node down at once (NodeQuorum(4) = 3): the ledger refuses a
// removal below it unless the admins signed reduced_tolerance, and the
// offline signer folds node changes by the same rule.
const MinTolerantNodes = 4

// VerifyQuorum checks that distinct members of nodes, at least
// NodeQuorum(len(nodes)), signed digest; a signature that does not verify
// is reported only when the quorum is missed. what names the statement
// in errors.
func VerifyQuorum(what string, digest []byte, sigs []NodeSig, nodes map[NodeID]*Node) error {
	if len(nodes) == 0 {
		return fmt.Errorf("%s: no node set to verify against", what)
	}
	seen := map[NodeID]bool{}
	var bad []string
	for _, s := range sigs {
		if seen[s.Node] {
			continue
		}
		if err := s.VerifyDigest(digest, nodes); err != nil {
			bad = append(bad, err.Error())
			continue
		}
		seen[s.Node] = true
	}
	if need := NodeQuorum(len(nodes)); len(seen) < need {
		err := fmt.Errorf("%s carries %d valid signatures of the node set, the quorum is %d of %d", what, len(seen), need, len(nodes))
		if len(bad) > 0 {
			err = fmt.Errorf("%w (%s)", err, strings.Join(bad, "; "))
		}
		return err
	}
	return nil
}
