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

// Message types the faults below rewrite.
const (
	kg1   = "binance.tsslib.ecdsa.keygen.KGRound1Message"
	kg2m1 = "binance.tsslib.ecdsa.keygen.KGRound2Message1"
	kg2m2 = "binance.tsslib.ecdsa.keygen.KGRound2Message2"
	dg2m1 = "binance.tsslib.ecdsa.resharing.DGRound2Message1"
	dg3m2 = "binance.tsslib.ecdsa.resharing.DGRound3Message2"
	dg4m1 = "binance.tsslib.ecdsa.resharing.DGRound4Message1"
)

// rewrite is a Fault.Mutate that decodes the envelope's tss-lib message as
// T, lets f forge it, and re-encodes it: what a malicious party would send.
func rewrite[T proto.Message](t *testing.T, f func(T)) func(*tss.Envelope) {
	return func(env *tss.Envelope) {
		a := new(anypb.Any)
		if err := proto.Unmarshal(env.Payload, a); err != nil {
			t.Errorf("rewrite: %v", err)
			return
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Errorf("rewrite: %v", err)
			return
		}
		msg, ok := m.(T)
		if !ok {
			t.Errorf("rewrite: got a %T", m)
			return
		}
		f(msg)
		a2, err := anypb.New(msg)
		if err != nil {
			t.Errorf("rewrite: %v", err)
			return
		}
		if env.Payload, err = proto.Marshal(a2); err != nil {
			t.Errorf("rewrite: %v", err)
		}
	}
}

// withSmallFactor returns an odd modulus of N's size divisible by 3: the
// BitForge shape (CVE-2023-33241), a Paillier N with a small prime factor.
func withSmallFactor(n []byte) []byte {
	m := new(big.Int).SetBytes(n)
	m.Sub(m, new(big.Int).Mod(m, big.NewInt(3)))
	if m.Bit(0) == 0 {
		m.Sub(m, big.NewInt(3))
	}
	return m.Bytes()
}

// twoMorePoints appends one more commitment point (two coordinates) to a
// VSS decommitment: the sender's polynomial would have degree t+1 (tss-lib
// #291, a party raising the threshold).
func twoMorePoints(parts [][]byte) [][]byte {
	return append(append([][]byte(nil), parts...), parts[len(parts)-2], parts[len(parts)-1])
}

// forgery is one forged message of node1: its type, the rewrite, and the
// reason an honest member's pre-check must give.
type forgery struct {
	name, typ, reason string
	mutate            func(*tss.Envelope)
}

// forgeryCluster is a committee of node1..node3 whose failure budgets
// never quarantine (the cases run in parallel and each charges node1) and
// on which node1 sends every forgery, each only in the sessions of its own
// wallet, "forged-<i>".
func forgeryCluster(t *testing.T, cases []forgery) *cluster {
	c := &cluster{net: tss.NewMemNetwork(), engines: map[pki.NodeID]*tss.Engine{},
		faults: map[pki.NodeID]*tsstest.FaultTransport{}, events: make(chan tss.Event, 1024)}
	com := tsstest.NewCommittee(t, all3, func(id pki.NodeID) tss.Transport {
		tr := tsstest.Wrap(c.net.Endpoint(id))
		c.faults[id] = tr
		return tr
	}, func(cfg *tss.Config) { cfg.Budget = tss.NewBudget(1 << 20) })
	c.engines = com.Engines
	var faults []*tsstest.Fault
	for i, tc := range cases {
		wallet := forgedWallet(i)
		faults = append(faults, &tsstest.Fault{Kind: tsstest.Mutate, Mutate: tc.mutate,
			Match: func(_ pki.NodeID, env *tss.Envelope) bool { return env.Type == tc.typ && env.Wallet == wallet }})
	}
	c.faults["node1"].SetFaults(faults...)
	return c
}

func forgedWallet(i int) string { return "forged-" + string(rune('a'+i)) }

