package tss

import (
	"crypto/rand"
	"math/big"
	"strings"
	"sync"
	"testing"

	"github.com/bnb-chain/tss-lib/v2/crypto"
	"github.com/bnb-chain/tss-lib/v2/crypto/mta"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/signing"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"

	"github.com/custody-dev/custody/signer/preparams"
)

var (
	internalFxOnce sync.Once
	internalFx     []*keygen.LocalPreParams
)

func internalFixtures(t *testing.T) []*keygen.LocalPreParams {
	t.Helper()
	internalFxOnce.Do(func() {
		internalFx, _ = preparams.LoadFixtures("../preparams/testdata/preparams.json")
	})
	if len(internalFx) < 2 {
		t.Fatal("fixtures missing (run make fixtures)")
	}
	return internalFx
}

// mtaCase is a real round-1 and round-2 message pair between Alice (A)
// and Bob (B), and the check contexts of their receivers.
type mtaCase struct {
	r1, r2     tsslib.ParsedMessage
	atB, atA   *signCheck
	refA, refB partyRef
}

func newMTACase(t *testing.T) *mtaCase {
	fx := internalFixtures(t)
	a, b := fx[0], fx[1]
	ec := tsslib.S256()
	pidA := tsslib.NewPartyID("A", "A", big.NewInt(11))
	pidB := tsslib.NewPartyID("B", "B", big.NewInt(22))
	k, gamma := big.NewInt(123456789), big.NewInt(987654321)
	cA, pf, err := mta.AliceInit(ec, &a.PaillierSK.PublicKey, k, b.NTildei, b.H1i, b.H2i, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sess := []byte("session")
	_, c1, _, pi1, err := mta.BobMid(sess, ec, &a.PaillierSK.PublicKey, pf, gamma, cA, a.NTildei, a.H1i, a.H2i, b.NTildei, b.H1i, b.H2i, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w := big.NewInt(5555)
	_, c2, _, pi2, err := mta.BobMidWC(sess, ec, &a.PaillierSK.PublicKey, pf, w, cA, a.NTildei, a.H1i, a.H2i, b.NTildei, b.H1i, b.H2i,
		crypto.ScalarBaseMult(ec, w), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	refA, refB := partyRef{"A", RoleMain}, partyRef{"B", RoleMain}
	return &mtaCase{
		r1:   signing.NewSignRound1Message1(pidB, pidA, cA, pf),
		r2:   signing.NewSignRound2Message(pidA, pidB, c1, pi1, c2, pi2),
		atB:  &signCheck{ntilde: b.NTildei, selfN: b.PaillierSK.N, senderN: map[partyRef]*big.Int{refA: a.PaillierSK.N}},
		atA:  &signCheck{ntilde: a.NTildei, selfN: a.PaillierSK.N, senderN: map[partyRef]*big.Int{refB: b.PaillierSK.N}},
		refA: refA, refB: refB,
	}
}

// TestSignPrecheckRejectsDegenerateProofs (SECURITY.md 5, tss-lib #289):
// honest MtA proofs pass; each component of RangeProofAlice, ProofBob and
// ProofBobWC set to 0, 1 or a huge value, or a proof with a part missing,
// is refused before tss-lib.
func TestSignPrecheckRejectsDegenerateProofs(t *testing.T) {
	c := newMTACase(t)
	if err := c.atB.check(c.r1, c.refA); err != nil {
		t.Fatalf("honest round 1 refused: %v", err)
	}
	if err := c.atA.check(c.r2, c.refB); err != nil {
		t.Fatalf("honest round 2 refused: %v", err)
	}
	huge := new(big.Int).Lsh(big.NewInt(1), 5000).Bytes()
	bad := map[string][]byte{"zero": {0}, "one": {1}, "huge": huge}

	r1 := c.r1.Content().(*signing.SignRound1Message1)
	for i := range r1.RangeProofAlice {
		for name, v := range bad {
			if name == "one" && (i == 4 || i == 5) {
				continue // s1, s2 = 1 are in range (only their upper bound is known)
			}
			orig := r1.RangeProofAlice[i]
			r1.RangeProofAlice[i] = v
			if err := c.atB.check(c.r1, c.refA); err == nil {
				t.Errorf("RangeProofAlice part %d = %s accepted", i, name)
			}
			r1.RangeProofAlice[i] = orig
		}
	}
	r1.RangeProofAlice = r1.RangeProofAlice[:5]
	if err := c.atB.check(c.r1, c.refA); err == nil || !strings.Contains(err.Error(), "parts") {
		t.Errorf("short RangeProofAlice: %v", err)
	}
	if err := c.atB.check(c.r1, partyRef{"X", RoleMain}); err == nil {
		t.Error("round 1 from a party without a known Paillier key accepted")
	}

	r2 := c.r2.Content().(*signing.SignRound2Message)
	for _, proof := range []*[][]byte{&r2.ProofBob, &r2.ProofBobWc} {
		for i := 0; i < mta.ProofBobBytesParts; i++ {
			for name, v := range bad {
				if name == "one" && i >= 6 {
					continue
				}
				orig := (*proof)[i]
				(*proof)[i] = v
				if err := c.atA.check(c.r2, c.refB); err == nil {
					t.Errorf("Bob proof (%d parts) part %d = %s accepted", len(*proof), i, name)
				}
				(*proof)[i] = orig
			}
		}
		orig := *proof
		*proof = orig[:len(orig)-1]
		if err := c.atA.check(c.r2, c.refB); err == nil {
			t.Errorf("Bob proof with %d parts accepted", len(*proof))
		}
		*proof = orig
	}
	origU := r2.ProofBobWc[11]
	r2.ProofBobWc[11] = []byte{7}
	if err := c.atA.check(c.r2, c.refB); err == nil {
		t.Error("ProofBobWC with U off the curve accepted")
	}
	r2.ProofBobWc[11] = origU
	r2.C1 = []byte{0}
	if err := c.atA.check(c.r2, c.refB); err == nil {
		t.Error("zero MtA ciphertext accepted")
	}
}
