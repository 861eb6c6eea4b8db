package rest_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/pki"
)

// BenchmarkRequestOnOpenConnection: GET /v1/whoami over one open
// keep-alive connection with mutual TLS (the handler's whole path: the
// peer, its registry entry on a real one-node ledger, the rate limit, the
// answer); what a request costs the node once its connection is up.
// Reports the chain verifications per request.
func BenchmarkRequestOnOpenConnection(b *testing.B) {
	store := newLedger(b)
	ts := serveWith(b, service{store: store}, rest.RateLimit{PerMinute: 1 << 30, Burst: 1 << 30})
	cl := ts.client(pki.RoleBackend, "backend")
	get := func() {
		resp, err := cl.Get(ts.url + rest.PathWhoami)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%d", resp.StatusCode)
		}
	}
	get()
	n0 := rest.ChainVerifications()
	b.ResetTimer()
	for b.Loop() {
		get()
	}
	b.ReportMetric(float64(rest.ChainVerifications()-n0)/float64(b.N), "verifications/op")
}
