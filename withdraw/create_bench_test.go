package withdraw_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custody-dev/custody/withdraw"
)

// BenchmarkCreateETH: creates of one wallet through the leader's
// orchestrator (one linearizable read, the nonce allocator, the
// request.create commit with policy), 16 at a time, on a real three-node
// ledger (raft over mutual TLS on 127.0.0.1, fsync on) and the simulated
// chain; no HTTP API. Reports creates/s and the p50 and p99 latency of one
// create (ms). The intents are signed before the timer starts.
func BenchmarkCreateETH(b *testing.B) {
	h := newNonceHarness(b, withdraw.NonceRefresh)
	o := h.orchs[h.cluster.WaitLeader(nil).ID]
	const concurrency = 16
	ws := make([]withdraw.ETHWithdrawal, b.N)
	for i := range ws {
		ws[i] = h.withdrawal(fmt.Sprintf("bench-%07d", i), "hot", 1e12)
	}
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
				if _, err := o.CreateETH(h.ctx, ws[i]); err != nil {
					failed.Do(func() { b.Errorf("create %s: %v", ws[i].ID, err) })
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
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "creates/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
