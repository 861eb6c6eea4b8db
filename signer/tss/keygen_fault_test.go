package tss_test

import (
	"context"
	"errors"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/resharing"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

// Message types node1 forges below.
const (
	kg1   = "binance.tsslib.ecdsa.keygen.KGRound1Message"
	kg2m1 = "binance.tsslib.ecdsa.keygen.KGRound2Message1"
	kg2m2 = "binance.tsslib.ecdsa.keygen.KGRound2Message2"
	dg2m1 = "binance.tsslib.ecdsa.resharing.DGRound2Message1"
	dg3m2 = "binance.tsslib.ecdsa.resharing.DGRound3Message2"
	dg4m1 = "binance.tsslib.ecdsa.resharing.DGRound4Message1"
)

// parts returns n non-empty byte strings (proof or commitment parts whose
// values do not matter to the check under test).
func parts(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte{byte(i + 1)}
	}
	return out
}

const (
	modProofParts = 2*80 + 3    // modproof.ProofModBytesParts
	dlnProofParts = 2 + 2*128   // what tss-lib's ValidateBasic wants
	vssParts      = 1 + 2*(1+1) // t = 1: randomness + 2 coordinates per point
)

// withSmallFactor returns an odd modulus of N's size divisible by 3: the
// BitForge shape (CVE-2023-33241), a Paillier N with a small prime factor.
func withSmallFactor(n *big.Int) []byte {
	m := new(big.Int).Sub(n, new(big.Int).Mod(n, big.NewInt(3)))
	if m.Bit(0) == 0 {
		m.Sub(m, big.NewInt(3))
	}
	return m.Bytes()
}

// forgedMsg is one message a malicious node1 sends: its tss-lib content and
// how the spec table routes it.
type forgedMsg struct {
	typ              string
	content          proto.Message
	broadcast        bool
	fromRole, toRole tss.Role
}

// forgery is one attack: what node1 sends, and the reason an honest
// member's pre-check must give.
type forgery struct {
	name, reason string
	msgs         []forgedMsg
}

