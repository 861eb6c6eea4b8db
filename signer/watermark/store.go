package watermark

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// File names inside a store directory.
const (
	LogFile  = "watermark.log"
	LockFile = "LOCK"
)

// logWriter is the part of *os.File the store writes through; tests swap it
// to inject write and fsync failures.
type logWriter interface {
	io.Writer
	Sync() error
	Close() error
}

// Store is one node's watermark. It is safe for concurrent use.
type Store struct {
	path   string
	logger *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	f        logWriter
	lock     *os.File
	err      error // ErrClosed or ErrFailed once set
	requests map[string]*Record
	owners   map[Key]string // one-time resource -> request ID
	recovery Recovery
}

// Recovery describes what Open found in the log.
type Recovery struct {
	// Records is the number of complete records replayed.
	Records int
	// TruncatedBytes is the size of the torn tail that was cut off.
	TruncatedBytes int64
}

// Option configures Open.
type Option func(*Store)

// WithLogger sets where Open reports a truncated tail (default slog.Default).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.logger = l } }

// WithClock sets the clock for the informational timestamps in records.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// Open opens (creating, mode 0700) the store in dir and replays its log. It
// holds an exclusive lock on dir until Close: a second Open of the same dir,
// from this or another process, fails with ErrLocked. A torn final record is
// truncated and logged; any other damage fails with a *CorruptError and
// leaves the file untouched.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{
		path:     filepath.Join(dir, LogFile),
		logger:   slog.Default(),
		now:      time.Now,
		requests: make(map[string]*Record),
		owners:   make(map[Key]string),
	}
	for _, o := range opts {
		o(s)
	}
	created, err := mkdir(dir)
	if err != nil {
		return nil, err
	}
	s.lock, err = lockDir(filepath.Join(dir, LockFile))
	if err != nil {
		return nil, err
	}
	if created {
		// The lock file is the first entry of a new directory; make the
		// directory itself durable in its parent.
		if err := syncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
			s.lock.Close()
			return nil, err
		}
	}
	if err := s.load(); err != nil {
		s.lock.Close()
		return nil, err
	}
	return s, nil
}

func mkdir(dir string) (created bool, err error) {
	if _, err := os.Stat(dir); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("watermark: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("watermark: %w", err)
	}
	return true, nil
}

