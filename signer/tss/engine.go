package tss

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custody-dev/custody/pki"
)

// Event is something the caller should log or audit: aborts, quarantines,
// retired shares. Engines call Config.Events synchronously.
type Event struct {
	Kind    string // "abort", "quarantine", "share-retired"
	Session SessionID
	Wallet  string
	Parties []pki.NodeID
	Detail  string
}

// Event kinds.
const (
	EventAbort        = "abort"
	EventQuarantine   = "quarantine"
	EventShareRetired = "share-retired"
)

// Config configures an Engine.
type Config struct {
	// Self is this node's identity, as the transport authenticates it to peers.
	Self pki.NodeID
	// Transport carries envelopes; the engine is its only reader.
	Transport Transport
	// Budget counts failures per party; nil means NewBudget(3).
	Budget *Budget
	// Events receives audit events; nil discards them.
	Events func(Event)
	// Now is the clock that ages envelopes held for sessions not started
	// yet; nil means time.Now. Tests inject a fake clock.
	Now func() time.Time
}

// Stats counts what the engine did with received envelopes.
type Stats struct {
	Delivered, Malformed, Spoofed, Misrouted, UnknownSession, FinishedSession,
	NonMember, Duplicate, WrongWallet int64
	// EarlyHeld and EarlyBytes are what is held right now for sessions this
	// node has not started; EarlyEvicted counts held envelopes dropped
	// (expired, or evicted by the byte/count limits).
	EarlyHeld, EarlyBytes, EarlyEvicted int64
	// InboxFull counts envelopes dropped because a session's inbox was at
	// its byte limit.
	InboxFull int64
}

type stats struct {
	delivered, malformed, spoofed, misrouted, unknown, finished,
	nonMember, duplicate, wrongWallet, earlyEvicted, inboxFull atomic.Int64
}

// Limits on envelopes held for sessions this node has not started yet. Any
// authenticated peer can send envelopes for session IDs it makes up, so the
// buffer is bounded in bytes and count, per sender and in total; entries
// expire after earlyTTL and the oldest go first. A flooding peer therefore
// only displaces its own envelopes, never an honest peer's round 1.
const (
	maxEarly               = 4096             // envelopes, all senders
	maxEarlyBytes          = 16 << 20         // bytes, all senders
	maxEarlyPerSender      = 256              // envelopes per sender
	maxEarlyBytesPerSender = 2 << 20          // bytes per sender
	earlyTTL               = 30 * time.Second // a peer starts at most this much earlier
	maxFinishedID          = 1 << 16
)

// envOverhead is the accounted size of an envelope beyond its payload and
// strings (map and slice entries, headers).
const envOverhead = 256

func envSize(env *Envelope) int {
	return envOverhead + len(env.Payload) + len(env.Wallet) + len(env.Type) + len(env.From) + len(env.To)
}

// earlyMsg is one envelope held for a session not started here yet.
type earlyMsg struct {
	d    Delivery
	at   time.Time
	size int
	dead bool
}

type senderUse struct{ n, bytes int }

// Engine runs threshold protocol sessions for one node over one Transport.
// It is safe for concurrent use: any number of sessions may run at once.
type Engine struct {
	cfg   Config
	stats stats

	mu            sync.Mutex
	sessions      map[SessionID]*session
	finished      map[SessionID]struct{}
	finishedOrder []SessionID
	early         map[SessionID][]*earlyMsg
	earlyQ        []*earlyMsg // arrival order; dead entries are skipped
	earlyCount    int
	earlyBytes    int
	earlyBy       map[pki.NodeID]*senderUse

	stop chan struct{}
	done chan struct{}
}

