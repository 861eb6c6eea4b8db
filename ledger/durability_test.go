package ledger_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
)

// TestTornTailRecovers kills a follower under load, tears the last write it
// made (the crash model: the process died while that write was reaching the
// disk, so it never answered for it), restarts it, and checks that no
// acknowledged entry is lost and nothing torn is applied: offline, the log
// replays through the same FSM without halting and ends before the torn
// write; online, the node converges to the cluster's hash with every
// acknowledged write.
//
// WAL: the tail segment is cut in the middle of the last record of its last
// batch, and in a second case the cut-off part is replaced by random bytes (a
// torn sector holds garbage, not zeros); the batch must be dropped. bbolt
// commits by writing a meta page last, alternating between two slots, so its
// torn last write is the slot the next commit writes (the older meta page)
// half overwritten; the last committed meta must still be used.
func TestTornTailRecovers(t *testing.T) {
	type tc struct {
		store   LogStore
		garbage bool
	}
	for _, c := range []tc{{LogStoreWAL, false}, {LogStoreWAL, true}, {LogStoreBoltDB, false}} {
		name := string(c.store)
		if c.garbage {
			name += "/garbage"
		}
		t.Run(name, func(t *testing.T) { testTornTail(t, c.store, c.garbage) })
	}
}

func testTornTail(t *testing.T, store LogStore, garbage bool) {
	c := newCluster(t, 2, withStore(store))
	seed(c)
	dir := t.TempDir()
	// Production-size WAL segments: the last write lands in the unsealed
	// tail segment (a sealed segment is never a torn tail: it is fsynced
	// before the meta store names its successor).
	child := startChild(t, c, "n3", dir, store, "LEDGER_HELPER_SEGMENT=0")
	c.OnLeader(func(l *Store) error { return l.Join(t.Context(), "n3", child.addr) })
	lw := startLoad(c, 4, "tt")
	ledgertest.Poll(t, "writes before the kill", func() error {
		if n := lw.count(); n < 100 {
			return fmt.Errorf("%d acked", n)
		}
		return nil
	})
	child.kill9()
	acked := lw.finish()

	_, before, err := ReadDataDir(dir)
	if err != nil {
		t.Fatalf("killed follower's data dir before the tear: %v", err)
	}
	what, dropsBatch := tearLastWrite(t, dir, store, garbage)
	st, after, err := ReadDataDir(dir)
	if err != nil {
		t.Fatalf("data dir with a torn tail (%s) does not replay: %v", what, err)
	}
	switch {
	case dropsBatch && after.LastIndex >= before.LastIndex:
		t.Fatalf("%s: log still ends at %d (was %d): the torn write was kept", what, after.LastIndex, before.LastIndex)
	case !dropsBatch && after.LastIndex != before.LastIndex:
		t.Fatalf("%s: log ends at %d, was %d: a torn uncommitted write changed the committed log", what, after.LastIndex, before.LastIndex)
	}
	if err := VerifyChain(st.Audit); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: log ended at %d, after the tear at %d", what, before.LastIndex, after.LastIndex)

	n3 := &ledgertest.Node{ID: "n3", Dir: dir}
	c.StartNode(n3, child.addr)
	c.Nodes = append(c.Nodes, n3)
	c.WaitConverged(c.Nodes...)
	requireAcked(t, c, idSet(acked))
}

