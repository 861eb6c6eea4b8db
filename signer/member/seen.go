package member

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Seen is a node's own record of when it first saw each governance change
// committed, by its own clock (SECURITY 29): cooling-off and unlock delays
// run from these times, not from the time the leader stamped. Records are
// fsynced before they are relied on, never rewritten, and survive restarts;
// a change this node never recorded is first seen when it is next read,
// which after a restart is no earlier than the restart, so delays only get
// longer. It is safe for concurrent use.
type Seen struct {
	mu   sync.Mutex
	f    *os.File
	at   map[string]time.Time
	fail error
}

// SeenFile is the record's file name in its directory.
const SeenFile = "seen.jsonl"

type seenRecord struct {
	ID string `json:"id"`
	At int64  `json:"at"` // Unix nanoseconds
}

// ErrSeenCorrupt is wrapped when the record holds a line that is neither a
// record nor a torn last line.
var ErrSeenCorrupt = errors.New("member: first-seen record corrupt")

// OpenSeen opens (or creates) the record in dir, locked against a second
// process. A torn last line (a crash during a write that was never
// acknowledged) is dropped; anything else unreadable is ErrSeenCorrupt.
func OpenSeen(dir string) (*Seen, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("member: first-seen dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, SeenFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("member: open first-seen record: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("member: first-seen record %s is in use by another process: %w", f.Name(), err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("member: read first-seen record: %w", err)
	}
	at, good, err := parseSeen(b)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrSeenCorrupt, f.Name(), err)
	}
	if good < len(b) {
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, fmt.Errorf("member: drop torn first-seen record: %w", err)
		}
	}
	if _, err := f.Seek(int64(good), io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("member: first-seen record: %w", err)
	}
	return &Seen{f: f, at: at}, nil
}

// parseSeen reads records; good is the length of the complete lines. Only
// the last line may be incomplete (no newline).
func parseSeen(b []byte) (at map[string]time.Time, good int, err error) {
	at = map[string]time.Time{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		end := good + len(raw) + 1
		if end > len(b) { // no newline: a torn last write
			return at, good, nil
		}
		var r seenRecord
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil || r.ID == "" || r.At <= 0 || dec.More() {
			return nil, 0, fmt.Errorf("line %d is not a record", line)
		}
		if _, dup := at[r.ID]; !dup {
			at[r.ID] = time.Unix(0, r.At).UTC()
		}
		good = end
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("line %d: %v", line+1, err)
	}
	return at, good, nil
}

// Lookup returns when this node first saw change id, if it recorded it.
func (s *Seen) Lookup(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[id]
	return t, ok
}

// Record durably adds the first-seen times of changes not yet recorded
// (earlier records win) and returns once they are fsynced. After a failed
// write the record refuses further use until reopened.
func (s *Seen) Record(times map[string]time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	var buf bytes.Buffer
	fresh := map[string]time.Time{}
	for id, t := range times {
		if _, ok := s.at[id]; ok || id == "" {
			continue
		}
		b, err := json.Marshal(seenRecord{ID: id, At: t.UnixNano()})
		if err != nil {
			return fmt.Errorf("member: first-seen record: %w", err)
		}
		buf.Write(append(b, '\n'))
		fresh[id] = t.UTC()
	}
	if len(fresh) == 0 {
		return nil
	}
	if _, err := s.f.Write(buf.Bytes()); err != nil {
		s.fail = fmt.Errorf("member: write first-seen record: %w", err)
		return s.fail
	}
	if err := s.f.Sync(); err != nil {
		s.fail = fmt.Errorf("member: fsync first-seen record: %w", err)
		return s.fail
	}
	for id, t := range fresh {
		s.at[id] = t
	}
	return nil
}

// Close releases the record.
func (s *Seen) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}