// NewEngine starts an engine reading cfg.Transport. Call Close to stop it.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Self == "" || cfg.Transport == nil {
		return nil, fmt.Errorf("%w: engine needs Self and Transport", ErrBadParams)
	}
	if cfg.Budget == nil {
		cfg.Budget = NewBudget(3)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Engine{
		cfg:      cfg,
		sessions: map[SessionID]*session{},
		finished: map[SessionID]struct{}{},
		early:    map[SessionID][]*earlyMsg{},
		earlyBy:  map[pki.NodeID]*senderUse{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go e.loop()
	return e, nil
}

// Self returns the node identity of the engine.
func (e *Engine) Self() pki.NodeID { return e.cfg.Self }

// Budget returns the engine's failure budget (for a human to Clear parties).
func (e *Engine) Budget() *Budget { return e.cfg.Budget }

// Close stops the receive loop. Running sessions end with their contexts.
func (e *Engine) Close() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	<-e.done
}

// Stats returns counters of received envelopes by outcome.
func (e *Engine) Stats() Stats {
	s := &e.stats
	st := Stats{
		Delivered: s.delivered.Load(), Malformed: s.malformed.Load(), Spoofed: s.spoofed.Load(),
		Misrouted: s.misrouted.Load(), UnknownSession: s.unknown.Load(), FinishedSession: s.finished.Load(),
		NonMember: s.nonMember.Load(), Duplicate: s.duplicate.Load(), WrongWallet: s.wrongWallet.Load(),
		EarlyEvicted: s.earlyEvicted.Load(), InboxFull: s.inboxFull.Load(),
	}
	e.mu.Lock()
	st.EarlyHeld, st.EarlyBytes = int64(e.earlyCount), int64(e.earlyBytes)
	e.mu.Unlock()
	return st
}

func (e *Engine) emit(ev Event) {
	if e.cfg.Events != nil {
		e.cfg.Events(ev)
	}
}

func (e *Engine) loop() {
	defer close(e.done)
	in := e.cfg.Transport.Receive()
	for {
		select {
		case <-e.stop:
			return
		case d, ok := <-in:
			if !ok {
				return
			}
			e.dispatch(d)
		}
	}
}

func (e *Engine) dispatch(d Delivery) {
	switch {
	case d.Env == nil:
		e.stats.malformed.Add(1)
		return
	case d.Env.From != d.From:
		// The payload's claim of sender is never trusted.
		e.stats.spoofed.Add(1)
		return
	case d.Env.To != e.cfg.Self:
		e.stats.misrouted.Add(1)
		return
	}
	e.mu.Lock()
	s, ok := e.sessions[d.Env.Session]
	if !ok {
		if _, fin := e.finished[d.Env.Session]; fin {
			e.mu.Unlock()
			e.stats.finished.Add(1)
			return
		}
		// A peer may start a session a moment before we do: hold a bounded
		// number of envelopes. They reach tss-lib only if we start that
		// session ourselves, and then pass every check below.
		e.holdEarly(d)
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	s.deliver(d)
}

// register makes s receive envelopes; a session ID is usable once per engine.
func (e *Engine) register(s *session) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.sessions[s.id]; ok {
		return fmt.Errorf("%w: %s", ErrSessionReused, s.id)
	}
	if _, ok := e.finished[s.id]; ok {
		return fmt.Errorf("%w: %s", ErrSessionReused, s.id)
	}
	e.sessions[s.id] = s
	e.expireEarly(e.cfg.Now())
	early := e.early[s.id]
	var ds []Delivery
	for _, m := range early {
		if !m.dead {
			ds = append(ds, m.d)
		}
		e.dropEarly(m, false)
	}
	delete(e.early, s.id)
	for _, d := range ds {
		s.deliver(d)
	}
	return nil
}

// holdEarly keeps d for a session not started here, within the limits.
// Called with e.mu held.
func (e *Engine) holdEarly(d Delivery) {
	now := e.cfg.Now()
	e.expireEarly(now)
	size := envSize(d.Env)
	if size > maxEarlyBytesPerSender {
		e.stats.unknown.Add(1)
		return
	}
	// Per sender: evict this sender's oldest envelopes first.
	for u := e.earlyBy[d.From]; u != nil && (u.n >= maxEarlyPerSender || u.bytes+size > maxEarlyBytesPerSender); u = e.earlyBy[d.From] {
		e.evictOldest(func(m *earlyMsg) bool { return m.d.From == d.From })
	}
	// In total: evict the oldest of anyone.
	for e.earlyCount >= maxEarly || e.earlyBytes+size > maxEarlyBytes {
		e.evictOldest(nil)
	}
	u := e.earlyBy[d.From] // looked up after eviction, which deletes emptied entries
	if u == nil {
		u = &senderUse{}
		e.earlyBy[d.From] = u
	}
	m := &earlyMsg{d: d, at: now, size: size}
	e.early[d.Env.Session] = append(e.early[d.Env.Session], m)
	e.earlyQ = append(e.earlyQ, m)
	if len(e.earlyQ) > 2*e.earlyCount+64 {
		// Entries evicted from the middle stay until they reach the
		// front; rebuild so the queue stays proportional to what is held.
		live := make([]*earlyMsg, 0, e.earlyCount+1)
		for _, x := range e.earlyQ {
			if !x.dead {
				live = append(live, x)
			}
		}
		e.earlyQ = live
	}
	e.earlyCount++
	e.earlyBytes += size
	u.n++
	u.bytes += size
}

// expireEarly drops held envelopes older than earlyTTL (the queue is in
// arrival order, so they are at its front).
func (e *Engine) expireEarly(now time.Time) {
	i := 0
	for ; i < len(e.earlyQ); i++ {
		m := e.earlyQ[i]
		if !m.dead && now.Sub(m.at) < earlyTTL {
			break
		}
		e.dropEarly(m, true)
	}
	e.compactEarly(i)
}

// evictOldest drops the oldest live held envelope that match selects (nil:
// any).
func (e *Engine) evictOldest(match func(*earlyMsg) bool) {
	for _, m := range e.earlyQ {
		if !m.dead && (match == nil || match(m)) {
			e.dropEarly(m, true)
			break
		}
	}
	i := 0
	for i < len(e.earlyQ) && e.earlyQ[i].dead {
		i++
	}
	e.compactEarly(i)
}

func (e *Engine) compactEarly(i int) {
	if i == 0 {
		return
	}
	clear(e.earlyQ[:i])
	e.earlyQ = e.earlyQ[i:]
	if len(e.earlyQ) == 0 {
		e.earlyQ = nil
	}
}

// dropEarly releases m's accounting and removes it from its session's list.
func (e *Engine) dropEarly(m *earlyMsg, evicted bool) {
	if m.dead {
		return
	}
	m.dead = true
	defer func() { m.d = Delivery{} }() // a dead entry keeps no payload
	e.earlyCount--
	e.earlyBytes -= m.size
	if u := e.earlyBy[m.d.From]; u != nil {
		u.n--
		u.bytes -= m.size
		if u.n == 0 {
			delete(e.earlyBy, m.d.From)
		}
	}
	if evicted {
		e.stats.earlyEvicted.Add(1)
		id := m.d.Env.Session
		list := e.early[id]
		for i, x := range list {
			if x == m {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(e.early, id)
		} else {
			e.early[id] = list
		}
	}
}

func (e *Engine) unregister(id SessionID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.sessions, id)
	for _, m := range e.early[id] {
		e.dropEarly(m, false)
	}
	delete(e.early, id)
	e.finished[id] = struct{}{}
	e.finishedOrder = append(e.finishedOrder, id)
	if len(e.finishedOrder) > maxFinishedID {
		delete(e.finished, e.finishedOrder[0])
		e.finishedOrder = e.finishedOrder[1:]
	}
}

// abandon ends a session this node has not started and never will (or has
// finished): the ID is recorded as used here, and each of peers is told, as
// a running session's abort notice would (best effort), so that it stops
// at once; the notice waits in a peer's early buffer if the peer has not
// started the session yet.
func (e *Engine) abandon(id SessionID, wallet string, peers []pki.NodeID, cause error) {
	e.mu.Lock()
	_, running := e.sessions[id]
	_, done := e.finished[id]
	e.mu.Unlock()
	if running {
		return
	}
	if !done {
		e.unregister(id)
	}
	msg := []byte(cause.Error())
	for _, p := range peers {
		if p == e.cfg.Self {
			continue
		}
		env := &Envelope{Wallet: wallet, Session: id, Type: TypePeerAbort, From: e.cfg.Self, FromRole: RoleMain,
			To: p, ToRole: RoleMain, Payload: msg}
		ctx, cancel := context.WithTimeout(context.Background(), abortSendTimeout)
		_ = e.cfg.Transport.Send(ctx, p, env)
		cancel()
	}
}

// checkUnused refuses a session ID this engine already ran: a crashed or
// aborted session is never resumed under the same ID.
func (e *Engine) checkUnused(id SessionID) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.sessions[id]; ok {
		return fmt.Errorf("%w: %s", ErrSessionReused, id)
	}
	if _, ok := e.finished[id]; ok {
		return fmt.Errorf("%w: %s", ErrSessionReused, id)
	}
	return nil
}

// fail records an abort in the event log and, when the abort proves
// misbehaviour, in the failure budget.
func (e *Engine) fail(s *session, err error) {
	ae, ok := err.(*AbortError)
	if !ok {
		return
	}
	// The budget is charged before the events go out, so a listener that
	// persists it (the daemon) sees the new counts.
	var q []pki.NodeID
	if len(ae.Culprits) > 0 && ae.Provable() {
		q = e.cfg.Budget.Record(ae.Culprits)
	}
	e.emit(Event{Kind: EventAbort, Session: s.id, Wallet: s.wallet, Parties: ae.Culprits, Detail: ae.Error()})
	if len(q) > 0 {
		e.emit(Event{Kind: EventQuarantine, Session: s.id, Wallet: s.wallet, Parties: q,
			Detail: "failure budget exhausted; a human must clear the quarantine"})
	}
}

// abortSendTimeout bounds the best-effort abort notices to peers.
const abortSendTimeout = 2 * time.Second
