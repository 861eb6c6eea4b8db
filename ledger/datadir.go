package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// DataDirReport describes what [ReadDataDir] read.
type DataDirReport struct {
	// LogStore is the store the data dir holds.
	LogStore LogStore `json:"log_store"`
	// SnapshotID and SnapshotIndex name the snapshot the state started from
	// ("" and 0 when there was none).
	SnapshotID    string `json:"snapshot_id,omitempty"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	// FirstIndex..LastIndex is the log range found; Replayed counts the
	// command entries applied after the snapshot.
	FirstIndex uint64 `json:"first_index"`
	LastIndex  uint64 `json:"last_index"`
	Replayed   int    `json:"replayed"`
}

// ReadDataDir rebuilds a stopped node's state offline from its data dir: the
// newest snapshot (its audit chain verified record by record before anything
// else, then its CRC) and every log entry after it, applied by the same FSM.
// The node must not be running (the log store's bbolt file is opened
// read-only and would wait on the writer's lock; it gives up after 2 s).
// Nothing in the dir is written.
//
// Entries after the snapshot may include a tail the cluster never committed;
// the result is this node's view, which is what an offline audit of a data
// dir can check.
func ReadDataDir(dir string) (*State, DataDirReport, error) {
	var rep DataDirReport
	fsm := NewFSM(nil, nil)
	kind, err := DetectLogStore(dir)
	if err != nil {
		return nil, rep, err
	}
	if kind == "" {
		return nil, rep, fmt.Errorf("ledger: %s is not a ledger data dir: no log store (%s or %s)", dir, walDir, boltFile)
	}
	rep.LogStore = kind
	metas, err := listSnapshots(dir)
	if err != nil {
		return nil, rep, err
	}
	if len(metas) > 0 {
		m := metas[0] // newest first
		if err := fsm.readSnapshotFile(filepath.Join(dir, "snapshots", m.ID)); err != nil {
			return nil, rep, err
		}
		rep.SnapshotID, rep.SnapshotIndex = m.ID, m.Index
	}

	db, closeDB, err := openLogStoreReadOnly(dir, kind)
	if err != nil {
		return nil, rep, err
	}
	defer closeDB()
	if err := replayLog(db, fsm, &rep); err != nil {
		return nil, rep, err
	}
	return fsm.st, rep, nil
}

// unreadable turns a panic while reading a log store into an error:
// raft-boltdb panics on a bbolt file without its buckets (a damaged or
// foreign raft.db), and offline tools report that instead of crashing.
func unreadable(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("ledger: log store unreadable (damaged or not a raft log?): %v", r)
	}
}

// replayLog applies the log after the snapshot.
func replayLog(db raft.LogStore, fsm *FSM, rep *DataDirReport) (err error) {
	defer unreadable(&err)
	if rep.FirstIndex, err = db.FirstIndex(); err != nil {
		return fmt.Errorf("ledger: log: %w", err)
	}
	if rep.LastIndex, err = db.LastIndex(); err != nil {
		return fmt.Errorf("ledger: log: %w", err)
	}
	start := max(rep.SnapshotIndex+1, rep.FirstIndex)
	if rep.LastIndex > 0 && start > rep.SnapshotIndex+1 {
		return fmt.Errorf("ledger: log starts at %d but the snapshot ends at %d: entries missing", rep.FirstIndex, rep.SnapshotIndex)
	}
	for i := start; i <= rep.LastIndex && rep.LastIndex > 0; i++ {
		var l raft.Log
		if err := db.GetLog(i, &l); err != nil {
			return fmt.Errorf("ledger: log entry %d: %w", i, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		fsm.Apply(&l)
		rep.Replayed++
		if err := fsm.Halted(); err != nil {
			return err
		}
	}
	return nil
}

// readSnapshotFile restores a raft file snapshot into fsm, checking the
// file's CRC first, then the snapshot as a node would (its checkpoint, the
// entries after it, the audit chain; see FSM.rebuild) but against the node
// set inside its own base: an offline read reports what the data dir
// holds and has no pinned genesis to go by.
func (f *FSM) readSnapshotFile(path string) error {
	b, err := os.ReadFile(filepath.Join(path, "state.bin"))
	if err != nil {
		return fmt.Errorf("ledger: snapshot: %w", err)
	}
	mb, err := os.ReadFile(filepath.Join(path, "meta.json"))
	if err != nil {
		return fmt.Errorf("ledger: snapshot meta: %w", err)
	}
	var meta struct{ CRC []byte }
	if err := json.Unmarshal(mb, &meta); err != nil {
		return fmt.Errorf("ledger: snapshot meta: %w", err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	_, _ = io.Copy(h, bytes.NewReader(b))
	if !bytes.Equal(h.Sum(nil), meta.CRC) {
		return errors.New("ledger: snapshot " + filepath.Base(path) + ": CRC mismatch (file edited or corrupted)")
	}
	st, cps, err := f.rebuild(b, nil, nil, true, nil)
	if err != nil {
		return fmt.Errorf("ledger: snapshot %s: %w", filepath.Base(path), err)
	}
	f.st, f.cps = st, cps
	return nil
}
