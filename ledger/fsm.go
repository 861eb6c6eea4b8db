package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// Result of one Apply, returned to the proposer through raft's ApplyFuture.
// req may be shared with the state: read-only, copy before handing it out.
type applyResult struct {
	req      *Request
	existing bool
	err      error
	// reached is the checkpoint this entry reached, if any.
	reached *pendingCheckpoint
	// claimed is the request this entry claimed, if any (to attest).
	claimed string
	// exported is the request this entry exported, if any (to attest).
	exported string
	// released is set when the entry freed an ETH nonce.
	released bool
	// nodesChanged is set when the entry changed the node set (open claims
	// were recounted and may need this node's attestation again).
	nodesChanged bool
}

// FSM is the ledger's raft state machine. Apply is deterministic: the only
// inputs are the state, the log entry and its index/term; policy evaluation
// and approval verification are the pure functions of packages policy and
// quorum, called with the command's time.
type FSM struct {
	log    *slog.Logger
	onHalt func(error)
	// pinned is the genesis this node's config pins (nil: none, tests and
	// offline tools).
	pinned *Genesis
	// onCheckpoint (may be nil) is told, from the apply goroutine and
	// without blocking, that this node reached a checkpoint or applied a
	// claim: there is something to sign.
	onCheckpoint func()
	// onRefused (may be nil) runs after a running node refused a snapshot;
	// onRestored after any snapshot was restored; onPersisted after this
	// node stored a snapshot of its own.
	onRefused   func()
	onRestored  func()
	onPersisted func(id string)
	// maxGap bounds how far the applied log may run past the certified
	// base for a snapshot to be taken (the log keeps that much after it);
	// 0: no bound (tests, offline tools).
	maxGap uint64
	// armed is the base of the snapshot raft is about to store; the
	// snapshot store records it under the base's index and term, not
	// raft's applied index (see keptSnapshots.Create).
	armed atomic.Pointer[armedSnapshot]
	// restoring, when set (by the Store's snapshot store), returns the
	// index and term raft stores the snapshot being restored under.
	restoring func() (index, term uint64, ok bool)
	// running is set once raft started: from then on a refused snapshot
	// halts the node (before, raft is trying its stored snapshots in turn).
	running atomic.Bool

	mu  sync.RWMutex
	st  *State
	cps *checkpoints
	// toAttest are requests whose claims or exports this node applied and
	// may still have to attest (the signer drops those done); rescan asks the signer
	// to look through every request once (at start, after a restore).
	toAttest map[string]bool
	rescan   bool
	halted   error
	// applied is the raft index of the last log entry raft handed to
	// Apply or ApplyBatch (configuration entries included) or of the
	// snapshot last restored, set once Apply finished: every entry raft
	// gives the FSM up to it is applied. Raft's own applied index moves
	// before the FSM ran; Store.ReadIndex waits on this one.
	applied uint64
	// nonceReleases counts the applied entries that freed an ETH nonce
	// (and restores), on this node only (not part of the state): the
	// leader's nonce allocator looks for freed nonces when it moved.
	nonceReleases atomic.Uint64
	// moved is closed (and replaced) whenever st.Index or applied
	// advances, the state is restored or the FSM halts: waiters in
	// ReadAtLeast and waitApplied wake up on it.
	moved chan struct{}
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM over an empty state with no pinned genesis (tests
// and offline tools; a node's Store builds its FSM from its Config).
// onHalt (may be nil) is called once, from the apply goroutine, when the
// FSM halts.
func NewFSM(logger *slog.Logger, onHalt func(error)) *FSM {
	return newFSM(logger, onHalt, nil)
}

func newFSM(logger *slog.Logger, onHalt func(error), pinned *Genesis) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{log: logger, onHalt: onHalt, pinned: pinned,
		st: NewState(), cps: newCheckpoints(), toAttest: map[string]bool{}, rescan: true, moved: make(chan struct{})}
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
	if err := f.rlockAt(ctx, idx, "local state at index", func() uint64 { return f.st.Index }); err != nil {
		return err
	}
	defer f.mu.RUnlock()
	return fn(f.st)
}

// rlockAt waits until at() (called under the read lock) reaches idx and
// returns nil holding the read lock; or, without it, the halt error, or
// ErrNotCaughtUp and ctx's error when ctx ends first (what names at in
// that error).
func (f *FSM) rlockAt(ctx context.Context, idx uint64, what string, at func() uint64) error {
	for {
		f.mu.RLock()
		if f.halted != nil {
			f.mu.RUnlock()
			return f.halted
		}
		now := at()
		if now >= idx {
			return nil
		}
		moved := f.moved
		f.mu.RUnlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s %d, read needs %d: %w", ErrNotCaughtUp, what, now, idx, ctx.Err())
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
	res := f.applyOneLocked(l)
	f.appliedLocked(l.Index)
	return res
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
	if len(logs) > 0 {
		f.appliedLocked(logs[len(logs)-1].Index)
	}
	return out
}

// appliedLocked records that raft's entries up to idx went through Apply
// and wakes the waiters; the caller holds f.mu.
func (f *FSM) appliedLocked(idx uint64) {
	if idx > f.applied {
		f.applied = idx
		f.notifyLocked()
	}
}

// waitApplied waits until every entry up to idx that raft hands the FSM
// has been applied (see FSM.applied), or ctx ends (ErrNotCaughtUp), or
// the FSM halted.
func (f *FSM) waitApplied(ctx context.Context, idx uint64) error {
	if err := f.rlockAt(ctx, idx, "applied up to index", func() uint64 { return f.applied }); err != nil {
		return err
	}
	f.mu.RUnlock()
	return nil
}

// appliedIndex returns FSM.applied.
func (f *FSM) appliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

var _ raft.BatchingFSM = (*FSM)(nil)

func (f *FSM) applyOneLocked(l *raft.Log) any {
	if f.halted != nil {
		return &applyResult{err: f.halted}
	}
	before := f.st.Index
	res, fatal := f.applyEntry(f.st, f.cps, l)
	if f.st.Index != before {
		f.notifyLocked()
	}
	if fatal != nil {
		f.haltLocked(fmt.Errorf("%w at index %d: %v", ErrHalted, l.Index, fatal))
		return &applyResult{err: f.halted}
	}
	if res.claimed != "" {
		f.toAttest[res.claimed] = true
	}
	if res.exported != "" {
		f.toAttest[res.exported] = true
	}
	if res.released {
		f.nonceReleases.Add(1)
	}
	if res.nodesChanged {
		f.rescan = true // claims un-latched by the recount (reattestClaims)
	}
	if (res.reached != nil || res.claimed != "" || res.exported != "" || res.nodesChanged) && f.onCheckpoint != nil {
		f.onCheckpoint()
	}
	return res
}

// haltLocked records why the FSM stops applying, logs it and tells onHalt.
func (f *FSM) haltLocked(err error) {
	f.halted = err
	f.log.Error("ledger: FSM halted; refusing to apply further entries", "err", err)
	f.notifyLocked()
	if f.onHalt != nil {
		go f.onHalt(err)
	}
}

// applyEntry applies one command entry to st, keeping cps (a checkpoint
// reached or certified updates it).
func (f *FSM) applyEntry(st *State, cps *checkpoints, l *raft.Log) (res *applyResult, fatal error) {
	defer func() {
		if r := recover(); r != nil {
			res, fatal = nil, fmt.Errorf("panic in apply: %v", r)
		}
	}()
	cps.lastSeen = max(cps.lastSeen, l.Index)
	env, cmd, err := decodeEntry(l.Data)
	if err != nil {
		return nil, err
	}
	if g, ok := cmd.(*Genesis); ok && f.pinned != nil {
		if err := samePinned(*g, *f.pinned); err != nil {
			return &applyResult{err: err}, nil
		}
	}
	now := env.Time.UTC()
	if now.Before(st.Clock) {
		now = st.Clock
	}
	t := newTxn(st, l.Index, l.Term, now, env.Actor)
	t.cps = cps
	out, err := cmd.apply(t)
	if err != nil {
		// A refusal changes nothing, not even the clock or index: the
		// staged effect in t is dropped.
		return &applyResult{err: err}, nil
	}
	res = &applyResult{existing: out.existing, req: out.req}
	if out.changed {
		prev := st.Index
		t.commit()
		for _, holder := range t.nonces {
			res.released = res.released || holder == ""
		}
		st.Index = l.Index
		st.Clock = now
		st.appendAudit(l.Index, now, env.Actor, env.Type, out.subject, l.Data)
		if governanceTypes[env.Type] {
			st.appendGovernance(env.Type, now, env.Payload)
		}
		if id := claimed(cmd); id != "" {
			res.req = stampClaim(st, id)
			res.claimed = id
		}
		if c, ok := cmd.(*ColdExport); ok {
			res.exported = c.RequestID
		}
		if _, ok := cmd.(*NodeChange); ok {
			res.nodesChanged = true
		}
		// A checkpoint signature never reaches a checkpoint itself: else
		// each certification (a state change) could start the next one.
		if _, sig := cmd.(*CheckpointSign); !sig && crossedCheckpoint(st, prev) {
			// Reaching a checkpoint supersedes the one still pending (see
			// checkpoints.pending).
			p := &pendingCheckpoint{index: st.Index, term: l.Term, view: st.snapshotView()}
			cps.pending = p
			res.reached = p
		}
	}
	if out.sig != nil {
		cps.record(out.sig, st)
	}
	// out.req may be the stored record itself (putRequest takes ownership):
	// the proposer copies it (Store.apply), off the apply path. Stored
	// records are never edited in place, so that copy needs no lock.
	return res, nil
}

// claimed names the request a claim or reclaim command claims ("" for any
// other command).
func claimed(cmd Command) string {
	switch c := cmd.(type) {
	case *ClaimSession:
		return c.RequestID
	case *ReclaimSession:
		return c.RequestID
	}
	return ""
}

// stampClaim records on the request's claim the audit head right after it
// (the history its nodes attest). The stored record is replaced, never
// edited in place (snapshot views share records).
func stampClaim(st *State, id string) *Request {
	r := st.Requests[id].Clone()
	r.Claim.AuditSeq, r.Claim.AuditHead = st.auditHead()
	st.Requests[id] = r
	return r
}

// samePinned refuses a genesis command other than the pinned one.
func samePinned(got, pinned Genesis) error {
	a, errA := json.Marshal(got)
	b, errB := json.Marshal(pinned)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		if got.Hash == pinned.Hash {
			return fmt.Errorf("%w: the log's genesis names the pinned hash %s but its content differs", ErrGenesisMismatch, short(pinned.Hash))
		}
		return fmt.Errorf("%w: the log's genesis (hash %s) is not the genesis this node's config pins (hash %s)", ErrGenesisMismatch, short(got.Hash), short(pinned.Hash))
	}
	return nil
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
	// sig is an accepted checkpoint signature (CheckpointSign).
	sig *cpSig
}

func changed(subject string) (applyOut, error) { return applyOut{changed: true, subject: subject}, nil }

// armedSnapshot is the base of an FSM snapshot being stored.
type armedSnapshot struct {
	index, term uint64
	// seen is the FSM's last applied index when it was taken: raft's
	// applied index, which it creates the snapshot under, is at least this.
	seen uint64
}

// Snapshot takes, under the lock, the base (a view of the state at the
// last certified checkpoint) and its certificate; Persist encodes it while
// Apply goes on. A snapshot is only ever a certified checkpoint, stored as
// (its index, its term): raft then resumes right after it, from the log,
// so no entry after the checkpoint is ever taken on a sender's word. With
// no certified checkpoint, or one too far behind for the log to still hold
// what follows it, there is no snapshot (ErrNoCertifiedBase) and raft keeps
// its log.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.halted != nil {
		return nil, f.halted
	}
	c := f.cps
	if c.base == nil || c.baseCP == nil {
		return nil, ErrNoCertifiedBase
	}
	if f.maxGap > 0 && c.lastSeen-c.baseCP.Index > f.maxGap {
		return nil, fmt.Errorf("%w: the last certified checkpoint (%d) is %d entries behind, more than the log keeps after a snapshot (%d)",
			ErrNoCertifiedBase, c.baseCP.Index, c.lastSeen-c.baseCP.Index, f.maxGap)
	}
	f.armed.Store(&armedSnapshot{index: c.baseCP.Index, term: c.baseCP.Term, seen: c.lastSeen})
	return &fsmSnapshot{base: c.base, cp: c.baseCP, persisted: f.onPersisted}, nil
}