// sendForged delivers node1's forged messages of session sess to node2 and
// node3 as the transport would: authenticated as node1, whatever the
// payload says. node1's own engine takes no part (it is the attacker);
// the honest members check the messages on arrival, before tss-lib.
func sendForged(t *testing.T, net *tss.MemNetwork, wallet string, sess tss.SessionID, msgs []forgedMsg) {
	t.Helper()
	for _, m := range msgs {
		a, err := anypb.New(m.content)
		if err != nil {
			t.Fatal(err)
		}
		payload, err := proto.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range []pki.NodeID{"node2", "node3"} {
			env := &tss.Envelope{Wallet: wallet, Session: sess, Type: m.typ, From: "node1", FromRole: m.fromRole,
				To: to, ToRole: m.toRole, Broadcast: m.broadcast, Payload: payload}
			raw, err := env.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if err := net.Endpoint(to).Inject(context.Background(), "node1", raw); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// honestPair is node2 and node3 on a fresh network (node1's endpoint exists
// but nobody runs it), with failure budgets that never quarantine.
func honestPair(t *testing.T) (*tss.MemNetwork, map[pki.NodeID]*tss.Engine) {
	net := tss.NewMemNetwork()
	net.Endpoint("node1")
	com := tsstest.NewCommittee(t, []pki.NodeID{"node2", "node3"}, func(id pki.NodeID) tss.Transport { return net.Endpoint(id) },
		func(cfg *tss.Config) { cfg.Budget = tss.NewBudget(1 << 20) })
	return net, com.Engines
}

// wantRefusedBeforeTssLib checks that no honest member produced a share,
// that one refused node1's message with ErrBadMessage (our pre-check, before
// tss-lib) giving reason, provably (so it is charged to node1's budget), and
// that no honest member blamed anyone else.
func wantRefusedBeforeTssLib(t *testing.T, engines map[pki.NodeID]*tss.Engine, res map[pki.NodeID]result[*tss.Share], reason string) {
	t.Helper()
	refused := false
	for id, r := range res {
		if r.val != nil || r.err == nil {
			t.Fatalf("%s produced a share (err %v)", id, r.err)
		}
		var ae *tss.AbortError
		if !errors.As(r.err, &ae) {
			t.Fatalf("%s: want an *AbortError, got %v", id, r.err)
		}
		for _, p := range ae.Culprits {
			if p != "node1" && !errors.Is(ae, tss.ErrTimeout) {
				t.Errorf("%s blamed %s: %v", id, p, ae)
			}
		}
		if errors.Is(ae, tss.ErrBadMessage) && ae.Culprit("node1") && ae.Provable() && strings.Contains(ae.Reason, reason) {
			refused = true
			t.Logf("%s: %v", id, ae)
		}
	}
	if !refused {
		t.Fatalf("no honest member refused node1's message with %q before tss-lib: %v", reason, res)
	}
	if engines["node2"].Budget().Failures("node1")+engines["node3"].Budget().Failures("node1") == 0 {
		t.Fatal("node1 was not charged")
	}
}

// TestKeygenRefusesForgedPaillierAndVSS (SECURITY.md 3, 5): node1 omits its
// Paillier proofs, offers a Paillier N with a small factor, commits to a
// polynomial of degree t+1 (tss-lib #291), or sends a modulus proof whose W
// is a prime factor of its N (tss-lib #323; N in its round-1 message, the
// proof in its round-2 message). Each time the honest members refuse the
// message before tss-lib sees it (ErrBadMessage naming node1, charged), the
// keygen aborts and no member returns a share.
func TestKeygenRefusesForgedPaillierAndVSS(t *testing.T) {
	fx := fixtures[0] // node1's pre-params
	round1 := func(n []byte) forgedMsg {
		return forgedMsg{typ: kg1, broadcast: true, content: &keygen.KGRound1Message{Commitment: []byte{1}, PaillierN: n,
			NTilde: fx.NTildei.Bytes(), H1: fx.H1i.Bytes(), H2: fx.H2i.Bytes(),
			Dlnproof_1: parts(dlnProofParts), Dlnproof_2: parts(dlnProofParts)}}
	}
	round2 := func(decommitment, modProof [][]byte) forgedMsg {
		return forgedMsg{typ: kg2m2, broadcast: true, content: &keygen.KGRound2Message2{DeCommitment: decommitment, ModProof: modProof}}
	}
	wDividesN := parts(modProofParts)
	wDividesN[0] = fx.PaillierSK.P.Bytes()
	cases := []forgery{
		{"modulus proof omitted", "Paillier modulus proof", []forgedMsg{round2(parts(vssParts), nil)}},
		{"factorisation proof omitted", "factorisation proof", []forgedMsg{
			{typ: kg2m1, content: &keygen.KGRound2Message1{Share: []byte{1}}}}},
		{"Paillier N with a small factor", "small factor", []forgedMsg{round1(withSmallFactor(fx.PaillierSK.N))}},
		{"VSS commitment of t+2 points", "VSS decommitment has 7 parts, want 5", []forgedMsg{round2(parts(vssParts+2), parts(modProofParts))}},
		{"modulus proof W dividing N", "gcd(W, N)", []forgedMsg{round1(fx.PaillierSK.N.Bytes()), round2(parts(vssParts), wDividesN)}},
	}
	pre := preFor(all3, 0)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			net, engines := honestPair(t)
			sess := tss.NewSessionID()
			sendForged(t, net, "wallet-forged", sess, tc.msgs)
			ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
			defer cancel()
			res := parallel([]pki.NodeID{"node2", "node3"}, func(id pki.NodeID) (*tss.Share, error) {
				return engines[id].Keygen(ctx, tss.KeygenParams{Wallet: "wallet-forged", Session: sess, Committee: all3, Threshold: 1}, pre[id])
			})
			wantRefusedBeforeTssLib(t, engines, res, tc.reason)
		})
	}
}

