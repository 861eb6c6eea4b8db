package ledger

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Exported for the ledger's external tests only.

// ApplyOutcome reads what FSM.Apply returned.
func ApplyOutcome(res any) (req *Request, existing bool, err error) {
	r := res.(*applyResult)
	return r.req.Clone(), r.existing, r.err
}

// NonceKey is the key of State.Nonces.
var NonceKey = nonceKey

// AppendAudit appends an audit event to s.
func (s *State) AppendAudit(index uint64, kind string, payload []byte) {
	s.appendAudit(index, s.Clock, "a", kind, "s", payload)
}

// ApplyRaw appends raw bytes to the log as the leader, bypassing Submit's
// typing (a future or hostile leader's entry).
func (s *Store) ApplyRaw(b []byte) (res any, err error) {
	f := s.raft.Apply(b, s.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Response(), nil
}

// SnapshotView exposes the snapshot's view of s.
func (s *State) SnapshotView() *State { return s.snapshotView() }

// NewPinnedFSM is an FSM pinning genesis g, as a node's Store builds it.
func NewPinnedFSM(g *Genesis) *FSM { return newFSM(nil, nil, g) }

// PendingHead is this FSM's own head at the pending checkpoint idx.
func (f *FSM) PendingHead(idx uint64) (CheckpointHead, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p := f.cps.pending
	if p == nil || p.index != idx {
		return CheckpointHead{}, false
	}
	h, err := p.head(f.st.Registry.ClusterID, f.st.GenesisHash)
	return h, err == nil
}

// Pending lists the pending checkpoint indices.
func (f *FSM) Pending() []uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []uint64
	if p := f.cps.pending; p != nil {
		out = append(out, p.index)
	}
	return out
}

// SnapshotFile is the decoded form of a snapshot, for tests that forge one.
type SnapshotFile = snapshotFile

// RestoreAt restores b as raft would a snapshot stored under (index, term).
func (f *FSM) RestoreAt(b []byte, index, term uint64) error {
	f.restoring = func() (uint64, uint64, bool) { return index, term, true }
	defer func() { f.restoring = nil }()
	return f.Restore(io.NopCloser(bytes.NewReader(b)))
}

// SnapshotFormat is the current snapshot format name.
const SnapshotFormat = snapshotFormat

// SettledHash waits until the store has no checkpoint waiting for
// signatures (its own signature of the last checkpoint is committed
// asynchronously, after the write that reached it) and returns its state
// hash: the state a restart reaches without signing anything more.
func (s *Store) SettledHash(t testing.TB) [32]byte {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		p := s.fsm.Pending()
		if len(p) == 0 {
			h, err := s.Hash()
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		select {
		case <-deadline:
			t.Fatal(fmt.Errorf("checkpoint %d still pending after a minute", p[0]))
		case <-tick.C:
		}
	}
}

// Barrier is the read index as it was before the read-index rounds: a raft
// barrier (a log entry committed in this term), then the FSM's index.
func (s *Store) Barrier(ctx context.Context) error {
	_, err := s.barrierIndex(ctx, s.raft.CurrentTerm())
	return err
}

// AddVoterRaw adds a raft voter through raft alone, as a compromised leader
// can (no node-set check).
func (s *Store) AddVoterRaw(id, addr string) error {
	return s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, s.cfg.ApplyTimeout).Error()
}
