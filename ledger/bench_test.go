package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
)

// BenchmarkCommit measures request.create commits (policy evaluation and all)
// on a 3-node cluster over mutually authenticated TLS on loopback, with bbolt
// fsync on. Reported: commit latency p50/p99 in ms and commits/s.
func BenchmarkCommit(b *testing.B) {
	for _, proposers := range []int{1, 16} {
		b.Run(fmt.Sprintf("proposers=%d", proposers), func(b *testing.B) {
			c := newCluster(b, 3, func(cfg *Config) {
				// LAN timing for the measurement, not the loaded-CI timing.
				cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
			})
			seed(c)
			var leader atomic.Pointer[Store]
			leader.Store(c.WaitLeader(nil).Store)
			var next atomic.Uint64
			lat := make([][]time.Duration, proposers)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := range proposers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > uint64(b.N) {
							return
						}
						t0 := time.Now()
						for {
							_, _, err := leader.Load().CreateRequest(context.Background(), "backend", createCmd(fmt.Sprintf("b-%d", i), i))
							if err == nil {
								break
							}
							if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrTimeout) {
								b.Error(err)
								return
							}
							// A leader change on the loaded machine: the
							// latency sample includes the failover, and the
							// retry uses the same request ID.
							leader.Store(c.WaitLeader(nil).Store)
						}
						lat[p] = append(lat[p], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) == 0 {
				return
			}
			q := func(f float64) float64 { return float64(all[int(f*float64(len(all)-1))]) / 1e6 }
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "commits/s")
		})
	}
}
