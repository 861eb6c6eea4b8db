package transport_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custody-dev/custody/signer/tss"
)

// BenchmarkRoundTrip measures envelope round trips on loopback mTLS: node1
// sends b.N envelopes to node2, which sends each back; the clock stops when
// node1 has them all. Sends are pipelined (bounded by the queues), so this is
// throughput, not latency. MB/s counts envelope bytes in both directions.
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{256, 4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("payload=%dB", size), func(b *testing.B) {
			c := newCluster(b, ids(2))
			a, z := c.tr["node1"], c.tr["node2"]
			e := &tss.Envelope{Wallet: "bench", Type: "bench", From: "node1", To: "node2", Payload: make([]byte, size)}
			raw, err := e.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			back := *e
			back.From, back.To = "node2", "node1"
			ctx := context.Background()
			go func() {
				for range z.Receive() {
					if z.Send(ctx, "node1", &back) != nil {
						return
					}
				}
			}()
			// Warm the connections so the handshakes are not timed.
			send(b, a, "node2", e)
			recv(b, a)
			b.SetBytes(int64(2 * len(raw)))
			b.ResetTimer()
			start := time.Now()
			go func() {
				for range b.N {
					if a.Send(ctx, "node2", e) != nil {
						return
					}
				}
			}()
			for range b.N {
				recv(b, a)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "roundtrips/s")
		})
	}
}
