package tss

import (
	"fmt"
	"math/big"

	"github.com/bnb-chain/tss-lib/v2/crypto/facproof"
	"github.com/bnb-chain/tss-lib/v2/crypto/modproof"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/resharing"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"
)

// minModulusBits is the smallest Paillier / NTilde modulus accepted from a
// peer; tss-lib generates 2048-bit moduli.
const minModulusBits = 2046

// smallPrimesProduct is the product of the odd primes below 1000, used to
// refuse moduli with small factors (BitForge, CVE-2023-33241) before tss-lib
// sees them.
var smallPrimesProduct = func() *big.Int {
	p := big.NewInt(1)
	for n := int64(3); n < 1000; n += 2 {
		if big.NewInt(n).ProbablyPrime(1) {
			p.Mul(p, big.NewInt(n))
		}
	}
	return p
}()

func checkModulus(name string, n *big.Int) error {
	if n.BitLen() < minModulusBits || n.Bit(0) == 0 {
		return fmt.Errorf("%s: %d-bit or even modulus", name, n.BitLen())
	}
	if g := new(big.Int).GCD(nil, nil, n, smallPrimesProduct); g.Cmp(big.NewInt(1)) != 0 {
		return fmt.Errorf("%s: modulus has a small factor", name)
	}
	return nil
}

func checkH1H2(ntilde, h1, h2 *big.Int) error {
	one := big.NewInt(1)
	for _, h := range []*big.Int{h1, h2} {
		if h.Cmp(one) <= 0 || h.Cmp(ntilde) >= 0 {
			return fmt.Errorf("h1/h2 out of range")
		}
	}
	if h1.Cmp(h2) == 0 {
		return fmt.Errorf("h1 == h2")
	}
	return nil
}

// precheck applies the checks that tss-lib v2.0.2 misses or performs late
// (SECURITY.md items 3 and 5) to a parsed message, before the library sees it.
// threshold is the threshold of the polynomial the sender commits to.
func precheck(msg tsslib.ParsedMessage, threshold int) error {
	switch c := msg.Content().(type) {
	case *keygen.KGRound1Message:
		if err := checkModulus("paillier N", c.UnmarshalPaillierPK().N); err != nil {
			return err
		}
		if err := checkModulus("NTilde", c.UnmarshalNTilde()); err != nil {
			return err
		}
		return checkH1H2(c.UnmarshalNTilde(), c.UnmarshalH1(), c.UnmarshalH2())
	case *keygen.KGRound2Message1:
		// v2.0.2 skips the factorisation proof when it is absent ("backward
		// compatibility"); we require it.
		if len(c.GetFacProof()) != facproof.ProofFacBytesParts {
			return fmt.Errorf("missing or malformed factorisation proof")
		}
	case *keygen.KGRound2Message2:
		if len(c.GetModProof()) != modproof.ProofModBytesParts {
			return fmt.Errorf("missing or malformed Paillier modulus proof")
		}
		// tss-lib #291: the VSS commitment must have exactly t+1 points
		// (decommitment = randomness + 2 coordinates per point).
		if want := 1 + 2*(threshold+1); len(c.GetDeCommitment()) != want {
			return fmt.Errorf("VSS decommitment has %d parts, want %d", len(c.GetDeCommitment()), want)
		}
	case *resharing.DGRound2Message1:
		if len(c.GetModProof()) != modproof.ProofModBytesParts {
			return fmt.Errorf("missing or malformed Paillier modulus proof")
		}
		if err := checkModulus("paillier N", new(big.Int).SetBytes(c.GetPaillierN())); err != nil {
			return err
		}
		nt := new(big.Int).SetBytes(c.GetNTilde())
		if err := checkModulus("NTilde", nt); err != nil {
			return err
		}
		return checkH1H2(nt, new(big.Int).SetBytes(c.GetH1()), new(big.Int).SetBytes(c.GetH2()))
	case *resharing.DGRound3Message2:
		if want := 1 + 2*(threshold+1); len(c.GetVDecommitment()) != want {
			return fmt.Errorf("VSS decommitment has %d parts, want %d", len(c.GetVDecommitment()), want)
		}
	case *resharing.DGRound4Message1:
		if len(c.GetFacProof()) != facproof.ProofFacBytesParts {
			return fmt.Errorf("missing or malformed factorisation proof")
		}
	}
	return nil
}
