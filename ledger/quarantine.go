package ledger

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"
)

// refusedDir is where a node moves stored snapshots it refused, beside its
// snapshots/ (kept for the incident review, never read by raft).
const refusedDir = "snapshots-refused"

// keptSnapshots is raft's file snapshot store, remembering which stored
// snapshots this node stands behind: those on disk when it started (it
// restores from them, verifying each), those it persisted itself, and
// those it restored successfully. raft stores a snapshot a peer installs
// before the FSM sees it; when the FSM refuses it, the file stays among
// the stored snapshots, and raft would try it first at the next start
// (newest first) or send it on as leader. A snapshot can also be genuine
// and still refused (an older one, which would roll the node back), so
// only this record tells the refused file from the node's own.
type keptSnapshots struct {
	*raft.FileSnapshotStore

	fsm *FSM

	mu      sync.Mutex
	kept    map[string]bool
	opening string             // the snapshot raft is restoring now
	meta    *raft.SnapshotMeta // and what it is stored as
}

func newKeptSnapshots(fs *raft.FileSnapshotStore, fsm *FSM) (*keptSnapshots, error) {
	metas, err := fs.List()
	if err != nil {
		return nil, fmt.Errorf("ledger: list snapshots: %w", err)
	}
	k := &keptSnapshots{FileSnapshotStore: fs, fsm: fsm, kept: map[string]bool{}}
	for _, m := range metas {
		k.kept[m.ID] = true
	}
	return k, nil
}

// Create stores this node's own snapshot under its certified base's index
// and term rather than raft's applied index (FSM.Snapshot armed them):
// restored, at start or on a peer, raft resumes right after the base and
// re-applies everything later from the log. A snapshot a peer installs is
// created under the index and term the peer sent, which Restore checks.
func (k *keptSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	if a := k.fsm.armed.Load(); a != nil && index >= a.seen && k.fsm.armed.CompareAndSwap(a, nil) {
		index, term = a.index, a.term
	}
	return k.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
}

// Open records which snapshot raft restores and under which index and
// term (it restores right after opening, on the FSM goroutine).
func (k *keptSnapshots) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := k.FileSnapshotStore.Open(id)
	k.mu.Lock()
	k.opening, k.meta = id, meta
	k.mu.Unlock()
	return meta, rc, err
}

// restoring is the FSM's restoring hook: the index and term of the
// snapshot raft opened last.
func (k *keptSnapshots) restoring() (uint64, uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.meta == nil {
		return 0, 0, false
	}
	return k.meta.Index, k.meta.Term, true
}

func (k *keptSnapshots) keep(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kept[id] = true
}

func (k *keptSnapshots) restored() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.opening != "" {
		k.kept[k.opening] = true
	}
}

// unkept lists the stored snapshots this node does not stand behind.
func (k *keptSnapshots) unkept() ([]string, error) {
	metas, err := k.List()
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, m := range metas {
		if !k.kept[m.ID] {
			out = append(out, m.ID)
		}
	}
	return out, nil
}

// quarantineSnapshots runs after this running node refused a snapshot a
// peer sent: every stored snapshot it does not stand behind (see
// keptSnapshots) moves to snapshots-refused/, so a restart meets only the
// node's own and verified snapshots.
func (s *Store) quarantineSnapshots() {
	ids, err := s.snaps.unkept()
	if err != nil {
		s.log.Error("ledger: cannot list snapshots to set the refused one aside; remove it before restarting", "err", err)
		return
	}
	dst := filepath.Join(s.cfg.Dir, refusedDir)
	for _, id := range ids {
		err := os.MkdirAll(dst, 0o700)
		if err == nil {
			err = os.Rename(filepath.Join(s.cfg.Dir, "snapshots", id), filepath.Join(dst, id))
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("ledger: cannot set a refused snapshot aside; remove it before restarting", "snapshot", id, "err", err)
			continue
		}
		s.log.Error("ledger: refused snapshot set aside", "snapshot", id, "dir", dst)
	}
}