// wantRefusedBeforeTssLib checks that no member produced a share, that an
// honest member refused node1's message with ErrBadMessage (our pre-check,
// before tss-lib) giving reason, provably (charged to node1's budget), and
// that no honest member blamed anyone else.
func wantRefusedBeforeTssLib(t *testing.T, res map[pki.NodeID]result[*tss.Share], reason string) {
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
		if id == "node1" {
			continue
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
}

// wantCharged checks that the honest members charged node1 at least n times.
func wantCharged(t *testing.T, c *cluster, n int) {
	t.Helper()
	got := c.engines["node2"].Budget().Failures("node1") + c.engines["node3"].Budget().Failures("node1")
	if got < n {
		t.Fatalf("node1 charged %d times, want at least %d", got, n)
	}
}

// TestKeygenRefusesForgedPaillierAndVSS (SECURITY.md 3, 5): node1 omits its
// Paillier proofs, offers a Paillier N with a small factor, commits to a
// polynomial of degree t+1 (tss-lib #291), or sends a modulus proof whose W
// shares a factor with N (tss-lib #323). Each time the honest members refuse
// the message before tss-lib sees it (ErrBadMessage naming node1, charged),
// the keygen aborts everywhere and no member returns a share.
func TestKeygenRefusesForgedPaillierAndVSS(t *testing.T) {
	pre := preFor(all3, 0)
	cases := []forgery{
		{"modulus proof omitted", kg2m2, "Paillier modulus proof",
			rewrite(t, func(m *keygen.KGRound2Message2) { m.ModProof = nil })},
		{"factorisation proof omitted", kg2m1, "factorisation proof",
			rewrite(t, func(m *keygen.KGRound2Message1) { m.FacProof = nil })},
		{"Paillier N with a small factor", kg1, "small factor",
			rewrite(t, func(m *keygen.KGRound1Message) { m.PaillierN = withSmallFactor(m.PaillierN) })},
		{"VSS commitment of t+2 points", kg2m2, "VSS decommitment has 7 parts, want 5",
			rewrite(t, func(m *keygen.KGRound2Message2) { m.DeCommitment = twoMorePoints(m.DeCommitment) })},
		{"modulus proof W dividing N", kg2m2, "gcd(W, N)",
			rewrite(t, func(m *keygen.KGRound2Message2) { m.ModProof[0] = pre["node1"].PaillierSK.P.Bytes() })},
	}
	c := forgeryCluster(t, cases)
	t.Run("forgeries", func(t *testing.T) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
				defer cancel()
				sess := tss.NewSessionID()
				res := parallel(all3, func(id pki.NodeID) (*tss.Share, error) {
					return c.engines[id].Keygen(ctx, tss.KeygenParams{Wallet: forgedWallet(i), Session: sess, Committee: all3, Threshold: 1}, pre[id])
				})
				wantRefusedBeforeTssLib(t, res, tc.reason)
			})
		}
	})
	wantCharged(t, c, len(cases))
}

// TestReshareRefusesForgedPaillierAndVSS: the same forgeries by node1 in a
// reshare of the shared 2-of-3 wallet to the same nodes (node1 is in both
// committees, so its new party sends the Paillier data and proofs and its
// old party the VSS commitment). The reshare aborts before tss-lib sees the
// message, no member returns a new share, and no old share is retired.
func TestReshareRefusesForgedPaillierAndVSS(t *testing.T) {
	_, shares := shared2of3(t)
	pre := preFor(all3, 3)
	cases := []forgery{
		{"modulus proof omitted", dg2m1, "Paillier modulus proof",
			rewrite(t, func(m *resharing.DGRound2Message1) { m.ModProof = nil })},
		{"factorisation proof omitted", dg4m1, "factorisation proof",
			rewrite(t, func(m *resharing.DGRound4Message1) { m.FacProof = nil })},
		{"Paillier N with a small factor", dg2m1, "small factor",
			rewrite(t, func(m *resharing.DGRound2Message1) { m.PaillierN = withSmallFactor(m.PaillierN) })},
		{"VSS commitment of t+2 points", dg3m2, "VSS decommitment has 7 parts, want 5",
			rewrite(t, func(m *resharing.DGRound3Message2) { m.VDecommitment = twoMorePoints(m.VDecommitment) })},
		{"modulus proof W dividing N", dg2m1, "gcd(W, N)",
			rewrite(t, func(m *resharing.DGRound2Message1) { m.ModProof[0] = pre["node1"].PaillierSK.P.Bytes() })},
	}
	c := forgeryCluster(t, cases)
	t.Run("forgeries", func(t *testing.T) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				// The wallet is renamed per case so the fault matches only its
				// sessions; a copy of each share carries the name.
				old := map[pki.NodeID]*tss.Share{}
				for _, id := range all3 {
					old[id] = copyShare(t, shares[id])
					old[id].Wallet = forgedWallet(i)
				}
				info := old["node1"].Info()
				var retired atomic.Int32
				ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
				defer cancel()
				sess := tss.NewSessionID()
				res := parallel(all3, func(id pki.NodeID) (*tss.Share, error) {
					return c.engines[id].Reshare(ctx, tss.ReshareParams{Session: sess, Old: info, OldSigners: all3, New: all3, NewThreshold: 1,
						OnRetire: func(*tss.Share) error { retired.Add(1); return nil }}, old[id], pre[id])
				})
				wantRefusedBeforeTssLib(t, res, tc.reason)
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
	})
	wantCharged(t, c, len(cases))
}

// wantNoShare checks every member's keygen failed and returned no share.
func wantNoShare(t *testing.T, res map[pki.NodeID]result[*tss.Share]) {
	t.Helper()
	for id, r := range res {
		if r.val != nil || r.err == nil {
			t.Errorf("%s returned a share (err %v): its address would be published", id, r.err)
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
	for _, id := range []pki.NodeID{"node2", "node3"} {
		var ae *tss.AbortError
		if !errors.As(res[id].err, &ae) || !errors.Is(ae, tss.ErrInconsistentResult) || !ae.Culprit("node1") || len(ae.Culprits) != 1 {
			t.Fatalf("%s should refuse node1's result: %v", id, res[id].err)
		}
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
