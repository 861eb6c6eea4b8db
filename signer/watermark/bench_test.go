package watermark

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkReserveComplete is the per-signature cost on a node: two
// appends, each followed by an fsync (the figure is the disk's fsync rate).
func BenchmarkReserveComplete(b *testing.B) {
	s := openStore(b, b.TempDir())
	i := 0
	for b.Loop() {
		req := fmt.Sprintf("req-%d", i)
		tk, err := s.Reserve(intentFor(req, req, ETHNonceKey(wallet, 1, uint64(i))))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Complete(tk, hashOf(req)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkReserveRetry is an idempotent retry: memory only, no write.
func BenchmarkReserveRetry(b *testing.B) {
	s := openStore(b, b.TempDir())
	in := intentFor("req-1", "m1", ETHNonceKey(wallet, 1, 1))
	mustReserve(b, s, in)
	for b.Loop() {
		if _, err := s.Reserve(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenReplay10k is node start-up with 10,000 signed requests in
// the log (the log is written directly, without per-record fsync).
func BenchmarkOpenReplay10k(b *testing.B) {
	const n = 10_000
	dir := b.TempDir()
	log := []byte(fileMagic)
	at := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for i := range n {
		req := fmt.Sprintf("req-%d", i)
		in, err := intentFor(req, req, ETHNonceKey(wallet, 1, uint64(i))).normalize()
		if err != nil {
			b.Fatal(err)
		}
		log = append(log, frame(encodeBody(record{typ: recReserve, at: at, intent: in}))...)
		log = append(log, frame(encodeBody(record{typ: recComplete, at: at, intent: in, sigHash: hashOf(req)}))...)
	}
	if err := os.WriteFile(filepath.Join(dir, LogFile), log, 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(log)))
	for b.Loop() {
		s, err := Open(dir, WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		if s.Recovery().Records != 2*n {
			b.Fatal("records lost")
		}
		s.Close()
	}
}