// tearLastWrite damages the last write of a stopped node's log store, says
// what it did and whether that write held entries the log showed before
// (which must now be gone).
func tearLastWrite(t *testing.T, dir string, store LogStore, garbage bool) (string, bool) {
	t.Helper()
	if store == LogStoreBoltDB {
		return tearBoltMeta(t, filepath.Join(dir, "raft.db")), false
	}
	seg, err := walTailSegment(filepath.Join(dir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	frames, err := walFrames(seg)
	if err != nil {
		t.Fatal(err)
	}
	// The last commit frame, and the last entry record before it.
	commit := -1
	for i := len(frames) - 1; i >= 0 && commit < 0; i-- {
		if frames[i].typ == walFrameCommit {
			commit = i
		}
	}
	var last *walFrame
	for i := commit - 1; i >= 0 && last == nil; i-- {
		if frames[i].typ == walFrameEntry {
			last = &frames[i]
		}
	}
	if last == nil {
		t.Fatalf("%s holds no committed entry record", seg)
	}
	end := frames[commit].end
	cut := last.off + 8 + (last.end-last.off-8)/2
	if err := os.Truncate(seg, cut); err != nil {
		t.Fatal(err)
	}
	what := fmt.Sprintf("WAL segment %s cut at byte %d, inside its last record [%d, %d)", filepath.Base(seg), cut, last.off, last.end)
	if garbage {
		f, err := os.OpenFile(seg, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, end-cut)
		r := rand.NewChaCha8([32]byte{7})
		_, _ = r.Read(junk)
		if _, err := f.WriteAt(junk, cut); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		what += fmt.Sprintf(", then %d random bytes up to the old end of the write", len(junk))
	}
	return what, true
}

// The raft-wal v0.4.2 segment format (its README, "Segment Files"): a 32-byte
// file header, then frames aligned to 8 bytes, each an 8-byte header (type,
// 3 reserved bytes, uint32 length or, for a commit frame, CRC) and the
// payload padded to 8. A commit frame ends every fsynced write.
const (
	walFrameEntry  = 1
	walFrameIndex  = 2
	walFrameCommit = 3
)

type walFrame struct {
	typ      byte
	off, end int64
}

// walFrames lists a segment's frames up to the first zero or unreadable
// frame header.
func walFrames(path string) ([]walFrame, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []walFrame
	for off := int64(32); off+8 <= int64(len(b)); {
		typ := b[off]
		if typ < walFrameEntry || typ > walFrameCommit {
			break
		}
		n := int64(0)
		if typ != walFrameCommit {
			n = int64(binary.LittleEndian.Uint32(b[off+4:]))
		}
		end := off + 8 + (n+7)&^7
		out = append(out, walFrame{typ: typ, off: off, end: end})
		off = end
	}
	return out, nil
}

// walTailSegment is the newest segment file (`<base index>-<segment ID>.wal`,
// fixed width, so the largest name is the newest).
func walTailSegment(dir string) (string, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || len(names) == 0 {
		return "", fmt.Errorf("no WAL segment in %s: %v", dir, err)
	}
	slices.Sort(names)
	return names[len(names)-1], nil
}

// walLogEnd is where the tail segment's last fsynced write ends: the end of
// its last commit frame (0 for a tail nothing was written to yet: its first
// write starts with the file header).
func walLogEnd(dir string) (int64, error) {
	seg, err := walTailSegment(dir)
	if err != nil {
		return 0, err
	}
	frames, err := walFrames(seg)
	if err != nil {
		return 0, err
	}
	for i := len(frames) - 1; i >= 0; i-- {
		if frames[i].typ == walFrameCommit {
			return frames[i].end, nil
		}
	}
	return 0, nil
}

// tearBoltMeta overwrites the second half of the meta in the slot bbolt's
// next commit writes (meta pages 0 and 1 alternate; the next commit replaces
// the one with the smaller txid) with zeros, as if the machine died while
// writing that commit's meta page. Tearing the newer meta instead would be
// outside bbolt's crash model: a commit in progress may already have reused
// pages of the tree the older meta points to. The meta layout (bbolt v1.3.6
// db.go): a 16-byte page header, then magic, version, page size, flags
// (uint32 each), root bucket (16), freelist, pgid, txid, checksum (uint64
// each).
func tearBoltMeta(t *testing.T, path string) string {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 80)
	if _, err := f.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	pageSize := int64(binary.LittleEndian.Uint32(head[24:]))
	txid := func(page int64) uint64 {
		b := make([]byte, 80)
		if _, err := f.ReadAt(b, page*pageSize); err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint64(b[64:])
	}
	page := int64(0)
	if txid(1) < txid(0) {
		page = 1
	}
	what := fmt.Sprintf("bbolt meta page %d (txid %d, the slot of the next commit) half overwritten", page, txid(page))
	if _, err := f.WriteAt(make([]byte, 40), page*pageSize+40); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return what
}

// fileSizeLimitPastLog is the RLIMIT_FSIZE the full-disk test sets in the
// helper: for the WAL, 100 bytes past the end of the tail segment's last
// commit, so the next append writes 100 bytes of its first record and then
// fails with EFBIG (a half-written record on disk); for bbolt, one page, so
// every data page and the second meta page fail (bbolt writes data pages
// first, so the commit fails before any meta page changes).
func fileSizeLimitPastLog(dir string, store LogStore) (int64, error) {
	if store == LogStoreBoltDB {
		return int64(os.Getpagesize()), nil
	}
	end, err := walLogEnd(filepath.Join(dir, "wal"))
	if err != nil {
		return 0, err
	}
	return end + 100, nil
}

// TestFullDiskWriteNotAcknowledged runs a one-node ledger (its own write is
// the whole majority) in a helper process, caps its file size just past the
// log's end (RLIMIT_FSIZE with SIGXFSZ ignored: writes past the cap fail with
// EFBIG, a full disk as far as the store can tell, no mount needed), and
// checks that a write the store cannot persist is refused, not acknowledged;
// then, restarted without the cap, that the node has every acknowledged
// write, not the refused one, replays the half-written record as nothing,
// and appends and keeps new writes after it.
func TestFullDiskWriteNotAcknowledged(t *testing.T) {
	forEachStore(t, func(t *testing.T, store LogStore) {
		c := &ledgertest.Cluster{T: t, PKI: ledgertest.NewPKI(t), Tune: withStore(store)}
		dir := t.TempDir()
		child := startChild(t, c, "n1", dir, store)
		child.must("bootstrap")
		child.must("seed")
		for i := range 20 {
			child.must(fmt.Sprintf("create ok-%d %d", i, i))
		}
		child.must("limit")
		ans := child.do("create full-1 100")
		if !strings.HasPrefix(ans, "ERR") || !strings.Contains(ans, "file too large") {
			t.Fatalf("write past the file size limit: answer %q, want an error from the log store's write (EFBIG)", ans)
		}
		t.Logf("write past the limit refused: %s", ans)
		// The node may go on failing (raft steps down, and panics if it
		// cannot persist a new term); stop it like a crash.
		_ = child.cmd.Process.Signal(os.Kill)
		<-child.done
		acked := child.ackedIDs()
		if _, ok := acked["full-1"]; ok {
			t.Fatal("the write that could not be persisted was acknowledged")
		}
		var last uint64
		for _, idx := range acked {
			last = max(last, idx)
		}
		if store == LogStoreWAL {
			// The refused append really wrote part of a record.
			requireBytesPastLog(t, filepath.Join(dir, "wal"))
		}

		st, rep, err := ReadDataDir(dir)
		if err != nil {
			t.Fatalf("data dir after the failed write: %v", err)
		}
		if st.Requests["full-1"] != nil || rep.LastIndex != last {
			t.Fatalf("after the failed write the log ends at %d (last acknowledged %d); refused request present: %v",
				rep.LastIndex, last, st.Requests["full-1"] != nil)
		}

		n1 := &ledgertest.Node{ID: "n1", Dir: dir}
		c.StartNode(n1, child.addr)
		c.Nodes = []*ledgertest.Node{n1}
		after := createCmd("after-1", 200) // one command for every retry
		c.OnLeader(func(s *Store) error {
			_, _, err := s.CreateRequest(t.Context(), "backend", after)
			return err
		})
		acked["after-1"] = 0
		if err := n1.Store.Close(); err != nil {
			t.Fatal(err)
		}
		c.StartNode(n1, child.addr)
		// A linearizable read: the node leads and has applied its log.
		ledgertest.Poll(t, "a linearizable read after restart", func() error {
			return n1.Store.ReadLinearizable(t.Context(), func(*State) error { return nil })
		})
		requireAcked(t, c, acked)
		_ = n1.Store.ReadLocal(func(st *State) error {
			if st.Requests["full-1"] != nil {
				t.Error("the refused write appeared after restart")
			}
			return nil
		})
	})
}

// requireBytesPastLog checks that the WAL's tail segment holds non-zero
// bytes after its last commit frame: the start of the refused append.
func requireBytesPastLog(t *testing.T, walDir string) {
	t.Helper()
	end, err := walLogEnd(walDir)
	if err != nil {
		t.Fatal(err)
	}
	seg, _ := walTailSegment(walDir)
	f, err := os.Open(seg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 100)
	if _, err := f.ReadAt(b, end); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte{0}) == len(b) {
		t.Fatalf("no bytes of the refused append after the last commit (offset %d) of %s", end, seg)
	}
}
