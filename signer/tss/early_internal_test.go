package tss

import (
	"testing"
	"time"

	"github.com/custody-dev/custody/pki"
)

// checkEarlyAccounting verifies the hold buffer's counters against its
// contents. Called with e.mu held.
func checkEarlyAccounting(t *testing.T, e *Engine) {
	t.Helper()
	n, bytes := 0, 0
	by := map[pki.NodeID]senderUse{}
	for _, m := range e.earlyQ {
		if m.dead {
			continue
		}
		n++
		bytes += m.size
		u := by[m.d.From]
		u.n++
		u.bytes += m.size
		by[m.d.From] = u
	}
	listed := 0
	for _, l := range e.early {
		for _, m := range l {
			if !m.dead {
				listed++
			}
		}
	}
	if n != e.earlyCount || bytes != e.earlyBytes || listed != n || len(by) != len(e.earlyBy) {
		t.Fatalf("accounting: queue %d/%d, counters %d/%d, listed %d, senders %d vs %d", n, bytes, e.earlyCount, e.earlyBytes, listed, len(by), len(e.earlyBy))
	}
	for p, u := range by {
		if got := e.earlyBy[p]; got == nil || *got != u {
			t.Fatalf("sender %s: %+v, counted %+v", p, u, got)
		}
	}
	if e.earlyCount > maxEarly || e.earlyBytes > maxEarlyBytes {
		t.Fatalf("over the total limit: %d envelopes, %d bytes", e.earlyCount, e.earlyBytes)
	}
	for p, u := range e.earlyBy {
		if u.n > maxEarlyPerSender || u.bytes > maxEarlyBytesPerSender {
			t.Fatalf("%s over its quota: %+v", p, *u)
		}
	}
}

// TestEarlyBufferAccounting mixes per-sender eviction, total eviction,
// expiry and a session start, checking the counters after each step.
func TestEarlyBufferAccounting(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e := &Engine{cfg: Config{Now: func() time.Time { return now }}, early: map[SessionID][]*earlyMsg{}, earlyBy: map[pki.NodeID]*senderUse{},
		sessions: map[SessionID]*session{}, finished: map[SessionID]struct{}{}}
	hold := func(from pki.NodeID, sess SessionID, payload int) {
		e.holdEarly(Delivery{From: from, Env: &Envelope{Session: sess, From: from, To: "me", Payload: make([]byte, payload)}})
		checkEarlyAccounting(t, e)
	}
	var keep SessionID
	keep[0] = 1
	hold("honest", keep, 100)
	for i := 0; i < 2*maxEarlyPerSender; i++ {
		var s SessionID
		s[0], s[1], s[2] = 2, byte(i), byte(i>>8)
		hold("flood", s, 10)
	}
	if e.earlyBy["flood"].n != maxEarlyPerSender || e.earlyBy["honest"].n != 1 {
		t.Fatalf("per-sender limit: %+v %+v", *e.earlyBy["flood"], *e.earlyBy["honest"])
	}
	for p := 0; p < 20; p++ { // many senders, big envelopes: the total limit
		for i := 0; i < 3; i++ {
			var s SessionID
			s[0], s[1], s[2] = 3, byte(p), byte(i)
			hold(pki.NodeID(rune('A'+p)), s, 600<<10)
		}
	}
	if e.earlyBy["honest"] != nil {
		t.Fatal("the oldest envelope survived the total limit")
	}
	// A sender whose only envelope is evicted by its own next one.
	hold("big", SessionID{7}, 1500<<10)
	hold("big", SessionID{8}, 1000<<10)
	if u := e.earlyBy["big"]; u == nil || u.n != 1 {
		t.Fatalf("big: %+v", u)
	}
	now = now.Add(earlyTTL / 2)
	hold("honest", keep, 100)
	now = now.Add(earlyTTL/2 + time.Second)
	hold("late", SessionID{9}, 1)
	if e.earlyCount != 2 || e.earlyBy["big"] != nil {
		t.Fatalf("expiry left %d envelopes", e.earlyCount)
	}
	s := &session{id: keep, inbox: make(chan Delivery, 4), done: make(chan struct{}), e: e}
	if err := e.register(s); err != nil {
		t.Fatal(err)
	}
	if len(s.inbox) != 1 || e.earlyCount != 1 {
		t.Fatalf("register: %d delivered, %d still held", len(s.inbox), e.earlyCount)
	}
	checkEarlyAccounting(t, e)
}
