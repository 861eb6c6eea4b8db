package preparams

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
)

// ErrInvalid is returned for pre-params that are incomplete (pre-v2 format
// without Paillier P/Q or without the NTilde proof values) or inconsistent.
var ErrInvalid = errors.New("preparams: invalid pre-params")

// Fingerprint is the hex SHA-256 of a modulus' big-endian bytes: how the
// committed fixtures are recognised without embedding them.
func Fingerprint(n *big.Int) string {
	h := sha256.Sum256(n.Bytes())
	return hex.EncodeToString(h[:])
}

// IsCommittedFixture reports whether p's Paillier N or NTilde is one of the
// committed test fixtures' (fingerprints.go).
func IsCommittedFixture(p *keygen.LocalPreParams) bool {
	if p == nil {
		return false
	}
	if p.PaillierSK != nil && p.PaillierSK.N != nil && fixtureFingerprints[Fingerprint(p.PaillierSK.N)] {
		return true
	}
	return p.NTildei != nil && fixtureFingerprints[Fingerprint(p.NTildei)]
}

// Validate checks that p is complete for tss-lib v2 (ValidateWithProof) and
// internally consistent: N = P*Q for the Paillier key, NTilde = (2P+1)(2Q+1)
// for the safe primes, and the bit sizes tss-lib generates. Outside a Go test
// binary it refuses the committed test fixtures (ErrFixtureOutsideTest),
// whatever way they arrived: their secrets are public.
func Validate(p *keygen.LocalPreParams) error {
	if p == nil || !p.ValidateWithProof() {
		return ErrInvalid
	}
	if !testing.Testing() && IsCommittedFixture(p) {
		return ErrFixtureOutsideTest
	}
	sk := p.PaillierSK
	if sk.N == nil || sk.LambdaN == nil || sk.PhiN == nil {
		return ErrInvalid
	}
	if new(bigInt).Mul(sk.P, sk.Q).Cmp(sk.N) != 0 {
		return errors.Join(ErrInvalid, errors.New("paillier N != P*Q"))
	}
	if sk.N.BitLen() < 2040 || p.NTildei.BitLen() < 2040 {
		return errors.Join(ErrInvalid, errors.New("modulus too small"))
	}
	one := bigOne()
	pp := new(bigInt).Add(new(bigInt).Lsh(p.P, 1), one)
	qq := new(bigInt).Add(new(bigInt).Lsh(p.Q, 1), one)
	if new(bigInt).Mul(pp, qq).Cmp(p.NTildei) != 0 {
		return errors.Join(ErrInvalid, errors.New("NTilde != (2p+1)(2q+1)"))
	}
	return nil
}
