package member_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// lyingEngine is a faulty or compromised engine in front of the member: it
// may sign another digest than the member asked for (digest), and may
// rewrite the signature the real session produced (rewrite) before handing
// it back. It runs the real session through the harness's countingEngine.
type lyingEngine struct {
	member.Engine
	digest  func([32]byte) [32]byte
	rewrite func(sig *tss.Signature, digest [32]byte) *tss.Signature
}

func (l *lyingEngine) Sign(ctx context.Context, s *tss.Share, p tss.SignParams) (*tss.Signature, error) {
	if l.digest != nil {
		p.Digest = l.digest(p.Digest)
	}
	sig, err := l.Engine.Sign(ctx, s, p)
	if err != nil || l.rewrite == nil {
		return sig, err
	}
	return l.rewrite(sig, p.Digest), nil
}

// otherKeySig signs digest with a fresh key: a valid, low-S signature, just
// not by the wallet.
func otherKeySig(t *testing.T, digest [32]byte) (*tss.Signature, []byte) {
	t.Helper()
	k, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := becdsa.SignCompact(k, digest[:], true) // [27+4+v] r s
	sig := &tss.Signature{V: c[0] - 27 - 4, PubKey: k.PubKey().SerializeCompressed()}
	copy(sig.R[:], c[1:33])
	copy(sig.S[:], c[33:65])
	return sig, sig.PubKey
}

// TestEngineFaultsRefused: the engine hands the member a signature under
// another key (claimed as the wallet's, or reported as another key), the
// wallet's own signature turned high-S (n-s, recovery id flipped: still a
// valid ECDSA signature), or the wallet's signature over another digest
// (both signers' engines sign it, so the session succeeds). The member
// refuses each with ErrSignature: nothing is released, the watermark
// reservation stays reserved (never completed), the share is wiped, and
// asking again for the same claim releases nothing either.
func TestEngineFaultsRefused(t *testing.T) {
	h := newHarness(t)
	signers := []pki.NodeID{"n1", "n2"}
	n1, n2 := h.members["n1"], h.members["n2"]
	cases := []struct {
		name   string
		engine *lyingEngine
		both   bool // n2's engine lies the same way (the session must agree)
	}{
		{name: "another key claimed as the wallet's", engine: &lyingEngine{rewrite: func(sig *tss.Signature, d [32]byte) *tss.Signature {
			other, _ := otherKeySig(t, d)
			other.PubKey = sig.PubKey
			return other
		}}},
		{name: "another key", engine: &lyingEngine{rewrite: func(_ *tss.Signature, d [32]byte) *tss.Signature {
			other, _ := otherKeySig(t, d)
			return other
		}}},
		{name: "high S", engine: &lyingEngine{rewrite: func(sig *tss.Signature, _ [32]byte) *tss.Signature {
			s := new(big.Int).SetBytes(sig.S[:])
			out := *sig
			new(big.Int).Sub(btcec.S256().N, s).FillBytes(out.S[:])
			out.V ^= 1
			return &out
		}}},
		{name: "another digest", both: true, engine: &lyingEngine{digest: func(d [32]byte) [32]byte {
			return sha256.Sum256(append([]byte("not the approved transaction "), d[:]...))
		}}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "wd-lie-" + string(rune('a'+i))
			h.request(id, h.dests[0], ether(1, 0), bob, carol)
			cl, err := h.orch.Claim(h.ctx, id, signers)
			if err != nil {
				t.Fatal(err)
			}
			liar := func(mb *testNode) *member.Member {
				e := *tc.engine
				e.Engine = mb.engine
				m, err := member.New(member.Config{Engine: &e, Shares: mb.shares, Watermark: mb.wm, Seen: mb.seen, Ledger: mb.ledger, Chains: testChains(), Now: h.clock.Now})
				if err != nil {
					t.Fatal(err)
				}
				if err := m.AddWallet(h.info); err != nil {
					t.Fatal(err)
				}
				return m
			}
			m1, m2 := liar(n1), n2.m
			if tc.both {
				m2 = liar(n2)
			}
			prev := n1.shares.last.Load()
			type out struct {
				s   *member.Signed
				err error
			}
			res2 := make(chan out, 1)
			go func() {
				s, err := m2.SignClaimed(h.ctx, id, cl)
				res2 <- out{s, err}
			}()
			s1, err1 := m1.SignClaimed(h.ctx, id, cl)
			r2 := <-res2
			if s1 != nil || !errors.Is(err1, member.ErrSignature) {
				t.Fatalf("n1 released %v or did not refuse with ErrSignature: %v", s1, err1)
			}
			t.Logf("n1 refused: %v", err1)
			var re *member.RefusalError
			if !errors.As(err1, &re) {
				t.Fatalf("n1: not a *RefusalError: %v", err1)
			}
			if tc.both {
				if r2.s != nil || !errors.Is(r2.err, member.ErrSignature) {
					t.Fatalf("n2 released %v or did not refuse with ErrSignature: %v", r2.s, r2.err)
				}
			} else if r2.err != nil {
				t.Fatalf("honest n2: %v", r2.err)
			}
			rec, ok := n1.wm.Lookup(id)
			if !ok || rec.Signed || rec.Digest != cl.Digest {
				t.Fatalf("n1's watermark record %+v (present %v): want the claim's digest reserved, not completed", rec, ok)
			}
			wantWiped(t, n1, prev)
			// Nothing was kept to hand out later: asking again runs into the
			// engine, which refuses the used session ID.
			if s, err := m1.SignClaimed(h.ctx, id, cl); s != nil || !errors.Is(err, member.ErrSession) || !errors.Is(err, tss.ErrSessionReused) {
				t.Fatalf("second request released %v or failed otherwise: %v", s, err)
			}
			if rec, _ := n1.wm.Lookup(id); rec.Signed {
				t.Fatal("the reservation was completed by the second request")
			}
		})
	}
}
