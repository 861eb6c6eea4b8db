package ledger

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	waltypes "github.com/hashicorp/raft-wal/types"
	"go.etcd.io/bbolt"
)

// LogStore names the store that holds a node's raft log and its stable
// values (current term, vote): the `ledger.log_store` setting.
type LogStore string

// The log stores. Both fsync before an append returns, so an acknowledged
// entry is on disk on a majority; they differ in how many fsyncs that takes.
const (
	// LogStoreWAL is hashicorp/raft-wal in DIR/wal: segment files appended
	// with one fsync per batch, a small bbolt file (wal-meta.db) for the
	// stable values and the segment list.
	LogStoreWAL LogStore = "wal"
	// LogStoreBoltDB is hashicorp/raft-boltdb in DIR/raft.db: a bbolt
	// B+tree, two fsyncs per batch (pages, then meta page).
	LogStoreBoltDB LogStore = "boltdb"
)

// DefaultLogStore is the store a new data dir gets when Config.LogStore is
// empty. See docs/ledger.md for the measurements behind the choice.
const DefaultLogStore = LogStoreWAL

// ErrLogStoreMismatch is returned by [Open] when the data dir was made with
// another log store than the configured one. Nothing is migrated silently:
// configure the store the dir holds, or run [MigrateLogStore] (`custody
// ledger migrate`) with the node stopped.
var ErrLogStoreMismatch = errors.New("ledger: data dir holds another log store")

// ParseLogStore reads a `ledger.log_store` value ("" is the default).
func ParseLogStore(s string) (LogStore, error) {
	switch LogStore(s) {
	case "":
		return DefaultLogStore, nil
	case LogStoreWAL, LogStoreBoltDB:
		return LogStore(s), nil
	}
	return "", fmt.Errorf("ledger: log_store %q: want %q or %q", s, LogStoreWAL, LogStoreBoltDB)
}

// Where each store lives inside a data dir.
const (
	boltFile = "raft.db"
	walDir   = "wal"
)

func (k LogStore) path(dir string) string {
	if k == LogStoreWAL {
		return filepath.Join(dir, walDir)
	}
	return filepath.Join(dir, boltFile)
}

// DetectLogStore reports which log store a data dir holds: "" when it holds
// none (a new node), an error when it holds both (an interrupted migration;
// rerun it).
func DetectLogStore(dir string) (LogStore, error) {
	var found []LogStore
	for _, k := range []LogStore{LogStoreWAL, LogStoreBoltDB} {
		_, err := os.Stat(k.path(dir))
		switch {
		case err == nil:
			found = append(found, k)
		case !errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("ledger: data dir: %w", err)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: %s holds both %s and %s (an interrupted `custody ledger migrate`? run it again to finish)",
		ErrLogStoreMismatch, dir, boltFile, walDir)
}

// checkDataDir refuses a data dir made with another store, and one that
// has snapshots but no log store at all: raft would start with term 0 and no
// vote on record and could vote twice in a term it already voted in.
func checkDataDir(dir string, want LogStore) error {
	have, err := DetectLogStore(dir)
	if err != nil {
		return err
	}
	if have != "" && have != want {
		return fmt.Errorf("%w: %s was made with log_store %s (%s), this node is configured with log_store %s; "+
			"set ledger.log_store: %s, or stop the node and run `custody ledger migrate --data-dir %s --to %s`",
			ErrLogStoreMismatch, dir, have, filepath.Base(have.path(dir)), want, have, dir, want)
	}
	if have == "" {
		metas, err := listSnapshots(dir)
		if err != nil {
			return err
		}
		if len(metas) > 0 {
			return fmt.Errorf("ledger: %s has snapshots but no log store (%s or %s): the raft term and vote are lost; "+
				"refusing to start (restore the log store, or wipe the whole dir and rejoin the node)", dir, walDir, boltFile)
		}
	}
	return nil
}

func listSnapshots(dir string) ([]*raft.SnapshotMeta, error) {
	if _, err := os.Stat(filepath.Join(dir, "snapshots")); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, hclog.NewNullLogger())
	if err != nil {
		return nil, fmt.Errorf("ledger: snapshots: %w", err)
	}
	metas, err := snaps.List()
	if err != nil {
		return nil, fmt.Errorf("ledger: snapshots: %w", err)
	}
	return metas, nil
}

