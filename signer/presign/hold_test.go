package presign

import (
	"context"
	"testing"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

func TestHoldBuffersRound4UntilRelease(t *testing.T) {
	net := tss.NewMemNetwork()
	a := net.Endpoint("a")
	h := NewHold(net.Endpoint("b"))
	t.Cleanup(h.Close)
	ctx := ctxT(t)
	held, other := tss.NewSessionID(), tss.NewSessionID()
	send := func(sess tss.SessionID, typ string, payload string) {
		t.Helper()
		env := &tss.Envelope{Wallet: "w", Session: sess, Type: typ, From: "a", To: "b", Broadcast: true, Payload: []byte(payload)}
		if err := a.Send(ctx, "b", env); err != nil {
			t.Fatal(err)
		}
	}
	next := func() *tss.Envelope {
		t.Helper()
		select {
		case d := <-h.Receive():
			if d.From != "a" {
				t.Fatalf("delivery from %s", d.From)
			}
			return d.Env
		case <-ctx.Done():
			t.Fatal("nothing delivered")
			return nil
		}
	}
	h.hold(held)
	// The transport is FIFO: if the round-4 envelope were not held it would
	// arrive before the echo sent after it.
	send(held, tss.SignRound4Type, "early r4")
	send(held, tss.TypeEcho, "echo")
	if e := next(); e.Type != tss.TypeEcho {
		t.Fatalf("got %s first, want the echo (round 4 must be held)", e.Type)
	}
	// Round 4 of an ordinary session (this node sent for it, without
	// registering it as a presignature) passes.
	if err := h.Send(ctx, "a", &tss.Envelope{Wallet: "w", Session: other, Type: tss.TypeEcho, From: "b", To: "a"}); err != nil {
		t.Fatal(err)
	}
	send(other, tss.SignRound4Type, "other r4")
	if e := next(); e.Session != other {
		t.Fatal("round 4 of an ordinary session was held")
	}
	waitFor(t, "held count", func() bool { return h.held(held) == 1 })
	h.release(held)
	if e := next(); e.Session != held || string(e.Payload) != "early r4" {
		t.Fatalf("released %+v", e)
	}
	// After release, round 4 of that session passes straight.
	send(held, tss.SignRound4Type, "late r4")
	if e := next(); string(e.Payload) != "late r4" {
		t.Fatalf("after release got %q", e.Payload)
	}
}

func TestHoldDropAndBound(t *testing.T) {
	net := tss.NewMemNetwork()
	a := net.Endpoint("a")
	h := NewHold(net.Endpoint("b"))
	t.Cleanup(h.Close)
	ctx := context.Background()
	id := tss.NewSessionID()
	h.hold(id)
	for i := 0; i < maxHeldPerSession+10; i++ {
		env := &tss.Envelope{Wallet: "w", Session: id, Type: tss.SignRound4Type, From: "a", To: "b", Broadcast: true, Payload: []byte{byte(i)}}
		if err := a.Send(ctx, "b", env); err != nil {
			t.Fatal(err)
		}
	}
	// A flood is bounded: the excess is dropped, not buffered.
	marker := &tss.Envelope{Wallet: "w", Session: id, Type: tss.TypeEcho, From: "a", To: "b"}
	if err := a.Send(ctx, "b", marker); err != nil {
		t.Fatal(err)
	}
	if d := <-h.Receive(); d.Env.Type != tss.TypeEcho {
		t.Fatalf("got %s, want the marker", d.Env.Type)
	}
	if n := h.held(id); n != maxHeldPerSession {
		t.Fatalf("held %d, want the cap %d", n, maxHeldPerSession)
	}
	// Dropping discards the buffer; nothing is delivered for it.
	h.drop(id)
	if n := h.held(id); n != 0 {
		t.Fatalf("held %d after drop", n)
	}
	h.release(id) // releasing a dropped session delivers nothing
	if err := a.Send(ctx, "b", marker); err != nil {
		t.Fatal(err)
	}
	if d := <-h.Receive(); d.Env.Type != tss.TypeEcho {
		t.Fatalf("a dropped envelope was delivered: %s", d.Env.Type)
	}
}

// holdRig is a Hold over node b's endpoint with b's real engine reading it,
// and an injected clock; envelopes are injected into b's endpoint as if
// from their sender.
type holdRig struct {
	t       *testing.T
	h       *Hold
	e       *tss.Engine
	clock   *fakeClock
	markers int64
}

func newHoldRig(t *testing.T) *holdRig {
	net := tss.NewMemNetwork()
	net.Endpoint("a") // a peer b can send to
	r := &holdRig{t: t, clock: &fakeClock{now: time.Unix(1_800_000_000, 0)}}
	r.h = newHold(net.Endpoint("b"), r.clock.Now)
	t.Cleanup(r.h.Close)
	e, err := tss.NewEngine(tss.Config{Self: "b", Transport: r.h, Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	r.e = e
	return r
}

func (r *holdRig) send(from pki.NodeID, sess tss.SessionID, typ string) {
	r.t.Helper()
	env := &tss.Envelope{Wallet: "w", Session: sess, Type: typ, From: from, To: "b", Broadcast: true, Payload: []byte(typ)}
	raw, err := env.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.h.inner.(*tss.MemTransport).Inject(context.Background(), from, raw); err != nil {
		r.t.Fatal(err)
	}
}

// reached checks that the engine has received exactly want envelopes for
// sessions it has not started (its early buffer: nothing here ever starts a
// session). It first sends a malformed marker, which the Hold passes and
// the engine counts; the transport, the Hold and the engine's loop are all
// FIFO, so once the marker is counted, everything sent before it was either
// handed to the engine or kept by the Hold.
func (r *holdRig) reached(want int64) {
	r.t.Helper()
	r.markers++
	if err := r.h.inner.(*tss.MemTransport).Inject(context.Background(), "a", []byte("marker")); err != nil {
		r.t.Fatal(err)
	}
	waitFor(r.t, "the marker", func() bool { return r.e.Stats().Malformed >= r.markers })
	if got := r.e.Stats().EarlyHeld; got != want {
		r.t.Fatalf("the engine received %d envelopes, want %d", got, want)
	}
}

// TestHoldRound4BeforeRegistration: a peer's round-4 envelope arrives before
// this node's Presigner registered the presignature (a fast or compromised
// peer). It is held, not passed to the engine; registering the session moves
// it into the presignature's buffer, and only release hands it over.
func TestHoldRound4BeforeRegistration(t *testing.T) {
	r := newHoldRig(t)
	id := tss.NewSessionID()
	r.send("a", id, tss.SignRound4Type)
	r.reached(0) // held: the engine never saw it
	if n := r.h.held(id); n != 1 {
		t.Fatalf("held %d for the unregistered session, want 1", n)
	}
	r.h.hold(id) // what Offline does before the engine session starts
	if n := r.h.held(id); n != 1 {
		t.Fatalf("held %d after registration, want 1", n)
	}
	r.reached(0)
	r.h.release(id)
	r.reached(1) // only now
	if n := r.h.held(id); n != 0 {
		t.Fatalf("held %d after release", n)
	}
}

// TestHoldRound4OfOrdinarySession: a round-4 envelope of a session nobody
// registered waits until this node sends for that session (it started
// ordinary signing), then goes to the engine; later ones pass straight.
// An ended presignature's late round 4 is discarded.
func TestHoldRound4OfOrdinarySession(t *testing.T) {
	r := newHoldRig(t)
	id := tss.NewSessionID()
	r.send("a", id, tss.SignRound4Type)
	r.reached(0)
	if err := r.h.Send(context.Background(), "a", &tss.Envelope{Wallet: "w", Session: id, Type: tss.TypeEcho, From: "b", To: "a"}); err != nil {
		t.Fatal(err)
	}
	r.reached(1)
	r.send("a", id, tss.SignRound4Type)
	r.reached(2)

	ended := tss.NewSessionID()
	r.h.hold(ended)
	r.h.drop(ended)
	r.send("a", ended, tss.SignRound4Type)
	r.reached(2) // discarded
	if n := r.h.held(ended); n != 0 {
		t.Fatalf("held %d for an ended presignature", n)
	}
}

// TestHoldUnknownSessionsBounded: unknown-session round-4 envelopes expire
// after 30 s of the injected clock, and a flooding peer displaces only its
// own: an honest peer's early round 4 is still there to be registered.
func TestHoldUnknownSessionsBounded(t *testing.T) {
	r := newHoldRig(t)
	stale := tss.NewSessionID()
	r.send("a", stale, tss.SignRound4Type)
	r.reached(0)
	r.clock.Advance(unknownTTL)
	honest := tss.NewSessionID()
	r.send("a", honest, tss.SignRound4Type)
	for i := 0; i < 3*maxUnknownPerSender; i++ {
		r.send("m", tss.NewSessionID(), tss.SignRound4Type)
	}
	r.reached(0)
	if n := r.h.held(stale); n != 0 {
		t.Fatalf("an expired envelope is still held (%d)", n)
	}
	r.h.mu.Lock()
	total, byM := len(r.h.unknown), r.h.unknownBy["m"]
	r.h.mu.Unlock()
	if byM != maxUnknownPerSender || total != maxUnknownPerSender+1 {
		t.Fatalf("held %d in total, %d from the flooder; want %d and %d", total, byM, maxUnknownPerSender+1, maxUnknownPerSender)
	}
	r.h.hold(honest)
	if n := r.h.held(honest); n != 1 {
		t.Fatalf("the honest early round 4 was displaced (%d held)", n)
	}
	r.h.hold(stale)
	if n := r.h.held(stale); n != 0 {
		t.Fatalf("registration revived an expired envelope (%d held)", n)
	}
}
