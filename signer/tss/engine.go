package tss

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Event is something the caller should log or audit: aborts, quarantines,
// retired shares. Engines call Config.Events synchronously.
type Event struct {
	Kind    string // "abort", "quarantine", "share-retired"
	Session SessionID
	Wallet  string
	Parties []PartyID
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
	Self PartyID
	// Transport carries envelopes; the engine is its only reader.
	Transport Transport
	// Budget counts failures per party; nil means NewBudget(3).
	Budget *Budget
	// Events receives audit events; nil discards them.
	Events func(Event)
}

// Stats counts what the engine did with received envelopes.
type Stats struct {
	Delivered, Malformed, Spoofed, Misrouted, UnknownSession, FinishedSession,
	NonMember, Duplicate, WrongWallet int64
}

type stats struct {
	delivered, malformed, spoofed, misrouted, unknown, finished,
	nonMember, duplicate, wrongWallet atomic.Int64
}

// Limits on messages held for sessions this node has not started yet.
const (
	maxEarly      = 4096
	maxFinishedID = 1 << 16
)

// Engine runs threshold protocol sessions for one node over one Transport.
// It is safe for concurrent use: any number of sessions may run at once.
type Engine struct {
	cfg   Config
	stats stats

	mu            sync.Mutex
	sessions      map[SessionID]*session
	finished      map[SessionID]struct{}
	finishedOrder []SessionID
	early         map[SessionID][]Delivery
	earlyCount    int

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
	e := &Engine{
		cfg:      cfg,
		sessions: map[SessionID]*session{},
		finished: map[SessionID]struct{}{},
		early:    map[SessionID][]Delivery{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go e.loop()
	return e, nil
}

// Self returns the node identity of the engine.
func (e *Engine) Self() PartyID { return e.cfg.Self }

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
	return Stats{
		Delivered: s.delivered.Load(), Malformed: s.malformed.Load(), Spoofed: s.spoofed.Load(),
		Misrouted: s.misrouted.Load(), UnknownSession: s.unknown.Load(), FinishedSession: s.finished.Load(),
		NonMember: s.nonMember.Load(), Duplicate: s.duplicate.Load(), WrongWallet: s.wrongWallet.Load(),
	}
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
		if e.earlyCount >= maxEarly {
			e.mu.Unlock()
			e.stats.unknown.Add(1)
			return
		}
		e.early[d.Env.Session] = append(e.early[d.Env.Session], d)
		e.earlyCount++
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
	early := e.early[s.id]
	delete(e.early, s.id)
	e.earlyCount -= len(early)
	for _, d := range early {
		s.deliver(d)
	}
	return nil
}

func (e *Engine) unregister(id SessionID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.sessions, id)
	if n := len(e.early[id]); n > 0 {
		e.earlyCount -= n
		delete(e.early, id)
	}
	e.finished[id] = struct{}{}
	e.finishedOrder = append(e.finishedOrder, id)
	if len(e.finishedOrder) > maxFinishedID {
		delete(e.finished, e.finishedOrder[0])
		e.finishedOrder = e.finishedOrder[1:]
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

// fail records an abort in the budget and the event log.
func (e *Engine) fail(s *session, err error) {
	ae, ok := err.(*AbortError)
	if !ok {
		return
	}
	e.emit(Event{Kind: EventAbort, Session: s.id, Wallet: s.wallet, Parties: ae.Culprits, Detail: ae.Error()})
	if len(ae.Culprits) == 0 {
		return
	}
	if q := e.cfg.Budget.Record(ae.Culprits); len(q) > 0 {
		e.emit(Event{Kind: EventQuarantine, Session: s.id, Wallet: s.wallet, Parties: q,
			Detail: "failure budget exhausted; a human must clear the quarantine"})
	}
}

// abortSendTimeout bounds the best-effort abort notices to peers.
const abortSendTimeout = 2 * time.Second