// raftStore is what raft needs from a log store, plus Close. *wal.WAL also
// implements raft.MonotonicLogStore; it is handed to raft unwrapped so raft
// sees that.
type raftStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

var (
	_ raftStore              = (*wal.WAL)(nil)
	_ raft.MonotonicLogStore = (*wal.WAL)(nil)
	_ raftStore              = (*raftboltdb.BoltStore)(nil)
)

// openLogStore opens (creating if needed) the store of kind in dir, for a
// running node: fsync on.
func openLogStore(dir string, kind LogStore, segmentSize int, logger hclog.Logger) (raftStore, error) {
	return openLogStoreAt(kind.path(dir), kind, segmentSize, logger)
}

// openLogStoreAt opens the store of kind at path (a directory for the WAL,
// a file for bbolt).
func openLogStoreAt(path string, kind LogStore, segmentSize int, logger hclog.Logger) (raftStore, error) {
	switch kind {
	case LogStoreWAL:
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, fmt.Errorf("ledger: open log store: %w", err)
		}
		if segmentSize <= 0 {
			segmentSize = wal.DefaultSegmentSize
		}
		w, err := wal.Open(path, wal.WithLogger(logger.Named("wal")), wal.WithSegmentSize(segmentSize))
		if err != nil {
			return nil, fmt.Errorf("ledger: open log store %s: %w", path, err)
		}
		return w, nil
	case LogStoreBoltDB:
		// NoSync stays false: an acknowledged entry is on disk on a
		// majority. The timeout turns a second opener into an error
		// instead of a wait on bbolt's file lock.
		b, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: false,
			BoltOptions: &bbolt.Options{Timeout: 2 * time.Second}})
		if err != nil {
			return nil, fmt.Errorf("ledger: open log store %s: %w", path, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("ledger: log_store %q: want %q or %q", kind, LogStoreWAL, LogStoreBoltDB)
}

// readStore is a log store opened for reading: the log and the stable
// values.
type readStore interface {
	raft.LogStore
	raft.StableStore
}

// openLogStoreReadOnly opens a stopped node's store without writing to it:
// bbolt read-only (giving up after 2 s if a running node holds its lock),
// and for the WAL a segment filer that neither creates nor deletes files and
// a meta store that refuses commits. An empty WAL reads as an empty log.
func openLogStoreReadOnly(dir string, kind LogStore) (st readStore, closeFn func() error, err error) {
	switch kind {
	case LogStoreBoltDB:
		db, err := raftboltdb.New(raftboltdb.Options{
			Path:        kind.path(dir),
			BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second},
		})
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, nil, fmt.Errorf("ledger: open log %s: %w (is the node still running?)", kind.path(dir), err)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("ledger: open log %s: %w", kind.path(dir), err)
		}
		return db, db.Close, nil
	case LogStoreWAL:
		p := kind.path(dir)
		meta := &readOnlyMeta{}
		ps, err := meta.Load(p)
		if err != nil {
			return nil, nil, err
		}
		if len(ps.Segments) == 0 {
			return emptyWAL{meta}, meta.Close, nil
		}
		w, err := wal.Open(p, wal.WithMetaStore(meta), wal.WithLogger(hclog.NewNullLogger()),
			wal.WithSegmentFiler(readOnlyFiler{segment.NewFiler(p, walfs.New())}))
		if err != nil {
			_ = meta.Close()
			return nil, nil, fmt.Errorf("ledger: open log %s: %w", p, err)
		}
		return w, w.Close, nil
	}
	return nil, nil, fmt.Errorf("ledger: log_store %q: want %q or %q", kind, LogStoreWAL, LogStoreBoltDB)
}

