package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/pki"
)

// snapshotFormat names the snapshot encoding. A snapshot of any other
// format (the bare state an older build wrote, or v2's entries after the
// checkpoint, which were taken on the sender's word about which entries
// follow) is refused.
const snapshotFormat = "custody-ledger-snapshot/v3"

// snapshotFile is a snapshot: the state at a certified checkpoint and the
// checkpoint's certificate. Nothing after the checkpoint travels in it:
// raft stores and installs it as (checkpoint index, term) and the node
// takes every later entry from the log.
type snapshotFile struct {
	Format     string      `json:"format"`
	Checkpoint *Checkpoint `json:"checkpoint"`
	Base       []byte      `json:"base"`
}

type fsmSnapshot struct {
	base *State
	cp   *Checkpoint
	// persisted (may be nil) is told the ID of the stored snapshot.
	persisted func(id string)
}

// Persist writes the snapshot file; the base state is encoded here, off the
// apply path (the base is a view no later command edits).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.encode()
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("ledger: persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.persisted != nil {
		s.persisted(sink.ID())
	}
	return nil
}

func (s *fsmSnapshot) encode() ([]byte, error) {
	b, err := s.base.Encode()
	if err != nil {
		return nil, err
	}
	return json.Marshal(snapshotFile{Format: snapshotFormat, Checkpoint: s.cp, Base: b})
}

func (s *fsmSnapshot) Release() {}

// rebuild turns snapshot bytes into a state and its checkpoint bookkeeping,
// trusting nothing in them: the checkpoint must be certified by a
// checkpoint quorum of nodes (the restoring node's own node set), the base
// must hash to it and carry its audit head, and (when raft says, through
// at) the snapshot must be stored exactly under the checkpoint's index and
// term, so raft resumes right after it and takes every later entry from
// the log. When cur (the node's current state) has history, the result
// must extend it: a snapshot never rolls a node back or forks it.
//
// selfTrust verifies the checkpoint against the node set inside the base
// instead: only for offline reads of a node's own data dir, whose result
// is reported, never served.
func (f *FSM) rebuild(b []byte, nodes map[pki.NodeID]*Node, cur *State, selfTrust bool, at *raft.SnapshotMeta) (*State, *checkpoints, error) {
	var sf snapshotFile
	if err := decodeStrict(b, &sf); err != nil || sf.Format != snapshotFormat || sf.Checkpoint == nil {
		if err == nil {
			err = fmt.Errorf("format %q, checkpoint %v", sf.Format, sf.Checkpoint != nil)
		}
		return nil, nil, fmt.Errorf("%w: not a %s snapshot of a certified checkpoint: %v", ErrCheckpoint, snapshotFormat, err)
	}
	cp := sf.Checkpoint
	base, err := DecodeState(sf.Base)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: checkpoint %d base: %v", ErrCheckpoint, cp.Index, err)
	}
	if selfTrust {
		nodes = base.Nodes
	}
	if err := VerifyCheckpoint(*cp, nodes); err != nil {
		return nil, nil, err
	}
	if at != nil && (at.Index != cp.Index || at.Term != cp.Term) {
		return nil, nil, fmt.Errorf("%w: stored as index %d term %d, its checkpoint is index %d term %d (raft would skip the entries in between)",
			ErrCheckpoint, at.Index, at.Term, cp.Index, cp.Term)
	}
	if sum := sha256.Sum256(sf.Base); hex.EncodeToString(sum[:]) != cp.StateHash {
		return nil, nil, fmt.Errorf("%w: the base state does not hash to checkpoint %d's signed hash", ErrCheckpoint, cp.Index)
	}
	if err := VerifyChain(base.Audit); err != nil {
		return nil, nil, err
	}
	seq, head := base.auditHead()
	if base.Index != cp.Index || seq != cp.AuditSeq || head != cp.AuditHead ||
		base.Registry.ClusterID != cp.ClusterID || base.GenesisHash != cp.GenesisHash {
		return nil, nil, fmt.Errorf("%w: the base state is not the one checkpoint %d names", ErrCheckpoint, cp.Index)
	}
	if err := f.sameGenesis(cur, base.GenesisHash); err != nil {
		return nil, nil, err
	}
	if cur != nil {
		if n := len(cur.Audit); n > 0 && (len(base.Audit) < n || base.Audit[n-1].Hash != cur.Audit[n-1].Hash) {
			return nil, nil, fmt.Errorf("%w: the snapshot does not extend this node's history (its audit event %d is %s): it would roll the node back or fork it",
				ErrCheckpoint, n, short(cur.Audit[n-1].Hash))
		}
	}
	cps := newCheckpoints()
	cps.base, cps.baseCP, cps.lastSeen = base.snapshotView(), cp, cp.Index
	// The signatures certifying the base come after it in the log: they
	// must find it pending, as on a node that applied the whole log.
	p := &pendingCheckpoint{index: cp.Index, term: cp.Term, view: cps.base}
	p.once.Do(func() { p.hash = cp.StateHash })
	cps.pending = p
	return base, cps, nil
}

// sameGenesis refuses a state of another genesis than the pinned one or
// the one cur already has ("" passes: an uninitialised state).
func (f *FSM) sameGenesis(cur *State, h string) error {
	if h == "" {
		return nil
	}
	if f.pinned != nil && h != f.pinned.Hash {
		return fmt.Errorf("%w: state of genesis %s, this node's config pins %s", ErrGenesisMismatch, short(h), short(f.pinned.Hash))
	}
	if cur != nil && cur.GenesisHash != "" && cur.GenesisHash != h {
		return fmt.Errorf("%w: state of genesis %s, this node's ledger has %s", ErrGenesisMismatch, short(h), short(cur.GenesisHash))
	}
	return nil
}

// trustedNodes is the node set this node verifies checkpoints against:
// its own state's once it has a genesis, else its pinned genesis's.
func (f *FSM) trustedNodes(cur *State) map[pki.NodeID]*Node {
	if cur != nil && cur.GenesisHash != "" {
		return cur.Nodes
	}
	if f.pinned == nil {
		return nil
	}
	m := make(map[pki.NodeID]*Node, len(f.pinned.Nodes))
	for _, n := range f.pinned.Nodes {
		m[n.ID] = &n
	}
	return m
}
