package hsm_test

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custody-dev/custody/hsm"
)

// benchPayload is about the size of a sealed tss-lib v2 key share.
const benchPayload = 4096

// benchParallel runs op b.N times spread over g goroutines and reports
// throughput (ops/s) and the mean latency of one operation (µs/op-latency);
// ns/op is wall time divided by b.N.
func benchParallel(b *testing.B, g int, op func(i int) error) {
	var next, busy atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := op(int(i)); err != nil {
					b.Error(err)
					return
				}
				busy.Add(int64(time.Since(t0)))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(busy.Load())/float64(b.N)/1e3, "µs/op-latency")
}

func benchToken(b *testing.B) *hsm.Token {
	tok, _ := openTest(b, "bench")
	return tok
}

func BenchmarkSeal(b *testing.B) {
	tok := benchToken(b)
	s := newKEK(b, tok)
	pt := make([]byte, benchPayload)
	for _, g := range []int{1, 8} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			b.SetBytes(benchPayload)
			benchParallel(b, g, func(int) error { _, err := s.Seal(pt, []byte("aad")); return err })
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	tok := benchToken(b)
	s := newKEK(b, tok)
	blob, err := s.Seal(make([]byte, benchPayload), []byte("aad"))
	if err != nil {
		b.Fatal(err)
	}
	for _, g := range []int{1, 8} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			b.SetBytes(benchPayload)
			benchParallel(b, g, func(int) error { _, err := s.Open(blob, []byte("aad")); return err })
		})
	}
}

// BenchmarkSign is a native secp256k1 CKM_ECDSA signature in the token,
// including the verification and low-S normalisation done before return.
func BenchmarkSign(b *testing.B) {
	tok := benchToken(b)
	k, err := tok.GenerateECKey("bench", hsm.Secp256k1)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("bench"))
	for _, g := range []int{1, 8} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			benchParallel(b, g, func(int) error { _, _, err := k.SignRS(d[:]); return err })
		})
	}
}