var errReadOnly = errors.New("ledger: log store opened read-only")

// readOnlyMeta is the WAL's meta store (wal-meta.db) opened read-only.
type readOnlyMeta struct{ db *bbolt.DB }

var _ waltypes.MetaStore = (*readOnlyMeta)(nil)

func (m *readOnlyMeta) Load(dir string) (waltypes.PersistentState, error) {
	var ps waltypes.PersistentState
	if m.db == nil {
		path := filepath.Join(dir, metadb.FileName)
		// bbolt creates a missing file even read-only: check first.
		if _, err := os.Stat(path); err != nil {
			return ps, fmt.Errorf("ledger: log meta: %w", err)
		}
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
		if errors.Is(err, bbolt.ErrTimeout) {
			return ps, fmt.Errorf("ledger: open log meta %s: %w (is the node still running?)", path, err)
		}
		if err != nil {
			return ps, fmt.Errorf("ledger: open log meta %s: %w", path, err)
		}
		m.db = db
	}
	err := m.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(metadb.MetaBucket))
		if b == nil {
			return nil
		}
		raw := b.Get([]byte(metadb.MetaKey))
		if raw == nil {
			return nil
		}
		return json.Unmarshal(raw, &ps)
	})
	if err != nil {
		return ps, fmt.Errorf("ledger: log meta: %w", err)
	}
	return ps, nil
}

func (m *readOnlyMeta) CommitState(waltypes.PersistentState) error { return errReadOnly }
func (m *readOnlyMeta) SetStable(_, _ []byte) error                { return errReadOnly }

func (m *readOnlyMeta) GetStable(key []byte) ([]byte, error) {
	var out []byte
	err := m.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte(metadb.StableBucket)); b != nil {
			out = append([]byte(nil), b.Get(key)...)
		}
		return nil
	})
	return out, err
}

func (m *readOnlyMeta) Close() error {
	if m.db == nil {
		return nil
	}
	return m.db.Close()
}

// readOnlyFiler opens existing segments only: no new files, no deletions of
// files the meta store no longer lists (a running node cleans those up).
type readOnlyFiler struct{ *segment.Filer }

func (readOnlyFiler) Create(waltypes.SegmentInfo) (waltypes.SegmentWriter, error) {
	return nil, errReadOnly
}
func (readOnlyFiler) Delete(uint64, uint64) error { return nil }

// emptyWAL is a WAL whose meta store lists no segment (it never stored an
// entry), read-only: an empty log, and the stable values the meta store has.
type emptyWAL struct{ meta *readOnlyMeta }

func (e emptyWAL) Get(k []byte) ([]byte, error) { return e.meta.GetStable(k) }
func (e emptyWAL) GetUint64(k []byte) (uint64, error) {
	b, err := e.meta.GetStable(k)
	if err != nil || len(b) == 0 {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("ledger: stable value %q is not a uint64", k)
	}
	return binary.LittleEndian.Uint64(b), nil
}
func (emptyWAL) Set([]byte, []byte) error         { return errReadOnly }
func (emptyWAL) SetUint64([]byte, uint64) error   { return errReadOnly }
func (emptyWAL) FirstIndex() (uint64, error)      { return 0, nil }
func (emptyWAL) LastIndex() (uint64, error)       { return 0, nil }
func (emptyWAL) GetLog(uint64, *raft.Log) error   { return raft.ErrLogNotFound }
func (emptyWAL) StoreLog(*raft.Log) error         { return errReadOnly }
func (emptyWAL) StoreLogs([]*raft.Log) error      { return errReadOnly }
func (emptyWAL) DeleteRange(uint64, uint64) error { return errReadOnly }
