package tss_test

import (
	"context"
	"crypto/rand"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

// fakeClock is an injected clock: tests move time, never sleep.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// pollStats waits (bounded) until cond holds for e's stats.
func pollStats(t *testing.T, e *tss.Engine, what string, cond func(tss.Stats) bool) tss.Stats {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for time.Now().Before(deadline) {
		if s := e.Stats(); cond(s) {
			return s
		}
		runtime.Gosched()
	}
	t.Fatalf("%s: %+v", what, e.Stats())
	return tss.Stats{}
}

// TestEarlyBufferFloodDoesNotDropHonestRound1: node3, an authenticated
// peer, floods node2 with envelopes for made-up sessions (5,000 × 4 KiB:
// more than the whole old buffer). node1 then starts a real session before
// node2 does; its round-1 envelopes are still held, and the session
// succeeds. Held envelopes expire after 30 s of the injected clock.
func TestEarlyBufferFloodDoesNotDropHonestRound1(t *testing.T) {
	_, shares := shared2of3(t)
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	net := tss.NewMemNetwork()
	engines := map[pki.NodeID]*tss.Engine{}
	for _, id := range []pki.NodeID{"node1", "node2"} {
		e, err := tss.NewEngine(tss.Config{Self: id, Transport: net.Endpoint(id), Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		engines[id] = e
	}
	ep := net.Endpoint("node2")
	ctx := context.Background()
	const flood = 5000
	payload := make([]byte, 4096)
	for i := 0; i < flood; i++ {
		env := &tss.Envelope{Wallet: shares["node2"].Wallet, Type: r1m2, From: "node3", To: "node2", Broadcast: true, Payload: payload}
		_, _ = rand.Read(env.Session[:])
		raw, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := ep.Inject(ctx, "node3", raw); err != nil {
			t.Fatal(err)
		}
	}
	st := pollStats(t, engines["node2"], "flood not processed", func(s tss.Stats) bool {
		return s.EarlyHeld+s.EarlyEvicted+s.UnknownSession >= flood
	})
	if st.EarlyBytes > 2<<20 || st.EarlyHeld > 256 {
		t.Fatalf("one sender holds %d envelopes / %d bytes of the early buffer", st.EarlyHeld, st.EarlyBytes)
	}

	signers := []pki.NodeID{"node1", "node2"}
	sess := tss.NewSessionID()
	sctx, cancel := context.WithTimeout(ctx, testDeadline)
	defer cancel()
	d := digestOf("early flood")
	res1 := make(chan error, 1)
	go func() {
		_, err := engines["node1"].Sign(sctx, shares["node1"], tss.SignParams{Session: sess, Signers: signers, Digest: d})
		res1 <- err
	}()
	// node2 starts only once node1's round-1 envelopes are held for it.
	pollStats(t, engines["node2"], "node1's round 1 not held", func(s tss.Stats) bool { return s.EarlyHeld > st.EarlyHeld })
	sig, err := engines["node2"].Sign(sctx, shares["node2"], tss.SignParams{Session: sess, Signers: signers, Digest: d})
	if err != nil {
		t.Fatalf("node2: %v", err)
	}
	tsstest.VerifySignature(t, sig, shares["node2"].PubKey, d)
	if err := <-res1; err != nil {
		t.Fatalf("node1: %v", err)
	}

	// Expiry: 31 s later the flood is gone at the next arrival.
	clk.Advance(31 * time.Second)
	env := &tss.Envelope{Wallet: "w", Session: tss.NewSessionID(), Type: r1m2, From: "node3", To: "node2", Broadcast: true, Payload: []byte{1}}
	raw, _ := env.Marshal()
	if err := ep.Inject(ctx, "node3", raw); err != nil {
		t.Fatal(err)
	}
	pollStats(t, engines["node2"], "held envelopes did not expire", func(s tss.Stats) bool { return s.EarlyHeld == 1 })
}

// TestEarlyBufferTotalLimit: many senders together cannot exceed the total
// byte limit; the oldest envelopes are evicted first.
func TestEarlyBufferTotalLimit(t *testing.T) {
	net := tss.NewMemNetwork()
	e, err := tss.NewEngine(tss.Config{Self: "victim", Transport: net.Endpoint("victim")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ep := net.Endpoint("victim")
	payload := make([]byte, 64<<10)
	sent := 0
	for p := 0; p < 12; p++ {
		from := pki.NodeID("peer" + string(rune('a'+p)))
		for i := 0; i < 30; i++ {
			env := &tss.Envelope{Wallet: "w", Session: tss.NewSessionID(), Type: r1m2, From: from, To: "victim", Broadcast: true, Payload: payload}
			raw, _ := env.Marshal()
			if err := ep.Inject(context.Background(), from, raw); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	st := pollStats(t, e, "not processed", func(s tss.Stats) bool { return s.EarlyHeld+s.EarlyEvicted >= int64(sent) })
	if st.EarlyBytes > 16<<20 || st.EarlyEvicted == 0 || st.EarlyHeld*(64<<10) > 16<<20 {
		t.Fatalf("total limit not enforced: %+v", st)
	}
}
