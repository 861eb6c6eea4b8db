// Package tsstest holds test tools for the tss engine: a fault-injecting
// transport wrapper and the keygen-from-fixtures harness shared by the
// signer packages' tests (committee of engines, parallel runs). It is for
// tests only; nothing in production imports it, and it loads the committed
// fixtures, which preparams refuses outside test binaries.
package tsstest

import (
	"context"
	"sync"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// Kind is a fault a FaultTransport can inject on the sending side.
type Kind int

// Fault kinds.
const (
	Drop       Kind = iota // the envelope is not sent
	Delay                  // sent after Fault.Delay
	Duplicate              // sent twice
	Reorder                // held and sent after the next envelope to the same peer
	Tamper                 // last payload byte flipped
	Replay                 // before sending, every recorded envelope of another session to the same peer is re-sent unchanged
	Equivocate             // payload re-encoded with an extra protobuf field: tss-lib parses it the same, its hash differs
	Mutate                 // Fault.Mutate rewrites a copy of the envelope (forged protocol values)
)

// Fault selects envelopes and what to do with them.
type Fault struct {
	Kind  Kind
	Match func(to pki.NodeID, env *tss.Envelope) bool // nil matches every envelope
	Delay time.Duration
	// Mutate rewrites a copy of the envelope for the Mutate kind.
	Mutate func(env *tss.Envelope)
	// Times limits how many envelopes the fault affects; 0 means no limit.
	Times int
	hits  int
}

// FaultTransport wraps a transport and injects faults into what this node
// sends. It records every envelope it sends so tests can replay them.
type FaultTransport struct {
	inner tss.Transport

	mu       sync.Mutex
	faults   []*Fault
	held     map[pki.NodeID][]*tss.Envelope
	recorded []Sent
}

// Sent is one recorded outgoing envelope.
type Sent struct {
	To  pki.NodeID
	Env *tss.Envelope
}

var _ tss.Transport = (*FaultTransport)(nil)

// Wrap returns a FaultTransport around inner with the given faults.
func Wrap(inner tss.Transport, faults ...*Fault) *FaultTransport {
	return &FaultTransport{inner: inner, faults: faults, held: map[pki.NodeID][]*tss.Envelope{}}
}

// SetFaults replaces the active faults (nil: none) and forgets held envelopes.
func (f *FaultTransport) SetFaults(faults ...*Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = faults
	f.held = map[pki.NodeID][]*tss.Envelope{}
}

// Recorded returns the envelopes sent so far.
func (f *FaultTransport) Recorded() []Sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Sent(nil), f.recorded...)
}

// Receive passes through.
func (f *FaultTransport) Receive() <-chan tss.Delivery { return f.inner.Receive() }

func clone(env *tss.Envelope) *tss.Envelope {
	c := *env
	c.Payload = append([]byte(nil), env.Payload...)
	return &c
}

// Send applies the first matching fault to env, then sends.
func (f *FaultTransport) Send(ctx context.Context, to pki.NodeID, env *tss.Envelope) error {
	f.mu.Lock()
	var fault *Fault
	for _, x := range f.faults {
		if (x.Match == nil || x.Match(to, env)) && (x.Times == 0 || x.hits < x.Times) {
			x.hits++
			fault = x
			break
		}
	}
	f.recorded = append(f.recorded, Sent{to, clone(env)})
	held := f.held[to]
	delete(f.held, to)
	var replay []*tss.Envelope
	if fault != nil && fault.Kind == Replay {
		for _, r := range f.recorded {
			if r.To == to && r.Env.Session != env.Session {
				replay = append(replay, r.Env)
			}
		}
	}
	if fault != nil && fault.Kind == Reorder {
		f.held[to] = append(held, clone(env))
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()

	send := func(e *tss.Envelope) error { return f.inner.Send(ctx, to, e) }
	var err error
	switch {
	case fault == nil:
		err = send(env)
	case fault.Kind == Drop:
	case fault.Kind == Delay:
		e := clone(env)
		time.AfterFunc(fault.Delay, func() { _ = f.inner.Send(context.Background(), to, e) })
	case fault.Kind == Duplicate:
		if err = send(env); err == nil {
			err = send(env)
		}
	case fault.Kind == Tamper:
		e := clone(env)
		if len(e.Payload) > 0 {
			e.Payload[len(e.Payload)-1] ^= 0x01
		}
		err = send(e)
	case fault.Kind == Equivocate:
		e := clone(env)
		// field 15, varint 1: an unknown field of the outer protobuf Any,
		// ignored by the parser, so only an echo check can notice.
		e.Payload = append(e.Payload, 0x78, 0x01)
		err = send(e)
	case fault.Kind == Mutate:
		e := clone(env)
		if fault.Mutate != nil {
			fault.Mutate(e)
		}
		err = send(e)
	case fault.Kind == Replay:
		for _, r := range replay {
			_ = send(r)
		}
		err = send(env)
	}
	for _, h := range held {
		if e := send(h); err == nil {
			err = e
		}
	}
	return err
}

// MatchType matches envelopes of one message type, optionally to one peer
// ("" for any).
func MatchType(typ string, to pki.NodeID) func(pki.NodeID, *tss.Envelope) bool {
	return func(dst pki.NodeID, env *tss.Envelope) bool {
		return env.Type == typ && (to == "" || dst == to)
	}
}
