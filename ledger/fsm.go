package ledger

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"
)

// Result of one Apply, returned to the proposer through raft's ApplyFuture.
// req may be shared with the state: read-only, copy before handing it out.
type applyResult struct {
	req      *Request
	existing bool
	err      error
}

// FSM is the ledger's raft state machine. Apply is deterministic: the only
// inputs are the state, the log entry and its index/term; policy evaluation
// and approval verification are the pure functions of packages policy and
// quorum, called with the command's time.
type FSM struct {
	log    *slog.Logger
	onHalt func(error)

	mu     sync.RWMutex
	st     *State
	halted error
	// moved is closed (and replaced) whenever st.Index advances, the state
	// is restored or the FSM halts: waiters in ReadAtLeast wake up on it.
	moved chan struct{}
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM over an empty state. onHalt (may be nil) is called
// once, from the apply goroutine, when the FSM halts.
func NewFSM(logger *slog.Logger, onHalt func(error)) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{log: logger, onHalt: onHalt, st: NewState(), moved: make(chan struct{})}
}

// notifyLocked wakes every ReadAtLeast waiter; the caller holds f.mu.
func (f *FSM) notifyLocked() {
	close(f.moved)
	f.moved = make(chan struct{})
}

// Index returns the state's own index: the raft index of the last entry that
// changed the state. Unlike raft's applied index, which raft advances when it
// hands entries to the FSM, it moves only once Apply has finished, and every
// node that applied the same log prefix reports the same value.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Index
}

// ReadAtLeast waits until the state's index reaches idx (see [FSM.Index]),
// then calls fn under the read lock. It returns ctx's error, wrapped, when
// ctx ends first, and the halt error when the FSM halted.
func (f *FSM) ReadAtLeast(ctx context.Context, idx uint64, fn func(*State) error) error {
	for {
		f.mu.RLock()
		if f.halted != nil {
			f.mu.RUnlock()
			return f.halted
		}
		if f.st.Index >= idx {
			defer f.mu.RUnlock()
			return fn(f.st)
		}
		at, moved := f.st.Index, f.moved
		f.mu.RUnlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: local state at index %d, read needs %d: %w", ErrNotCaughtUp, at, idx, ctx.Err())
		case <-moved:
		}
	}
}

// Halted returns the error that halted the FSM, or nil.
func (f *FSM) Halted() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.halted
}

// Read calls fn with the local state under the read lock. This is NOT a
// linearizable read (see Store.ReadLinearizable); it is for tests, offline
// tools and the node's own progress checks.
func (f *FSM) Read(fn func(*State) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return fn(f.st)
}

// Hash returns the SHA-256 of the canonical state.
func (f *FSM) Hash() ([32]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Hash()
}

// Apply applies one committed entry.
//
// An entry this build cannot decode (unknown version, unknown type, unknown
// field) halts the FSM: it logs, records the cause, applies nothing more and
// calls onHalt (the Store then refuses all work). Skipping the entry would let this
// node diverge silently from nodes that understood it; halting keeps the state
// at a prefix every node agrees on, and a restarted node halts again at the
// same index until it runs a build that knows the command.
func (f *FSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applyOneLocked(l)
}

// ApplyBatch applies the entries raft committed together, in order, under
// one lock, exactly as Apply would one by one (raft.BatchingFSM). Raft then
// answers the batch's proposers together, so they propose again together and
// the leader's next log write (one fsync) covers them all.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]any, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			// Configuration entries: raft records them itself; voters reach
			// the state through member.set commands.
			continue
		}
		out[i] = f.applyOneLocked(l)
	}
	return out
}

var _ raft.BatchingFSM = (*FSM)(nil)

func (f *FSM) applyOneLocked(l *raft.Log) any {
	if f.halted != nil {
		return &applyResult{err: f.halted}
	}
	res, fatal := f.applyLocked(l)
	if fatal != nil {
		f.halted = fmt.Errorf("%w at index %d: %v", ErrHalted, l.Index, fatal)
		f.log.Error("ledger: FSM halted; refusing to apply further entries", "index", l.Index, "err", fatal)
		f.notifyLocked()
		if f.onHalt != nil {
			go f.onHalt(f.halted)
		}
		return &applyResult{err: f.halted}
	}
	return res
}

func (f *FSM) applyLocked(l *raft.Log) (res *applyResult, fatal error) {
	defer func() {
		if r := recover(); r != nil {
			res, fatal = nil, fmt.Errorf("panic in apply: %v", r)
		}
	}()
	env, cmd, err := decodeEntry(l.Data)
	if err != nil {
		return nil, err
	}
	st := f.st
	now := env.Time.UTC()
	if now.Before(st.Clock) {
		now = st.Clock
	}
	t := newTxn(st, l.Index, l.Term, now, env.Actor)
	out, err := cmd.apply(t)
	if err != nil {
		// A refusal changes nothing, not even the clock or index: the
		// staged effect in t is dropped.
		return &applyResult{err: err}, nil
	}
	if out.changed {
		t.commit()
		st.Index = l.Index
		st.Clock = now
		st.appendAudit(l.Index, now, env.Actor, env.Type, out.subject, l.Data)
		f.notifyLocked()
	}
	// out.req may be the stored record itself (putRequest takes ownership):
	// the proposer copies it (Store.apply), off the apply path. Stored
	// records are never edited in place, so that copy needs no lock.
	return &applyResult{existing: out.existing, req: out.req}, nil
}

// applyOut is what an accepted command reports to the FSM.
type applyOut struct {
	// changed: the command staged a change (commit it, audit it, advance
	// the index); false for an idempotent repeat.
	changed  bool
	existing bool
	// subject names what changed, for the audit event.
	subject string
	// req is the request the command created or updated, if any.
	req *Request
}

func changed(subject string) (applyOut, error) { return applyOut{changed: true, subject: subject}, nil }

// Snapshot takes a view of the state under the lock (map copies that share
// every stored record, see [State.snapshotView]): Apply waits only for that,
// not for the encoding, which Persist does while Apply goes on. At 100,000
// requests encoding takes seconds; the view takes milliseconds.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.halted != nil {
		return nil, f.halted
	}
	return &fsmSnapshot{st: f.st.snapshotView()}, nil
}

// Restore replaces the whole state with the snapshot's; nothing of the prior
// state survives. A snapshot whose audit chain does not verify is refused.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("ledger: restore: %w", err)
	}
	st, err := DecodeState(b)
	if err != nil {
		return fmt.Errorf("ledger: restore: %w", err)
	}
	if err := VerifyChain(st.Audit); err != nil {
		return fmt.Errorf("ledger: restore: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	f.notifyLocked()
	return nil
}

type fsmSnapshot struct{ st *State }

// Persist writes the view's canonical encoding (the bytes [State.Hash]
// hashes).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.st.Encode()
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("ledger: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