// TestReshareRefusesForgedPaillierAndVSS: the same forgeries by node1 in a
// reshare of the shared 2-of-3 wallet to the same three nodes (node1's new
// party sends the Paillier data and proofs, its old party the VSS
// commitment). The reshare aborts before tss-lib sees the message, no
// member returns a new share, and no old share is retired.
func TestReshareRefusesForgedPaillierAndVSS(t *testing.T) {
	_, shares := shared2of3(t)
	info := shares["node1"].Info()
	fx := fixtures[3] // node1's new pre-params
	round2 := func(n []byte, modProof [][]byte) forgedMsg {
		return forgedMsg{typ: dg2m1, broadcast: true, fromRole: tss.RoleNew, toRole: tss.RoleNew,
			content: &resharing.DGRound2Message1{PaillierN: n, ModProof: modProof,
				NTilde: fx.NTildei.Bytes(), H1: fx.H1i.Bytes(), H2: fx.H2i.Bytes(),
				Dlnproof_1: parts(dlnProofParts), Dlnproof_2: parts(dlnProofParts)}}
	}
	wDividesN := parts(modProofParts)
	wDividesN[0] = fx.PaillierSK.P.Bytes()
	cases := []forgery{
		{"modulus proof omitted", "Paillier modulus proof", []forgedMsg{round2(fx.PaillierSK.N.Bytes(), nil)}},
		{"factorisation proof omitted", "factorisation proof", []forgedMsg{
			{typ: dg4m1, fromRole: tss.RoleNew, toRole: tss.RoleNew, content: &resharing.DGRound4Message1{}}}},
		{"Paillier N with a small factor", "small factor", []forgedMsg{round2(withSmallFactor(fx.PaillierSK.N), parts(modProofParts))}},
		{"VSS commitment of t+2 points", "VSS decommitment has 7 parts, want 5", []forgedMsg{
			{typ: dg3m2, broadcast: true, fromRole: tss.RoleOld, toRole: tss.RoleNew,
				content: &resharing.DGRound3Message2{VDecommitment: parts(vssParts + 2)}}}},
		{"modulus proof W dividing N", "gcd(W, N)", []forgedMsg{round2(fx.PaillierSK.N.Bytes(), wDividesN)}},
	}
	pre := preFor(all3, 3)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			net, engines := honestPair(t)
			old := map[pki.NodeID]*tss.Share{}
			for _, id := range []pki.NodeID{"node2", "node3"} {
				old[id] = copyShare(t, shares[id])
			}
			var retired atomic.Int32
			sess := tss.NewSessionID()
			sendForged(t, net, info.Wallet, sess, tc.msgs)
			ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
			defer cancel()
			res := parallel([]pki.NodeID{"node2", "node3"}, func(id pki.NodeID) (*tss.Share, error) {
				return engines[id].Reshare(ctx, tss.ReshareParams{Session: sess, Old: info, OldSigners: all3, New: all3, NewThreshold: 1,
					OnRetire: func(*tss.Share) error { retired.Add(1); return nil }}, old[id], pre[id])
			})
			wantRefusedBeforeTssLib(t, engines, res, tc.reason)
			for id, s := range old {
				if s.Retired() {
					t.Fatalf("%s: old share retired by an aborted reshare", id)
				}
			}
			if retired.Load() != 0 {
				t.Fatal("OnRetire called by an aborted reshare")
			}
		})
	}
}

// wantNoShare checks every member's keygen or reshare failed and returned
// no share.
func wantNoShare(t *testing.T, res map[pki.NodeID]result[*tss.Share]) {
	t.Helper()
	for id, r := range res {
		if r.val != nil || r.err == nil {
			t.Errorf("%s returned a share (err %v)", id, r.err)
			continue
		}
		t.Logf("%s: %v", id, r.err)
	}
}

