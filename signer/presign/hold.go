package presign

import (
	"context"
	"sync"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// maxHeldPerSession bounds the round-4 envelopes buffered for one session; a
// subset has at most a few members, so more than this is a flood and the
// excess is dropped (the engine would reject it as duplicate or equivocation).
const maxHeldPerSession = 64

type holdState struct {
	released bool
	buf      []tss.Delivery
}

// Hold wraps a node's Transport and buffers incoming round-4 signing
// envelopes of presignature sessions until the presignature is bound to a
// digest. Nothing else is held or changed: echoes, other rounds and every
// envelope of ordinary signing sessions pass straight to the engine, which
// still runs all of its checks (echo broadcast included) on the released
// round-4 envelopes. Create the engine with the Hold as its Transport.
type Hold struct {
	inner tss.Transport
	out   chan tss.Delivery

	mu       sync.Mutex
	sessions map[tss.SessionID]*holdState

	stop chan struct{}
	done chan struct{}
}

var _ tss.Transport = (*Hold)(nil)

// NewHold starts a Hold reading inner. Call Close to stop it.
func NewHold(inner tss.Transport) *Hold {
	h := &Hold{
		inner:    inner,
		out:      make(chan tss.Delivery, 8192),
		sessions: map[tss.SessionID]*holdState{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go h.pump()
	return h
}

// Send passes env to the wrapped transport unchanged.
func (h *Hold) Send(ctx context.Context, to pki.NodeID, env *tss.Envelope) error {
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

// buffer keeps d if it is a round-4 envelope of a held session.
func (h *Hold) buffer(d tss.Delivery) bool {
	if d.Env == nil || d.Env.Type != tss.SignRound4Type {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.sessions[d.Env.Session]
	if !ok || st.released {
		return false
	}
	if len(st.buf) < maxHeldPerSession {
		st.buf = append(st.buf, d)
	}
	return true
}

// hold starts buffering round-4 envelopes of session id. Call it before the
// session starts so that no round-4 envelope can slip through.
func (h *Hold) hold(id tss.SessionID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.sessions[id]; !ok {
		h.sessions[id] = &holdState{}
	}
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

// drop discards what is held for id and forgets the session.
func (h *Hold) drop(id tss.SessionID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, id)
}

// held reports how many envelopes are buffered for id (tests, metrics).
func (h *Hold) held(id tss.SessionID) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.sessions[id]; ok {
		return len(st.buf)
	}
	return 0
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
