package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// MigrateReport describes what [MigrateLogStore] did.
type MigrateReport struct {
	From LogStore `json:"from"`
	To   LogStore `json:"to"`
	// FirstIndex..LastIndex is the log range copied (0..0: an empty log).
	FirstIndex uint64 `json:"first_index"`
	LastIndex  uint64 `json:"last_index"`
	// Backup is where the old store was moved (kept, never deleted).
	Backup string `json:"backup"`
	// Resumed is true when an interrupted migration was finished.
	Resumed bool `json:"resumed,omitempty"`
}

// raftStableKeys are the stable values hashicorp/raft v1.7 writes (raft.go:
// keyCurrentTerm, keyLastVoteTerm as uint64, keyLastVoteCand as bytes).
var (
	raftStableUint64 = []string{"CurrentTerm", "LastVoteTerm"}
	raftStableBytes  = []string{"LastVoteCand"}
)

// MigrateLogStore moves a stopped node's raft log and stable values (current
// term, vote) from the store its data dir holds to a store of kind to, so the
// node can be opened with `ledger.log_store: to`. Snapshots are not touched.
//
// The new store is built under a temporary name, every entry is read back
// and compared, then it is renamed into place; only then is the old store
// renamed to a backup (NAME.pre-migrate-TIMESTAMP), which is kept. A crash
// in between leaves both stores in place: [Open] refuses such a dir and
// running MigrateLogStore again finishes the job. A running node holds its
// store's lock; MigrateLogStore then fails after 2 s and changes nothing.
func MigrateLogStore(dir string, to LogStore) (MigrateReport, error) {
	rep := MigrateReport{To: to}
	if to != LogStoreWAL && to != LogStoreBoltDB {
		return rep, fmt.Errorf("ledger: migrate: target log_store %q: want %q or %q", to, LogStoreWAL, LogStoreBoltDB)
	}
	from := LogStoreBoltDB
	if to == LogStoreBoltDB {
		from = LogStoreWAL
	}
	rep.From = from
	haveFrom, err := exists(from.path(dir))
	if err != nil {
		return rep, err
	}
	haveTo, err := exists(to.path(dir))
	if err != nil {
		return rep, err
	}
	switch {
	case !haveFrom && haveTo:
		return rep, fmt.Errorf("ledger: migrate: %s already uses log_store %s", dir, to)
	case !haveFrom:
		return rep, fmt.Errorf("ledger: migrate: %s is not a ledger data dir: no log store (%s or %s)", dir, walDir, boltFile)
	case haveTo:
		// An earlier run renamed the complete new store into place and
		// stopped before moving the old one aside (Open refuses such a
		// dir, so no node has written to either since).
		rep.Resumed = true
		src, closeSrc, err := openLogStoreReadOnly(dir, from)
		if err != nil {
			return rep, fmt.Errorf("ledger: migrate: %w", err)
		}
		rep.FirstIndex, rep.LastIndex, err = logRange(src)
		_ = closeSrc()
		if err != nil {
			return rep, err
		}
		rep.Backup, err = moveAside(dir, from)
		return rep, err
	}

	src, closeSrc, err := openLogStoreReadOnly(dir, from)
	if err != nil {
		return rep, fmt.Errorf("ledger: migrate: %w", err)
	}
	srcOpen := true
	defer func() {
		if srcOpen {
			_ = closeSrc()
		}
	}()
	if rep.FirstIndex, rep.LastIndex, err = logRange(src); err != nil {
		return rep, err
	}

	tmp := to.path(dir) + ".migrating"
	if err := os.RemoveAll(tmp); err != nil {
		return rep, fmt.Errorf("ledger: migrate: %w", err)
	}
	dst, err := openLogStoreAt(tmp, to, 0, hclog.NewNullLogger())
	if err != nil {
		return rep, fmt.Errorf("ledger: migrate: %w", err)
	}
	if err := copyLogStore(dst, src, rep.FirstIndex, rep.LastIndex); err != nil {
		_ = dst.Close()
		_ = os.RemoveAll(tmp)
		return rep, err
	}
	if err := dst.Close(); err != nil {
		_ = os.RemoveAll(tmp)
		return rep, fmt.Errorf("ledger: migrate: close new store: %w", err)
	}
	if err := os.Rename(tmp, to.path(dir)); err != nil {
		return rep, fmt.Errorf("ledger: migrate: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return rep, err
	}
	srcOpen = false
	if err := closeSrc(); err != nil {
		return rep, fmt.Errorf("ledger: migrate: close old store: %w", err)
	}
	rep.Backup, err = moveAside(dir, from)
	return rep, err
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("ledger: %w", err)
}

func logRange(s raft.LogStore) (first, last uint64, err error) {
	defer unreadable(&err)
	if first, err = s.FirstIndex(); err != nil {
		return 0, 0, fmt.Errorf("ledger: migrate: read log: %w", err)
	}
	if last, err = s.LastIndex(); err != nil {
		return 0, 0, fmt.Errorf("ledger: migrate: read log: %w", err)
	}
	return first, last, nil
}

// copyLogStore copies the stable values and log entries first..last from src
// to the empty dst in batches (each batch one write), then reads every entry
// back from dst and compares it with src's.
func copyLogStore(dst raftStore, src readStore, first, last uint64) (err error) {
	defer unreadable(&err)
	for _, k := range raftStableUint64 {
		v, err := src.GetUint64([]byte(k))
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("ledger: migrate: read %s: %w", k, err)
		}
		if err == nil && v != 0 {
			if err := dst.SetUint64([]byte(k), v); err != nil {
				return fmt.Errorf("ledger: migrate: write %s: %w", k, err)
			}
		}
	}
	for _, k := range raftStableBytes {
		v, err := src.Get([]byte(k))
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("ledger: migrate: read %s: %w", k, err)
		}
		if err == nil && len(v) > 0 {
			if err := dst.Set([]byte(k), v); err != nil {
				return fmt.Errorf("ledger: migrate: write %s: %w", k, err)
			}
		}
	}
	if last == 0 {
		return nil
	}
	const batchBytes = 1 << 20
	var batch []*raft.Log
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := dst.StoreLogs(batch); err != nil {
			return fmt.Errorf("ledger: migrate: write entries %d..%d: %w", batch[0].Index, batch[len(batch)-1].Index, err)
		}
		batch, size = batch[:0], 0
		return nil
	}
	for i := first; i <= last; i++ {
		l := new(raft.Log)
		if err := src.GetLog(i, l); err != nil {
			return fmt.Errorf("ledger: migrate: read entry %d: %w", i, err)
		}
		batch = append(batch, l)
		if size += len(l.Data) + len(l.Extensions) + 64; size >= batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	for i := first; i <= last; i++ {
		var a, b raft.Log
		if err := src.GetLog(i, &a); err != nil {
			return fmt.Errorf("ledger: migrate: read entry %d: %w", i, err)
		}
		if err := dst.GetLog(i, &b); err != nil {
			return fmt.Errorf("ledger: migrate: verify entry %d: %w", i, err)
		}
		if a.Index != b.Index || a.Term != b.Term || a.Type != b.Type ||
			!bytes.Equal(a.Data, b.Data) || !bytes.Equal(a.Extensions, b.Extensions) || !a.AppendedAt.Equal(b.AppendedAt) {
			return fmt.Errorf("ledger: migrate: entry %d differs after the copy", i)
		}
	}
	return nil
}

// isNotFound matches raft-boltdb's missing-key error, as hashicorp/raft
// itself does (by its text).
func isNotFound(err error) bool { return err != nil && err.Error() == "not found" }

// moveAside renames the store of kind to a timestamped backup name that
// [DetectLogStore] ignores.
func moveAside(dir string, kind LogStore) (string, error) {
	backup := kind.path(dir) + ".pre-migrate-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(kind.path(dir), backup); err != nil {
		return "", fmt.Errorf("ledger: migrate: move the old store aside: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	return backup, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ledger: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ledger: sync %s: %w", filepath.Clean(dir), err)
	}
	return nil
}
