package presign

import (
	"context"
	"sync"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// maxHeldPerSession bounds the round-4 envelopes buffered for one session; a
// subset has at most a few members, so more than this is a flood and the
// excess is dropped (the engine would reject it as duplicate or equivocation).
const maxHeldPerSession = 64

// Limits on round-4 envelopes of sessions this node does not know yet. A
// peer may send its round 4 before this node registered the presignature
// (a compromised peer can do so at any time: the session ID is known to the
// whole subset), so such envelopes are held, never passed on, until the
// session is known here. Any authenticated peer can make up session IDs, so
// the buffer is bounded per sender and in total and entries expire; a sender
// over its quota evicts its own oldest envelopes.
const (
	maxUnknownPerSender = 64               // envelopes per sender
	maxUnknown          = 1024             // envelopes, all senders
	maxRound4Payload    = 16 << 10         // an honest round 4 is well under 1 KiB
	unknownTTL          = 30 * time.Second // as the engine's early buffer
	maxKnown            = 1 << 16          // ordinary and ended sessions remembered
)

type holdState struct {
	released bool
	buf      []tss.Delivery
}

// unknownMsg is a round-4 envelope of a session not known here yet.
type unknownMsg struct {
	d  tss.Delivery
	at time.Time
}

// Hold wraps a node's Transport and buffers incoming round-4 signing
// envelopes of presignature sessions until the presignature is bound to a
// digest. Nothing else is held or changed: echoes, other rounds and every
// envelope of ordinary signing sessions pass straight to the engine, which
// still runs all of its checks (echo broadcast included) on the released
// round-4 envelopes. Create the engine with the Hold as its Transport.
//
// A round-4 envelope reaches the engine only for a session this Hold knows
// to be ordinary or released. A session is a presignature once the Presigner
// registers it (before its engine session starts); it is ordinary once this
// node sends an envelope for it without having registered it (the engine
// sends round 1 as soon as it starts a session, and an honest peer cannot
// reach round 4 before it has this node's rounds 1-3). A round-4 envelope of
// a session that is neither yet is held, bounded and for at most 30 s: it
// joins the presignature's buffer if the Presigner registers the session,
// goes to the engine if this node starts the session as ordinary signing,
// and expires otherwise. So no round-4 envelope of a presignature reaches
// tss-lib before the presignature is bound, whatever the timing.
type Hold struct {
	inner tss.Transport
	out   chan tss.Delivery
	now   func() time.Time

	mu        sync.Mutex
	sessions  map[tss.SessionID]*holdState // presignature sessions
	known     map[tss.SessionID]bool       // true: ordinary (pass); false: ended presignature (discard)
	knownQ    []tss.SessionID              // insertion order of known, for the bound
	unknown   []*unknownMsg                // arrival order
	unknownBy map[pki.NodeID]int

	stop chan struct{}
	done chan struct{}
}

var _ tss.Transport = (*Hold)(nil)

// NewHold starts a Hold reading inner. Call Close to stop it.
func NewHold(inner tss.Transport) *Hold { return newHold(inner, time.Now) }

func newHold(inner tss.Transport, now func() time.Time) *Hold {
	h := &Hold{
		inner:     inner,
		out:       make(chan tss.Delivery, 8192),
		now:       now,
		sessions:  map[tss.SessionID]*holdState{},
		known:     map[tss.SessionID]bool{},
		unknownBy: map[pki.NodeID]int{},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go h.pump()
	return h
}

// Send passes env to the wrapped transport unchanged. The first envelope
// this node sends for a session it did not register as a presignature marks
// the session ordinary: round-4 envelopes held for it go to the engine.
func (h *Hold) Send(ctx context.Context, to pki.NodeID, env *tss.Envelope) error {
	if env != nil {
		h.sawOutbound(env.Session)
	}
	return h.inner.Send(ctx, to, env)
}

// Receive returns the deliveries the engine may act on.
func (h *Hold) Receive() <-chan tss.Delivery { return h.out }

// Close stops forwarding.
func (h *Hold) Close() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

func (h *Hold) pump() {
	defer close(h.done)
	in := h.inner.Receive()
	for {
		select {
		case <-h.stop:
			return
		case d, ok := <-in:
			if !ok {
				return
			}
			if h.buffer(d) {
				continue
			}
			select {
			case h.out <- d:
			case <-h.stop:
				return
			}
		}
	}
}

// buffer keeps (or discards) d if it is a round-4 envelope that must not
// reach the engine now; it reports whether d was taken.
func (h *Hold) buffer(d tss.Delivery) bool {
	if d.Env == nil || d.Env.Type != tss.SignRound4Type {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	id := d.Env.Session
	if st, ok := h.sessions[id]; ok {
		if st.released {
			return false
		}
		if len(st.buf) < maxHeldPerSession {
			st.buf = append(st.buf, d)
		}
		return true
	}
	if pass, ok := h.known[id]; ok {
		return !pass // an ended presignature's round 4 is discarded
	}
	h.holdUnknownLocked(d)
	return true
}

// holdUnknownLocked buffers d for a session not known yet, within the limits.
func (h *Hold) holdUnknownLocked(d tss.Delivery) {
	now := h.now()
	h.expireLocked(now)
	if len(d.Env.Payload) > maxRound4Payload {
		return
	}
	for h.unknownBy[d.From] >= maxUnknownPerSender {
		h.evictLocked(func(m *unknownMsg) bool { return m.d.From == d.From })
	}
	for len(h.unknown) >= maxUnknown {
		h.evictLocked(nil)
	}
	h.unknown = append(h.unknown, &unknownMsg{d: d, at: now})
	h.unknownBy[d.From]++
}

// expireLocked drops unknown-session envelopes older than unknownTTL (the
// buffer is in arrival order).
func (h *Hold) expireLocked(now time.Time) {
	for len(h.unknown) > 0 && now.Sub(h.unknown[0].at) >= unknownTTL {
		h.evictLocked(nil)
	}
}

// evictLocked drops the oldest unknown-session envelope that match selects
// (nil: any).
func (h *Hold) evictLocked(match func(*unknownMsg) bool) {
	for i, m := range h.unknown {
		if match == nil || match(m) {
			h.removeUnknownLocked(i)
			return
		}
	}
}

func (h *Hold) removeUnknownLocked(i int) {
	m := h.unknown[i]
	h.unknown = append(h.unknown[:i], h.unknown[i+1:]...)
	if h.unknownBy[m.d.From]--; h.unknownBy[m.d.From] <= 0 {
		delete(h.unknownBy, m.d.From)
	}
}

// takeUnknownLocked removes and returns the unexpired envelopes held for id.
func (h *Hold) takeUnknownLocked(id tss.SessionID) []tss.Delivery {
	h.expireLocked(h.now())
	var out []tss.Delivery
	for i := 0; i < len(h.unknown); {
		if m := h.unknown[i]; m.d.Env.Session == id {
			out = append(out, m.d)
			h.removeUnknownLocked(i)
			continue
		}
		i++
	}
	return out
}

// rememberLocked records a session as ordinary (pass) or ended (discard),
// forgetting the oldest beyond maxKnown.
func (h *Hold) rememberLocked(id tss.SessionID, pass bool) {
	if _, ok := h.known[id]; !ok {
		h.knownQ = append(h.knownQ, id)
	}
	h.known[id] = pass
	if len(h.knownQ) > maxKnown {
		delete(h.known, h.knownQ[0])
		h.knownQ = h.knownQ[1:]
	}
}

// sawOutbound marks a session this node sends for as ordinary unless it is
// a presignature, and hands the engine what was held for it.
func (h *Hold) sawOutbound(id tss.SessionID) {
	h.mu.Lock()
	if _, ok := h.sessions[id]; ok {
		h.mu.Unlock()
		return
	}
	if _, ok := h.known[id]; ok {
		h.mu.Unlock()
		return
	}
	h.rememberLocked(id, true)
	early := h.takeUnknownLocked(id)
	h.mu.Unlock()
	for _, d := range early {
		if !h.inject(d) {
			return
		}
	}
}

// hold starts buffering round-4 envelopes of session id, including those
// that arrived before this call. Call it before the session starts.
func (h *Hold) hold(id tss.SessionID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.sessions[id]; ok {
		return
	}
	st := &holdState{}
	for _, d := range h.takeUnknownLocked(id) {
		if len(st.buf) < maxHeldPerSession {
			st.buf = append(st.buf, d)
		}
	}
	h.sessions[id] = st
	delete(h.known, id) // a presignature now, whatever was seen before
}

// release hands the buffered envelopes of id to the engine and lets later
// ones through.
func (h *Hold) release(id tss.SessionID) {
	h.mu.Lock()
	st, ok := h.sessions[id]
	var buf []tss.Delivery
	if ok {
		st.released = true
		buf, st.buf = st.buf, nil
	}
	h.mu.Unlock()
	for _, d := range buf {
		if !h.inject(d) {
			return
		}
	}
}

// drop discards what is held for id and forgets the session; later round-4
// envelopes of id are discarded.
func (h *Hold) drop(id tss.SessionID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, id)
	h.takeUnknownLocked(id)
	h.rememberLocked(id, false)
}

// held reports how many envelopes are buffered for id (tests, metrics):
// those of a registered presignature, or else those of an unknown session.
func (h *Hold) held(id tss.SessionID) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.sessions[id]; ok {
		return len(st.buf)
	}
	n := 0
	for _, m := range h.unknown {
		if m.d.Env.Session == id {
			n++
		}
	}
	return n
}

// inject delivers d to the engine as if it came from the wrapped transport.
func (h *Hold) inject(d tss.Delivery) bool {
	select {
	case h.out <- d:
		return true
	case <-h.stop:
		return false
	}
}
