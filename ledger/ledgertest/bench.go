package ledgertest

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Concurrent runs op(0) .. op(b.N-1), concurrency at a time, timed, and
// reports ops/s under the name perSecond ("creates/s") and the p50 and p99
// of one op in ms. The first error fails b and is reported once.
func Concurrent(b *testing.B, concurrency int, perSecond string, op func(i int) error) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	next := make(chan int)
	var wg sync.WaitGroup
	var failed sync.Once
	b.ResetTimer()
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				if err := op(i); err != nil {
					failed.Do(func() { b.Errorf("op %d: %v", i, err) })
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), perSecond)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
