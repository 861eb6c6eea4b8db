package tss

import (
	"fmt"
	"math/big"

	"github.com/bnb-chain/tss-lib/v2/crypto"
	"github.com/bnb-chain/tss-lib/v2/crypto/mta"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/signing"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"
)

// signCheck holds what the MtA proofs of a signing session are checked
// against: in v2.0.2 every range proof a party receives is made over its own
// NTilde (and h1, h2); Alice's proof (round 1) over the sender's Paillier
// key, Bob's proofs (round 2) over the receiver's own Paillier key.
type signCheck struct {
	ntilde  *big.Int              // this party's NTilde
	selfN   *big.Int              // this party's Paillier N
	senderN map[partyRef]*big.Int // each member's Paillier N
}

var (
	curveQ  = tsslib.S256().Params().N
	curveQ3 = new(big.Int).Exp(curveQ, big.NewInt(3), nil)
	curveQ7 = new(big.Int).Exp(curveQ, big.NewInt(7), nil)
	bigOne  = big.NewInt(1)
)

// newSignCheck builds the signing pre-check context from a share's save
// data; members maps session parties to their tss-lib keys.
func newSignCheck(d *keygen.LocalPartySaveData, members map[partyRef]*tsslib.PartyID) *signCheck {
	c := &signCheck{ntilde: d.NTildei, senderN: map[partyRef]*big.Int{}}
	if d.PaillierSK != nil {
		c.selfN = d.PaillierSK.N
	}
	for ref, pid := range members {
		for i, k := range d.Ks {
			if k != nil && k.Cmp(pid.KeyInt()) == 0 && i < len(d.PaillierPKs) && d.PaillierPKs[i] != nil {
				c.senderN[ref] = d.PaillierPKs[i].N
			}
		}
	}
	return c
}

// unit reports 1 < x < bound: the degenerate values 0 and 1 and anything
// not reduced modulo the bound are refused.
func unit(x, bound *big.Int) bool { return x.Cmp(bigOne) > 0 && x.Cmp(bound) < 0 }

// within reports 1 <= x <= bound.
func within(x, bound *big.Int) bool { return x.Sign() > 0 && x.Cmp(bound) <= 0 }

func ints(bzs [][]byte) []*big.Int {
	out := make([]*big.Int, len(bzs))
	for i, b := range bzs {
		out[i] = new(big.Int).SetBytes(b)
	}
	return out
}

// check applies the range checks of tss-lib #289 (degenerate MtA range
// proofs) to signing messages before tss-lib sees them (SECURITY.md 5):
// right number of parts, no zero or one, every component reduced modulo the
// modulus it lives in, responses within the bounds the honest prover's
// randomness allows.
func (c *signCheck) check(msg tsslib.ParsedMessage, from partyRef) error {
	switch m := msg.Content().(type) {
	case *signing.SignRound1Message1:
		n := c.senderN[from]
		if n == nil || c.ntilde == nil {
			return fmt.Errorf("no Paillier key or NTilde to check against")
		}
		return checkAlice(m.GetC(), m.GetRangeProofAlice(), n, c.ntilde)
	case *signing.SignRound2Message:
		if c.selfN == nil || c.ntilde == nil {
			return fmt.Errorf("no Paillier key or NTilde to check against")
		}
		n2 := new(big.Int).Mul(c.selfN, c.selfN)
		for _, x := range [][]byte{m.GetC1(), m.GetC2()} {
			if !unit(new(big.Int).SetBytes(x), n2) {
				return fmt.Errorf("MtA ciphertext out of range")
			}
		}
		if len(m.GetProofBob()) != mta.ProofBobBytesParts {
			return fmt.Errorf("Bob proof has %d parts, want %d", len(m.GetProofBob()), mta.ProofBobBytesParts)
		}
		if err := checkBob(ints(m.GetProofBob()), c.selfN, c.ntilde); err != nil {
			return fmt.Errorf("Bob proof: %w", err)
		}
		wc := m.GetProofBobWc()
		if len(wc) != mta.ProofBobWCBytesParts {
			return fmt.Errorf("Bob proof with check has %d parts, want %d", len(wc), mta.ProofBobWCBytesParts)
		}
		v := ints(wc)
		if err := checkBob(v[:mta.ProofBobBytesParts], c.selfN, c.ntilde); err != nil {
			return fmt.Errorf("Bob proof with check: %w", err)
		}
		if _, err := crypto.NewECPoint(tsslib.S256(), v[10], v[11]); err != nil {
			return fmt.Errorf("Bob proof with check: U is not a curve point")
		}
	}
	return nil
}

// checkAlice: RangeProofAlice{Z, U, W, S, S1, S2} over the sender's N and
// the receiver's NTilde. s1 = e·m + α with α < q³; s2 = e·ρ + γ with
// ρ < q·NTilde, γ < q³·NTilde.
func checkAlice(cBytes []byte, parts [][]byte, n, ntilde *big.Int) error {
	if len(parts) != mta.RangeProofAliceBytesParts {
		return fmt.Errorf("range proof has %d parts, want %d", len(parts), mta.RangeProofAliceBytesParts)
	}
	n2 := new(big.Int).Mul(n, n)
	if !unit(new(big.Int).SetBytes(cBytes), n2) {
		return fmt.Errorf("MtA ciphertext out of range")
	}
	v := ints(parts)
	z, u, w, s, s1, s2 := v[0], v[1], v[2], v[3], v[4], v[5]
	switch {
	case !unit(z, ntilde), !unit(w, ntilde):
		return fmt.Errorf("range proof: z or w degenerate or out of range")
	case !unit(u, n2):
		return fmt.Errorf("range proof: u degenerate or out of range")
	case !unit(s, n):
		return fmt.Errorf("range proof: s degenerate or out of range")
	case !within(s1, curveQ3):
		return fmt.Errorf("range proof: s1 out of range")
	case !within(s2, s2Bound(ntilde)):
		return fmt.Errorf("range proof: s2 out of range")
	}
	return nil
}

// checkBob: ProofBob{Z, Z', T, V, W, S, S1, S2, T1, T2} over the receiver's
// own N and NTilde. s1 = e·x + α (α < q³), t1 = e·y + γ (γ < q⁷), s2 and t2
// as Alice's s2.
func checkBob(v []*big.Int, n, ntilde *big.Int) error {
	z, zp, t, vv, w, s, s1, s2, t1, t2 := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]
	n2 := new(big.Int).Mul(n, n)
	bound := s2Bound(ntilde)
	switch {
	case !unit(z, ntilde), !unit(zp, ntilde), !unit(t, ntilde), !unit(w, ntilde):
		return fmt.Errorf("z, z', t or w degenerate or out of range")
	case !unit(vv, n2):
		return fmt.Errorf("v degenerate or out of range")
	case !unit(s, n):
		return fmt.Errorf("s degenerate or out of range")
	case !within(s1, curveQ3):
		return fmt.Errorf("s1 out of range")
	case !within(t1, curveQ7):
		return fmt.Errorf("t1 out of range")
	case !within(s2, bound), !within(t2, bound):
		return fmt.Errorf("s2 or t2 out of range")
	}
	return nil
}

// s2Bound is 2·q³·NTilde, above any honest e·ρ + γ.
func s2Bound(ntilde *big.Int) *big.Int {
	b := new(big.Int).Mul(curveQ3, ntilde)
	return b.Lsh(b, 1)
}
