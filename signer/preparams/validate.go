package preparams

import (
	"errors"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
)

// ErrInvalid is returned for pre-params that are incomplete (pre-v2 format
// without Paillier P/Q or without the NTilde proof values) or inconsistent.
var ErrInvalid = errors.New("preparams: invalid pre-params")

// Validate checks that p is complete for tss-lib v2 (ValidateWithProof) and
// internally consistent: N = P*Q for the Paillier key, NTilde = (2P+1)(2Q+1)
// for the safe primes, and the bit sizes tss-lib generates.
func Validate(p *keygen.LocalPreParams) error {
	if p == nil || !p.ValidateWithProof() {
		return ErrInvalid
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
