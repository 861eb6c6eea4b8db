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
// format (the bare state an older build wrote) is refused: it would be a
// state taken on its sender's word.
const snapshotFormat = "custody-ledger-snapshot/v2"

// snapshotFile is a snapshot: the state at the last certified checkpoint
// (absent before the first: the base is then the empty state), the
// checkpoint's certificate, and every command entry after it.
type snapshotFile struct {
	Format     string          `json:"format"`
	Checkpoint *Checkpoint     `json:"checkpoint,omitempty"`
	Base       []byte          `json:"base,omitempty"`
	Suffix     []snapshotEntry `json:"suffix"`
}

// snapshotEntry is one raft log entry of type command.
type snapshotEntry struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Data  []byte `json:"data"`
}

type fsmSnapshot struct {
	base   *State
	cp     *Checkpoint
	suffix []snapshotEntry
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
	sf := snapshotFile{Format: snapshotFormat, Checkpoint: s.cp, Suffix: s.suffix}
	if s.base != nil {
		b, err := s.base.Encode()
		if err != nil {
			return nil, err
		}
		sf.Base = b
	}
	return json.Marshal(sf)
}

func (s *fsmSnapshot) Release() {}

// rebuild turns snapshot bytes into a state and its checkpoint bookkeeping,
// trusting nothing in them: the checkpoint must be signed by a majority of
// nodes (the restoring node's own node set), the base must hash to it, and
// every entry after it is applied by the same validating Apply as a log
// entry; an entry that would halt this node fails the snapshot. When cur
// (the node's current state) has history, the result must extend it:
// a snapshot never rolls a node back or forks it.
//
// selfTrust verifies the checkpoint against the node set inside the base
// instead: only for offline reads of a node's own data dir, whose result
// is reported, never served.
func (f *FSM) rebuild(b []byte, nodes map[pki.NodeID]*Node, cur *State, selfTrust bool) (*State, *checkpoints, error) {
	var sf snapshotFile
	if err := decodeStrict(b, &sf); err != nil || sf.Format != snapshotFormat {
		if err == nil {
			err = fmt.Errorf("format %q", sf.Format)
		}
		return nil, nil, fmt.Errorf("%w: not a %s snapshot (a bare state from an older build is refused): %v", ErrCheckpoint, snapshotFormat, err)
	}
	st, cps := NewState(), newCheckpoints()
	prev := uint64(0)
	if cp := sf.Checkpoint; cp != nil {
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
		st = base
		cps.base, cps.baseCP = base.snapshotView(), cp
		p := &pendingCheckpoint{index: cp.Index, view: cps.base}
		p.once.Do(func() { p.hash = cp.StateHash })
		cps.pending[cp.Index] = p
		prev = cp.Index
	} else if len(sf.Base) > 0 {
		return nil, nil, fmt.Errorf("%w: a base state without a checkpoint", ErrCheckpoint)
	}
	for _, e := range sf.Suffix {
		if e.Index <= prev {
			return nil, nil, fmt.Errorf("%w: entry %d follows %d: entries out of order", ErrCheckpoint, e.Index, prev)
		}
		prev = e.Index
		if _, fatal := f.applyEntry(st, cps, &raft.Log{Index: e.Index, Term: e.Term, Type: raft.LogCommand, Data: e.Data}); fatal != nil {
			return nil, nil, fmt.Errorf("%w: entry %d after the checkpoint does not apply: %v", ErrCheckpoint, e.Index, fatal)
		}
	}
	if cp := sf.Checkpoint; cp != nil {
		certified := false
		for _, c := range st.Checkpoints {
			certified = certified || c.CheckpointHead == cp.CheckpointHead
		}
		if !certified {
			return nil, nil, fmt.Errorf("%w: the entries after checkpoint %d do not certify it", ErrCheckpoint, cp.Index)
		}
	}
	if err := f.sameGenesis(cur, st.GenesisHash); err != nil {
		return nil, nil, err
	}
	if err := VerifyChain(st.Audit); err != nil {
		return nil, nil, err
	}
	if cur != nil {
		if n := len(cur.Audit); n > 0 && (len(st.Audit) < n || st.Audit[n-1].Hash != cur.Audit[n-1].Hash) {
			return nil, nil, fmt.Errorf("%w: the snapshot does not extend this node's history (its audit event %d is %s): it would roll the node back or fork it",
				ErrCheckpoint, n, short(cur.Audit[n-1].Hash))
		}
	}
	return st, cps, nil
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
