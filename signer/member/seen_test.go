package member

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSeenSurvivesRestart: first-seen times are fsynced and read back after
// a restart; earlier records win; a torn last line is dropped; a corrupt
// line in the middle refuses to open; a second process cannot open it.
func TestSeenSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSeen(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 123, time.UTC)
	if err := s.Record(map[string]time.Time{"unlock-1": t0, "allow-1": t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(map[string]time.Time{"unlock-1": t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Lookup("unlock-1"); !ok || !got.Equal(t0) {
		t.Fatalf("unlock-1 = %v, %v; the first record must win", got, ok)
	}
	if _, err := OpenSeen(dir); err == nil {
		t.Fatal("a second open of a record in use succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A crash in the middle of a write leaves a torn last line.
	path := filepath.Join(dir, SeenFile)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"id":"torn","at":17`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err = OpenSeen(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Lookup("unlock-1"); !ok || !got.Equal(t0) {
		t.Fatalf("after restart unlock-1 = %v, %v", got, ok)
	}
	if _, ok := s.Lookup("torn"); ok {
		t.Fatal("a torn record was read")
	}
	if err := s.Record(map[string]time.Time{"after": t0}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenSeen(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup("after"); !ok {
		t.Fatal("a record written after dropping the torn tail was lost")
	}
	s.Close()

	// Corruption before the last line is not a torn write: refuse.
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append([]byte("garbage\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSeen(dir); !errors.Is(err, ErrSeenCorrupt) {
		t.Fatalf("corrupt record: %v, want ErrSeenCorrupt", err)
	}
}

// FuzzParseSeen: the record file is read at every start; whatever it holds,
// parsing never panics, and what it accepts re-parses to the same records.
func FuzzParseSeen(f *testing.F) {
	f.Add([]byte(`{"id":"a","at":1}` + "\n" + `{"id":"b","at":2}` + "\n"))
	f.Add([]byte(`{"id":"a","at":1}` + "\n" + `{"id":"b","at":`))
	f.Add([]byte("\n"))
	f.Add([]byte(`{"id":"","at":1}` + "\n"))
	f.Add([]byte(`{"id":"a","at":1,"x":2}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		at, good, err := parseSeen(b)
		if err != nil {
			return
		}
		if good > len(b) {
			t.Fatalf("good %d beyond %d bytes", good, len(b))
		}
		again, good2, err := parseSeen(b[:good])
		if err != nil || good2 != good || len(again) != len(at) {
			t.Fatalf("the accepted prefix does not re-parse the same: %v", err)
		}
	})
}
