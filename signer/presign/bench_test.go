package presign

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// Run with a fixed count, since every online signature needs an offline
// phase first (untimed):
//
//	go test -run '^$' -bench Presign -benchtime 20x ./signer/presign

func benchWallet(b *testing.B, n int) (*wallet, Subset) {
	if n == 3 {
		return wallet2of3(b), NewSubset("node1", "node2")
	}
	return wallet3of5(b), NewSubset("node1", "node3", "node5")
}

// reportLatency adds p50 and p99 in milliseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkPresignOnline: approval-to-signature latency with a presignature
// (online phase: bind, rounds 5-9, verify) beside full signing through the
// same pool with an empty pool, in the same run.
func BenchmarkPresignOnline(b *testing.B) {
	for _, n := range []int{3, 5} {
		for _, mode := range []string{"presigned", "full"} {
			b.Run(fmt.Sprintf("%dof%d/%s", n/2+1, n, mode), func(b *testing.B) {
				w, subset := benchWallet(b, n)
				r := newRig(b, w, 1)
				ctx := ctxT(b)
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if mode == "presigned" {
						b.StopTimer()
						if _, err := r.pool.Make(ctx, w.name, subset); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					d := digestOf(fmt.Sprint("bench ", i))
					start := time.Now()
					_, out, err := r.pool.Sign(ctx, fmt.Sprint("req-", i), w.name, subset, d)
					lat = append(lat, time.Since(start))
					if err != nil {
						b.Fatal(err)
					}
					if out.Presigned != (mode == "presigned") {
						b.Fatalf("presigned=%v in mode %s", out.Presigned, mode)
					}
				}
				b.StopTimer()
				reportLatency(b, lat)
			})
		}
	}
}

// BenchmarkPresignRefill: offline phases (rounds 1-4 on every member of the
// subset), one at a time as the background refill runs them.
func BenchmarkPresignRefill(b *testing.B) {
	for _, n := range []int{3, 5} {
		b.Run(fmt.Sprintf("%dof%d", n/2+1, n), func(b *testing.B) {
			w, subset := benchWallet(b, n)
			r := newRig(b, w, b.N)
			ctx := ctxT(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := r.pool.Make(ctx, w.name, subset); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(r.pool.Stats().RefillRate, "presig/s")
			for _, nd := range r.nodes {
				nd.Close()
			}
		})
	}
}
