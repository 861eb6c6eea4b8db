package presign

import (
	"context"
	"testing"

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
	// Round 4 of a session that is not held passes.
	send(other, tss.SignRound4Type, "other r4")
	if e := next(); e.Session != other {
		t.Fatal("round 4 of an unheld session was held")
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