// Restore replaces the whole state with the snapshot's, trusting nothing
// in it (see [FSM.rebuild]): a certified checkpoint verified against this
// node's own node set, then the entries after it re-applied. Once the node
// runs, a refused snapshot halts it with an alert rather than leaving it
// on a state it could not check; at start, raft falls back to an older
// stored snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("ledger: restore: %w", err)
	}
	// Restore runs on raft's FSM goroutine, the only writer of f.st.
	cur := f.st
	var at *raft.SnapshotMeta
	if f.restoring != nil {
		idx, term, ok := f.restoring()
		if !ok {
			return fmt.Errorf("ledger: restore: the snapshot store did not say which snapshot raft restores")
		}
		at = &raft.SnapshotMeta{Index: idx, Term: term}
	}
	st, cps, err := f.rebuild(b, f.trustedNodes(cur), cur, false, at)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("ledger: snapshot refused: %w", err)
		if f.running.Load() && f.halted == nil {
			f.haltLocked(fmt.Errorf("%w: %w (a peer sent a snapshot this node cannot verify; check the cluster for a compromised or misconfigured node before restarting)", ErrHalted, err))
			if f.onRefused != nil {
				f.onRefused()
			}
		}
		return err
	}
	f.st, f.cps = st, cps
	f.rescan = true
	f.nonceReleases.Add(1)
	if at != nil {
		// Raft goes on from the entry after the snapshot's index.
		f.applied = at.Index
	}
	f.notifyLocked()
	if f.onRestored != nil {
		f.onRestored()
	}
	if f.onCheckpoint != nil {
		f.onCheckpoint()
	}
	return nil
}
