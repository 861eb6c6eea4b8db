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

// checkModProofW refuses a Paillier modulus proof whose W is not a unit mod
// N (tss-lib #323, fixed after v2.0.2). v2.0.2's verifier only requires W to
// be a quadratic non-residue (Jacobi symbol != 1) in (0, N); a W sharing a
// factor with N has Jacobi symbol 0 and passes, which lets a prover forge
// the proof for a modulus that is not a product of two suitable primes.
func checkModProofW(n *big.Int, proof [][]byte) error {
	w := new(big.Int).SetBytes(proof[0])
	if w.Sign() <= 0 || w.Cmp(n) >= 0 {
		return fmt.Errorf("Paillier modulus proof: W out of range")
	}
	if g := new(big.Int).GCD(nil, nil, w, n); g.Cmp(big.NewInt(1)) != 0 {
		return fmt.Errorf("Paillier modulus proof: gcd(W, N) != 1 (tss-lib #323)")
	}
	return nil
}

// keygenCheck is the keygen session's stateful pre-check: a party's
// Paillier N arrives in its round-1 message and the proof about N in its
// round-2 message, so the #323 check runs on whichever of the two arrives
// second. tss-lib verifies the proof only in round 3, after both messages
// were delivered, so it never sees a proof this check refuses. It runs on
// the session's loop goroutine only.
type keygenCheck struct {
	n map[partyRef]*big.Int
	w map[partyRef][][]byte
}

func newKeygenCheck() *keygenCheck {
	return &keygenCheck{n: map[partyRef]*big.Int{}, w: map[partyRef][][]byte{}}
}

func (k *keygenCheck) check(msg tsslib.ParsedMessage, from partyRef) error {
	switch c := msg.Content().(type) {
	case *keygen.KGRound1Message:
		k.n[from] = c.UnmarshalPaillierPK().N
	case *keygen.KGRound2Message2:
		k.w[from] = c.GetModProof()
	default:
		return nil
	}
	if n, w := k.n[from], k.w[from]; n != nil && w != nil {
		return checkModProofW(n, w)
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
		n := new(big.Int).SetBytes(c.GetPaillierN())
		if err := checkModulus("paillier N", n); err != nil {
			return err
		}
		if err := checkModProofW(n, c.GetModProof()); err != nil {
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
