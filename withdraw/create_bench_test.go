package withdraw_test

import (
	"fmt"
	"testing"

	"github.com/custody-dev/custody/ledger/ledgertest"
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
	ws := make([]withdraw.ETHWithdrawal, b.N)
	for i := range ws {
		ws[i] = h.withdrawal(fmt.Sprintf("bench-%07d", i), "hot", 1e12)
	}
	ledgertest.Concurrent(b, 16, "creates/s", func(i int) error {
		_, err := o.CreateETH(h.ctx, ws[i])
		return err
	})
}