// TestKeygenTestSignFailurePublishesNothing (SECURITY.md 8): the first test
// subset {node1, node2} signs, but node2's last signing message to node1 is
// tampered, so only node1's test-sign fails; node2 and node3 go on and
// complete the second test subset. No member returns a share: node1 never
// confirms the key in keygen's last round, which every member waits for.
func TestKeygenTestSignFailurePublishesNothing(t *testing.T) {
	c, _ := shared2of3(t)
	pre := preFor(all3, 0)
	sess := tss.NewSessionID()
	c.faults["node2"].SetFaults(&tsstest.Fault{Kind: tsstest.Tamper, Times: 1, Match: tsstest.MatchType(tss.SignRound9Type, "node1")})
	t.Cleanup(func() { clearFaults(c) })
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	res := parallel(all3, func(id pki.NodeID) (*tss.Share, error) {
		return c.engines[id].Keygen(ctx, tss.KeygenParams{Wallet: "wallet-testsign", Session: sess, Committee: all3, Threshold: 1}, pre[id])
	})
	wantNoShare(t, res)
	if !strings.Contains(res["node1"].err.Error(), "test-sign") {
		t.Fatalf("node1 should fail its test-sign: %v", res["node1"].err)
	}
	if !errors.Is(res["node3"].err, tss.ErrPeerAborted) {
		t.Fatalf("node3 (outside the failed subset) should learn of the failure from a peer: %v", res["node3"].err)
	}
}

// TestKeygenKeyDisagreementPublishesNothing (SECURITY.md 8): node1's
// confirmation of the keygen result (public key and public shares) differs
// from what node2 and node3 computed. They abort with ErrInconsistentResult
// naming node1, node1 learns of it, and no member returns a share.
func TestKeygenKeyDisagreementPublishesNothing(t *testing.T) {
	c, _ := shared2of3(t)
	pre := preFor(all3, 0)
	sess := tss.NewSessionID()
	c.faults["node1"].SetFaults(&tsstest.Fault{Kind: tsstest.Mutate,
		Match:  func(_ pki.NodeID, env *tss.Envelope) bool { return env.Type == tss.TypeConfirm && env.Session == sess },
		Mutate: func(env *tss.Envelope) { env.Payload[0] ^= 1 }})
	t.Cleanup(func() { clearFaults(c) })
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	res := parallel(all3, func(id pki.NodeID) (*tss.Share, error) {
		return c.engines[id].Keygen(ctx, tss.KeygenParams{Wallet: "wallet-disagree", Session: sess, Committee: all3, Threshold: 1}, pre[id])
	})
	wantNoShare(t, res)
	// Whichever of node2 and node3 compares the confirmations first names
	// node1; the other either does the same or learns of it from that
	// peer's abort first (both orders happen, CI saw the second). At least
	// one must name node1 itself, and nobody may name anyone else.
	named := 0
	for _, id := range []pki.NodeID{"node2", "node3"} {
		var ae *tss.AbortError
		switch {
		case errors.As(res[id].err, &ae) && errors.Is(ae, tss.ErrInconsistentResult) && ae.Culprit("node1") && len(ae.Culprits) == 1:
			named++
		case errors.Is(res[id].err, tss.ErrPeerAborted) && strings.Contains(res[id].err.Error(), "inconsistent result"):
		default:
			t.Fatalf("%s should refuse node1's result or learn of its refusal from a peer: %v", id, res[id].err)
		}
	}
	if named == 0 {
		t.Fatal("neither node2 nor node3 named node1 as the culprit")
	}
	if !errors.Is(res["node1"].err, tss.ErrPeerAborted) && !errors.Is(res["node1"].err, tss.ErrInconsistentResult) {
		t.Fatalf("node1 should learn its result was refused: %v", res["node1"].err)
	}
}

// clearFaults removes every fault and clears every failure budget of the
// shared cluster.
func clearFaults(c *cluster) {
	for _, id := range all3 {
		c.faults[id].SetFaults()
	}
	for _, e := range c.engines {
		for _, p := range all3 {
			e.Budget().Clear(p)
		}
	}
}
