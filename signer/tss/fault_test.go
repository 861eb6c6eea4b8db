package tss_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/signing"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

const (
	r1m1 = "binance.tsslib.ecdsa.signing.SignRound1Message1"
	r1m2 = "binance.tsslib.ecdsa.signing.SignRound1Message2"
	r3   = "binance.tsslib.ecdsa.signing.SignRound3Message"
)

var all3 = []pki.NodeID{"node1", "node2", "node3"}

// runWithFaults signs with all three members of the shared wallet while
// node1's transport injects faults, and returns each member's result.
func runWithFaults(t *testing.T, deadline time.Duration, faults ...*tsstest.Fault) map[pki.NodeID]result[*tss.Signature] {
	t.Helper()
	c, shares := shared2of3(t)
	c.faults["node1"].SetFaults(faults...)
	t.Cleanup(func() {
		c.faults["node1"].SetFaults()
		for _, e := range c.engines {
			e.Budget().Clear("node1")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	done := make(chan map[pki.NodeID]result[*tss.Signature], 1)
	go func() { done <- c.sign(ctx, shares, all3, digestOf(t.Name())) }()
	select {
	case res := <-done:
		return res
	case <-time.After(deadline + 30*time.Second):
		t.Fatal("signing hung past its deadline")
		return nil
	}
}

func wantRecovered(t *testing.T, res map[pki.NodeID]result[*tss.Signature]) {
	t.Helper()
	_, shares := shared2of3(t)
	d := digestOf(t.Name())
	for id, r := range res {
		if r.err != nil {
			t.Fatalf("%s: %v", id, r.err)
		}
		tsstest.VerifySignature(t, r.val, shares[id].PubKey, d)
	}
}

// wantAbort checks that every member aborted with a typed error, that at
// least one of them detected the fault with sentinel want naming culprit,
// and that nobody blamed an innocent party.
func wantAbort(t *testing.T, res map[pki.NodeID]result[*tss.Signature], culprit pki.NodeID, want ...error) {
	t.Helper()
	detected := false
	for id, r := range res {
		var ae *tss.AbortError
		if !errors.As(r.err, &ae) {
			t.Fatalf("%s: want *AbortError, got %v", id, r.err)
		}
		// A timeout is ambiguous for bystanders (node3 cannot tell whether
		// node1 or node2 withheld node2's echo); only the victim's view is
		// checked for timeouts, below.
		for _, c := range ae.Culprits {
			if c != culprit && id != culprit && !errors.Is(r.err, tss.ErrTimeout) {
				t.Errorf("%s blamed innocent %s: %v", id, c, ae)
			}
		}
		for _, w := range want {
			if errors.Is(r.err, w) && ae.Culprit(culprit) {
				detected = true
			}
		}
	}
	if !detected {
		t.Fatalf("no member named %s with %v: %v", culprit, want, res)
	}
}

func TestFaultDelayRecovers(t *testing.T) {
	wantRecovered(t, runWithFaults(t, testDeadline, &tsstest.Fault{Kind: tsstest.Delay, Delay: 300 * time.Millisecond, Times: 3,
		Match: func(to pki.NodeID, _ *tss.Envelope) bool { return to == "node2" }}))
}

func TestFaultDuplicateRecovers(t *testing.T) {
	c, _ := shared2of3(t)
	before := c.engines["node2"].Stats().Duplicate
	wantRecovered(t, runWithFaults(t, testDeadline, &tsstest.Fault{Kind: tsstest.Duplicate}))
	if c.engines["node2"].Stats().Duplicate == before {
		t.Fatal("duplicates were not counted as dropped")
	}
}

func TestFaultReorderRecovers(t *testing.T) {
	wantRecovered(t, runWithFaults(t, testDeadline, &tsstest.Fault{Kind: tsstest.Reorder, Times: 1, Match: tsstest.MatchType(r1m1, "node2")}))
}

func TestFaultDropAbortsWithCulprit(t *testing.T) {
	res := runWithFaults(t, 20*time.Second, &tsstest.Fault{Kind: tsstest.Drop, Match: tsstest.MatchType(r3, "node2")})
	wantAbort(t, res, "node1", tss.ErrTimeout)
	var ae *tss.AbortError
	if !errors.As(res["node2"].err, &ae) || !errors.Is(ae, tss.ErrTimeout) || len(ae.Culprits) != 1 || ae.Culprits[0] != "node1" {
		t.Fatalf("node2 should time out blaming node1 only: %v", res["node2"].err)
	}
}

func TestFaultTamperAbortsWithCulprit(t *testing.T) {
	c, _ := shared2of3(t)
	res := runWithFaults(t, testDeadline, &tsstest.Fault{Kind: tsstest.Tamper, Match: tsstest.MatchType(r1m2, "node2")})
	wantAbort(t, res, "node1", tss.ErrEquivocation, tss.ErrBadMessage, tss.ErrProtocol)
	charged := 0
	for _, id := range []pki.NodeID{"node2", "node3"} {
		charged += c.engines[id].Budget().Failures("node1")
	}
	if charged == 0 {
		t.Fatal("abort was not charged to node1's failure budget")
	}
}

func TestFaultEquivocateAbortsWithCulprit(t *testing.T) {
	wantAbort(t, runWithFaults(t, testDeadline, &tsstest.Fault{Kind: tsstest.Equivocate, Match: tsstest.MatchType(r3, "node2")}),
		"node1", tss.ErrEquivocation)
}

// TestReplayAcrossSessionsDropped runs two sessions A and B concurrently;
// while B runs, node1 re-sends every envelope it ever sent in other sessions
// (A's round 1 included) to node2. They are dropped before tss-lib (as
// duplicates of A or as a finished session), and both sessions succeed.
func TestReplayAcrossSessionsDropped(t *testing.T) {
	c, shares := shared2of3(t)
	sessA, sessB := tss.NewSessionID(), tss.NewSessionID()
	c.faults["node1"].SetFaults(&tsstest.Fault{Kind: tsstest.Replay, Times: 4,
		Match: func(to pki.NodeID, env *tss.Envelope) bool { return to == "node2" && env.Session == sessB }})
	t.Cleanup(func() { c.faults["node1"].SetFaults() })
	before := c.engines["node2"].Stats()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	dA, dB := digestOf("A"), digestOf("B")
	type both struct{ a, b result[*tss.Signature] }
	res := parallel(all3, func(id pki.NodeID) (both, error) {
		out := make(chan result[*tss.Signature], 1)
		go func() {
			s, err := c.engines[id].Sign(ctx, shares[id], tss.SignParams{Session: sessA, Signers: all3, Digest: dA})
			out <- result[*tss.Signature]{id, s, err}
		}()
		s, err := c.engines[id].Sign(ctx, shares[id], tss.SignParams{Session: sessB, Signers: all3, Digest: dB})
		return both{<-out, result[*tss.Signature]{id, s, err}}, nil
	})
	for id, r := range res {
		if r.val.a.err != nil || r.val.b.err != nil {
			t.Fatalf("%s: A: %v, B: %v", id, r.val.a.err, r.val.b.err)
		}
		tsstest.VerifySignature(t, r.val.a.val, shares[id].PubKey, dA)
		tsstest.VerifySignature(t, r.val.b.val, shares[id].PubKey, dB)
	}
	after := c.engines["node2"].Stats()
	if after.Duplicate+after.FinishedSession == before.Duplicate+before.FinishedSession {
		t.Fatal("no replayed envelope was dropped; was the replay injected?")
	}
}

func TestQuarantineRefusesSessions(t *testing.T) {
	c, shares := shared2of3(t)
	e := c.engines["node2"]
	t.Cleanup(func() { e.Budget().Clear("node1") })
	for i := 0; i < 3; i++ {
		e.Budget().Record([]pki.NodeID{"node1"})
	}
	_, err := e.Sign(context.Background(), shares["node2"], tss.SignParams{Session: tss.NewSessionID(), Signers: []pki.NodeID{"node1", "node2"}})
	if !errors.Is(err, tss.ErrQuarantined) {
		t.Fatalf("want ErrQuarantined, got %v", err)
	}
	// Without node1 signing still works; after a human clears it, with node1 too.
	d := digestOf("quarantine")
	c.mustSign(t, shares, []pki.NodeID{"node2", "node3"}, d)
	e.Budget().Clear("node1")
	c.mustSign(t, shares, []pki.NodeID{"node1", "node2"}, d)
}

func TestBudget(t *testing.T) {
	b := tss.NewBudget(2)
	if q := b.Record([]pki.NodeID{"a", "b", "a"}); len(q) != 0 {
		t.Fatalf("quarantined after one failure: %v", q)
	}
	if q := b.Record([]pki.NodeID{"a"}); len(q) != 1 || q[0] != "a" {
		t.Fatalf("want a quarantined, got %v", q)
	}
	if err := b.Check([]pki.NodeID{"b", "a"}); !errors.Is(err, tss.ErrQuarantined) {
		t.Fatalf("check: %v", err)
	}
	if err := b.Check([]pki.NodeID{"b"}); err != nil {
		t.Fatal(err)
	}
	// What a node persists restores the same budget: a quarantined, b
	// charged once.
	r := tss.RestoreBudget(2, b.Counts())
	if err := r.Check([]pki.NodeID{"a"}); !errors.Is(err, tss.ErrQuarantined) || r.Failures("b") != 1 {
		t.Fatalf("restored: %v, b %d", err, r.Failures("b"))
	}
	if q := r.Record([]pki.NodeID{"b"}); len(q) != 1 || q[0] != "b" {
		t.Fatalf("restored b's second failure quarantined %v", q)
	}
	b.Clear("a")
	if err := b.Check([]pki.NodeID{"a"}); err != nil || b.Failures("a") != 0 {
		t.Fatalf("clear: %v", err)
	}
	if _, ok := b.Counts()["a"]; ok {
		t.Fatal("a cleared party is still counted")
	}
}

// TestUnauthenticatedAndForeignDropped injects envelopes claiming another
// sender, from a non-member, for an unknown session, and malformed bytes: none
// reaches a session.
func TestUnauthenticatedAndForeignDropped(t *testing.T) {
	c, shares := shared2of3(t)
	ep := c.net.Endpoint("node2")
	before := c.engines["node2"].Stats()
	ctx := context.Background()
	sess := tss.NewSessionID()
	env := &tss.Envelope{Wallet: shares["node1"].Wallet, Session: sess, Type: r1m2, From: "node1", To: "node2", Broadcast: true, Payload: []byte{1}}
	raw, _ := env.Marshal()
	_ = ep.Inject(ctx, "node3", raw)               // claims node1, authenticated as node3
	_ = ep.Inject(ctx, "node2", []byte("garbage")) // malformed
	env.From = "mallory"
	raw, _ = env.Marshal()
	_ = ep.Inject(ctx, "mallory", raw) // non-member, in a session node2 then runs
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(testDeadline)
		for time.Now().Before(deadline) {
			s := c.engines["node2"].Stats()
			if s.Spoofed > before.Spoofed && s.Malformed > before.Malformed {
				return
			}
			runtime.Gosched()
		}
	}()
	<-done
	s := c.engines["node2"].Stats()
	if s.Spoofed == before.Spoofed || s.Malformed == before.Malformed {
		t.Fatalf("spoofed/malformed not counted: %+v", s)
	}
	// node2 starts the session the non-member's envelope was held for.
	ctx2, cancel := context.WithTimeout(ctx, testDeadline)
	defer cancel()
	res := parallel([]pki.NodeID{"node1", "node2"}, func(id pki.NodeID) (*tss.Signature, error) {
		return c.engines[id].Sign(ctx2, shares[id], tss.SignParams{Session: sess, Signers: []pki.NodeID{"node1", "node2"}, Digest: digestOf("x")})
	})
	for id, r := range res {
		if r.err != nil {
			t.Fatalf("%s: %v", id, r.err)
		}
	}
	if c.engines["node2"].Stats().NonMember == before.NonMember {
		t.Fatal("non-member envelope not counted")
	}
	// A finished session ID is never reused (signing state is not resumed).
	_, err := c.engines["node2"].Sign(ctx, shares["node2"], tss.SignParams{Session: sess, Signers: []pki.NodeID{"node1", "node2"}})
	if !errors.Is(err, tss.ErrSessionReused) {
		t.Fatalf("reused session: %v", err)
	}
}

// TestFaultSkippedRecipientNotCharged: node1 omits node2 from its round-3
// broadcast. node3 then waits for node2's echo and times out naming node2
// as missing, but a timeout proves nothing, so no engine charges node2 (or
// anyone): repeated, this must not quarantine the honest node2.
func TestFaultSkippedRecipientNotCharged(t *testing.T) {
	c, _ := shared2of3(t)
	t.Cleanup(func() {
		for _, e := range c.engines {
			e.Budget().Clear("node2")
			e.Budget().Clear("node3")
		}
	})
	res := runWithFaults(t, 15*time.Second, &tsstest.Fault{Kind: tsstest.Drop, Match: tsstest.MatchType(r3, "node2")})
	sawMissingNode2 := false
	for id, r := range res {
		var ae *tss.AbortError
		if !errors.As(r.err, &ae) || !errors.Is(r.err, tss.ErrTimeout) && !errors.Is(r.err, tss.ErrPeerAborted) {
			t.Fatalf("%s: want a timeout or peer abort, got %v", id, r.err)
		}
		if errors.Is(r.err, tss.ErrTimeout) && ae.Culprit("node2") {
			sawMissingNode2 = true
			if ae.Provable() {
				t.Fatalf("%s: a timeout counted as provable: %v", id, ae)
			}
		}
	}
	if !sawMissingNode2 {
		t.Log("no member named node2 as missing (node3 saw node2's timeout abort first)")
	}
	for id, e := range c.engines {
		for _, p := range all3 {
			if f := e.Budget().Failures(p); f != 0 {
				t.Fatalf("%s charged %s %d failure(s) for a timeout", id, p, f)
			}
		}
	}
}

// TestFaultDegenerateRangeProofRefused: node1 sends node2 a round-1 MtA
// message whose RangeProofAlice has s = 0 (tss-lib #289). node2 refuses it
// before tss-lib with ErrBadMessage naming node1, and charges node1.
func TestFaultDegenerateRangeProofRefused(t *testing.T) {
	c, _ := shared2of3(t)
	var mutErr error
	res := runWithFaults(t, testDeadline, &tsstest.Fault{Kind: tsstest.Mutate, Match: tsstest.MatchType(r1m1, "node2"),
		Mutate: func(env *tss.Envelope) {
			a := new(anypb.Any)
			if mutErr = proto.Unmarshal(env.Payload, a); mutErr != nil {
				return
			}
			m, err := a.UnmarshalNew()
			if mutErr = err; err != nil {
				return
			}
			msg := m.(*signing.SignRound1Message1)
			msg.RangeProofAlice[3] = []byte{0} // s
			a2, err := anypb.New(msg)
			if mutErr = err; err != nil {
				return
			}
			env.Payload, mutErr = proto.Marshal(a2)
		}})
	if mutErr != nil {
		t.Fatal(mutErr)
	}
	var ae *tss.AbortError
	if !errors.As(res["node2"].err, &ae) || !errors.Is(ae, tss.ErrBadMessage) || !ae.Culprit("node1") ||
		!strings.Contains(ae.Reason, "range proof") {
		t.Fatalf("node2 should refuse node1's range proof: %v", res["node2"].err)
	}
	if c.engines["node2"].Budget().Failures("node1") == 0 {
		t.Fatal("forged range proof not charged to node1")
	}
}
