package tss

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/custody-dev/custody/pki"
)

// Sentinel errors a caller branches on. AbortError wraps one of them.
var (
	// ErrTimeout: the session's context ended before the protocol finished.
	ErrTimeout = errors.New("tss: session timed out")
	// ErrEquivocation: a party sent different messages for one slot, or
	// different broadcasts to different peers (echo mismatch).
	ErrEquivocation = errors.New("tss: equivocation")
	// ErrBadMessage: a message failed this package's checks before tss-lib.
	ErrBadMessage = errors.New("tss: bad message")
	// ErrProtocol: tss-lib rejected a message or failed a round.
	ErrProtocol = errors.New("tss: protocol failure")
	// ErrInconsistentResult: parties finished with different public data.
	ErrInconsistentResult = errors.New("tss: inconsistent result")
	// ErrQuarantined: a committee member is quarantined by the failure budget.
	ErrQuarantined = errors.New("tss: party quarantined")
	// ErrSessionReused: a session ID was already used by this engine.
	ErrSessionReused = errors.New("tss: session ID already used")
	// ErrShareRetired: the share was destroyed after a reshare.
	ErrShareRetired = errors.New("tss: share retired")
	// ErrBadParams: invalid committee, threshold or inputs.
	ErrBadParams = errors.New("tss: bad parameters")
)

// AbortError reports a failed session and the parties held responsible.
type AbortError struct {
	Session  SessionID
	Protocol string
	// Culprits are the nodes blamed for the abort; empty when none could be
	// named. For ErrTimeout they are the parties this node still waited
	// for (suspects, not proven: see Provable).
	Culprits []pki.NodeID
	Reason   string
	// Err is one of the sentinels above, possibly wrapping a *tss-lib Error.
	Err error
}

func (e *AbortError) Error() string {
	c := make([]string, len(e.Culprits))
	for i, p := range e.Culprits {
		c[i] = string(p)
	}
	return fmt.Sprintf("tss: %s session %s aborted (culprits [%s]): %s: %v",
		e.Protocol, e.Session.String()[:16], strings.Join(c, ","), e.Reason, e.Err)
}

func (e *AbortError) Unwrap() error { return e.Err }

// Provable reports whether the abort proves the culprits misbehaved, so
// that it is charged to their failure budget: equivocation, a message that
// failed our checks, a tss-lib failure naming culprits, or inconsistent
// results. A timeout is not provable: a party that never got a broadcast
// (a malicious sender skipped it) looks exactly like one that withholds,
// so the culprits of ErrTimeout only name who was missing and are never
// charged; ErrPeerAborted carries another node's claim and is not charged
// either.
func (e *AbortError) Provable() bool {
	switch {
	case errors.Is(e.Err, ErrTimeout), errors.Is(e.Err, ErrPeerAborted), errors.Is(e.Err, ErrWithdrawn):
		return false
	}
	return errors.Is(e.Err, ErrEquivocation) || errors.Is(e.Err, ErrBadMessage) ||
		errors.Is(e.Err, ErrProtocol) || errors.Is(e.Err, ErrInconsistentResult)
}

// Culprit reports whether p is among the culprits.
func (e *AbortError) Culprit(p pki.NodeID) bool {
	for _, c := range e.Culprits {
		if c == p {
			return true
		}
	}
	return false
}

func uniqueSorted(ps []pki.NodeID) []pki.NodeID {
	m := map[pki.NodeID]bool{}
	var out []pki.NodeID
	for _, p := range ps {
		if p != "" && !m[p] {
			m[p] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