// load replays the log, repairs a torn tail and opens the file for appends.
func (s *Store) load() error {
	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("watermark: %w", err)
	}
	res, cerr := scanLog(data)
	if cerr != nil {
		cerr.Path = s.path
		return cerr
	}
	for i, r := range res.records {
		if err := s.apply(r); err != nil {
			return &CorruptError{Path: s.path, Offset: res.offsets[i], Reason: fmt.Sprintf("record cannot follow the earlier ones: %v", err)}
		}
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("watermark: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		return fmt.Errorf("watermark: %w", err)
	}
	if res.torn != "" {
		s.logger.Warn("watermark: truncating torn tail of log (crash during a write; that reservation was never acknowledged)",
			"path", s.path, "offset", res.good, "bytes", int64(len(data))-res.good, "reason", res.torn)
		if err := f.Truncate(res.good); err != nil {
			return fail(err)
		}
		s.recovery.TruncatedBytes = int64(len(data)) - res.good
	}
	if res.good < int64(len(fileMagic)) {
		if _, err := f.WriteAt([]byte(fileMagic), 0); err != nil {
			return fail(err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if res.good < int64(len(fileMagic)) {
		// A new (or never completed) file: make its name durable too.
		if err := syncDir(filepath.Dir(s.path)); err != nil {
			f.Close()
			return err
		}
	}
	s.f = f
	s.recovery.Records = len(res.records)
	return nil
}

// check returns the existing record when in is an exact retry, a
// *ConflictError when it clashes, and (nil, nil) when it is new. in must be
// normalised. Caller holds mu (or is single-threaded in load).
func (s *Store) check(in Intent) (*Record, error) {
	if prev, ok := s.requests[in.RequestID]; ok {
		if prev.sameMessage(in) {
			return prev, nil
		}
		return nil, &ConflictError{Key: Key{Kind: KindRequest, ID: in.RequestID}, RequestID: in.RequestID, Previous: cloneRecord(prev)}
	}
	for _, k := range in.Keys {
		if owner, ok := s.owners[k]; ok {
			return nil, &ConflictError{Key: k, RequestID: in.RequestID, Previous: cloneRecord(s.requests[owner])}
		}
	}
	return nil, nil
}

// apply adds a decoded record to the in-memory state; it refuses anything
// the live API would have refused.
func (s *Store) apply(r record) error {
	switch r.typ {
	case recReserve:
		prev, err := s.check(r.intent)
		if err != nil {
			return err
		}
		if prev != nil {
			return errors.New("duplicate reservation")
		}
		s.insert(r.intent, r.at)
	case recComplete:
		prev, ok := s.requests[r.intent.RequestID]
		if !ok || prev.Digest != r.intent.Digest || prev.PayloadHash != r.intent.PayloadHash {
			return errors.New("completion of an unknown reservation")
		}
		prev.Signed, prev.SignatureHash, prev.SignedAt = true, r.sigHash, r.at
	}
	return nil
}

func (s *Store) insert(in Intent, at time.Time) *Record {
	rec := &Record{Intent: in, ReservedAt: at}
	s.requests[in.RequestID] = rec
	for _, k := range in.Keys {
		s.owners[k] = in.RequestID
	}
	return rec
}

// append writes one framed record and fsyncs it. Any failure poisons the
// store: a partial record may be on disk, and appending after it would turn
// a repairable torn tail into corruption in the middle.
func (s *Store) append(r record) error {
	buf := frame(encodeBody(r))
	if _, err := s.f.Write(buf); err != nil {
		s.err = fmt.Errorf("%w: write: %v", ErrFailed, err)
		return s.err
	}
	if err := s.f.Sync(); err != nil {
		s.err = fmt.Errorf("%w: fsync: %v", ErrFailed, err)
		return s.err
	}
	return nil
}

// Reserve records the intent to sign, durably, before it returns. The same
// intent again returns its record with Ticket.Retry set and writes nothing.
// An intent whose request ID or any key is already reserved for a different
// message fails with a *ConflictError and records nothing.
func (s *Store) Reserve(in Intent) (Ticket, error) {
	in, err := in.normalize()
	if err != nil {
		return Ticket{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return Ticket{}, s.err
	}
	prev, err := s.check(in)
	if err != nil {
		return Ticket{}, err
	}
	if prev != nil {
		return Ticket{Record: cloneRecord(prev), Retry: true}, nil
	}
	at := s.now().UTC()
	if err := s.append(record{typ: recReserve, at: at, intent: in}); err != nil {
		return Ticket{}, err
	}
	return Ticket{Record: cloneRecord(s.insert(in, at))}, nil
}

// Complete records, durably, that the ticket's message was signed;
// sigHash identifies the signature (its SHA-256, say). Completing again
// records the newer signature hash (a retry signs in a new session, so the
// signature differs); the same hash again writes nothing.
func (s *Store) Complete(t Ticket, sigHash [32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	prev, ok := s.requests[t.RequestID]
	if !ok || prev.Digest != t.Digest || prev.PayloadHash != t.PayloadHash {
		return fmt.Errorf("%w: request %q", ErrUnknownTicket, t.RequestID)
	}
	if prev.Signed && prev.SignatureHash == sigHash {
		return nil
	}
	at := s.now().UTC()
	r := record{typ: recComplete, at: at, sigHash: sigHash,
		intent: Intent{RequestID: prev.RequestID, Digest: prev.Digest, PayloadHash: prev.PayloadHash}}
	if err := s.append(r); err != nil {
		return err
	}
	prev.Signed, prev.SignatureHash, prev.SignedAt = true, sigHash, at
	return nil
}

// Lookup returns the record of a request ID.
func (s *Store) Lookup(requestID string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[requestID]
	if !ok {
		return Record{}, false
	}
	return cloneRecord(r), true
}

// Owner returns the request ID that reserved k.
func (s *Store) Owner(k Key) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.owners[k]
	return id, ok
}

// Recovery reports what Open found in the log.
func (s *Store) Recovery() Recovery { return s.recovery }

// Close releases the file and the directory lock. Further calls fail with
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(s.err, ErrClosed) {
		return nil
	}
	s.err = ErrClosed
	err := s.f.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("watermark: close: %w", err)
	}
	return nil
}

func cloneRecord(r *Record) Record {
	c := *r
	c.Keys = append([]Key(nil), r.Keys...)
	return c
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("watermark: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("watermark: fsync %s: %w", dir, err)
	}
	return nil
}
