package rest_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// serveServer runs the API as the daemon does: rest.NewServer (its
// ConnContext, HTTP/2 offered by ServeTLS) on a loopback listener.
func serveServer(t testing.TB, svc rest.Service) *testServer {
	t.Helper()
	ca, err := pki.NewCA("rest-test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, ca: ca, clock: ledgertest.NewClock(time.Now())}
	srv, err := rest.NewServer(ts.identity(pki.RoleNode, "n1", time.Now(), time.Hour), rest.Config{Service: svc, Now: ts.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	ts.url = "https://" + ln.Addr().String()
	return ts
}

// verifications returns a function reporting how many client chains the
// API verified since verifications was called.
func verifications() func() int64 {
	n0 := rest.ChainVerifications()
	return func() int64 { return rest.ChainVerifications() - n0 }
}

// TestChainVerifiedOncePerConnection: the client certificate's chain is
// verified once per TLS connection, over HTTP/1.1 keep-alive and HTTP/2
// (concurrent requests on one connection included), and again on a new
// connection; a later request on the connection reuses the verdict while
// the node's clock is within the chain's validity. A certificate that
// expires while its connection stays open is refused at the next request
// (401 unauthenticated) and at every one after it (a failure is never
// kept); a clock set back before its NotBefore is refused likewise.
func TestChainVerifiedOncePerConnection(t *testing.T) {
	store := newLedger(t)
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2]
		t.Run(name, func(t *testing.T) {
			ts := serveServer(t, service{store: store})
			short := ts.identity(pki.RoleBackend, "backend", ts.clock.Now(), 10*time.Minute)
			client := func() *http.Client {
				tr := &http.Transport{TLSClientConfig: short.ClientTLS(pki.RoleNode, pki.ExpectNode("n1")), ForceAttemptHTTP2: h2}
				t.Cleanup(tr.CloseIdleConnections)
				return &http.Client{Transport: tr}
			}
			cl := client()
			count := verifications()
			want := func(step string, status int, errCode string, verified int64) {
				t.Helper()
				resp, got, reused := call(t, cl, "GET", ts.url+"/v1/wallets", "")
				if resp.StatusCode != status || code(got) != errCode || !reused || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
					t.Fatalf("%s: %s %d %v (reused %v), want %d %q on the open connection", step, resp.Proto, resp.StatusCode, got, reused, status, errCode)
				}
				if n := count(); n != verified {
					t.Fatalf("%s: %d chain verifications, want %d", step, n, verified)
				}
			}
			if resp, got, _ := call(t, cl, "GET", ts.url+"/v1/wallets", ""); resp.StatusCode != 200 {
				t.Fatalf("first request: %d %v", resp.StatusCode, got)
			}
			for range 4 {
				want("later requests", 200, "", 1)
			}
			if h2 {
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for range 8 {
					wg.Go(func() {
						resp, err := cl.Get(ts.url + "/v1/wallets")
						if err == nil {
							resp.Body.Close()
							if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
								err = errors.New(resp.Proto + " " + resp.Status)
							}
						}
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("concurrent requests on one HTTP/2 connection: %v", err)
					}
				}
				want("after concurrent requests", 200, "", 1)
			}
			ts.clock.Advance(9 * time.Minute)
			want("within the validity", 200, "", 1)
			if resp, got, reused := call(t, client(), "GET", ts.url+"/v1/wallets", ""); resp.StatusCode != 200 || reused || count() != 2 {
				t.Fatalf("a new connection: %d %v (reused %v), %d verifications", resp.StatusCode, got, reused, count())
			}
			ts.clock.Advance(2 * time.Minute)
			want("expired on the open connection", 401, "unauthenticated", 3)
			want("expired, again", 401, "unauthenticated", 4)
			ts.clock.Advance(-5 * time.Minute)
			want("the clock back within the validity", 200, "", 5)
			want("and again", 200, "", 5)
			leaf := short.Cert.Leaf
			notBefore := leaf.NotBefore
			if nb := ts.ca.Cert.NotBefore; nb.After(notBefore) {
				notBefore = nb
			}
			ts.clock.Set(notBefore.Add(-time.Second))
			want("the clock set back before NotBefore", 401, "unauthenticated", 6)
		})
	}
	// A handler served without ConnContext verifies every request.
	t.Run("without ConnContext", func(t *testing.T) {
		ts := &testServer{t: t, clock: ledgertest.NewClock(time.Now())}
		var err error
		if ts.ca, err = pki.NewCA("rest-test", time.Now(), time.Hour); err != nil {
			t.Fatal(err)
		}
		node := ts.identity(pki.RoleNode, "n1", time.Now(), time.Hour)
		h, err := rest.NewHandler(rest.Config{CA: node.CA, Service: service{store: store}, Now: ts.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(h)
		srv.TLS = rest.ServerTLS(node, ts.clock.Now)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		cl, count := ts.client(pki.RoleBackend, "backend"), verifications()
		for i := range 3 {
			if resp, got, reused := call(t, cl, "GET", srv.URL+"/v1/wallets", ""); resp.StatusCode != 200 || reused != (i > 0) {
				t.Fatalf("request %d: %d %v (reused %v)", i, resp.StatusCode, got, reused)
			}
		}
		if n := count(); n != 3 {
			t.Fatalf("%d chain verifications for 3 requests", n)
		}
	})
}

// TestSuspensionWithTheChainCached: the chain's verdict is kept for the
// connection, the principal's registry entry is not: a principal
// suspended while its connection stays open is refused at its next request
// on it (401 principal_inactive), with no new chain verification.
func TestSuspensionWithTheChainCached(t *testing.T) {
	store := newLedger(t)
	ts := serveServer(t, service{store: store, createErr: errors.New("asked")})
	cl := ts.client(pki.RoleBackend, "backend-2")
	count := verifications()
	for i := range 3 {
		if resp, got, reused := call(t, cl, "GET", ts.url+"/v1/wallets", ""); resp.StatusCode != 200 || reused != (i > 0) {
			t.Fatalf("request %d: %d %v (reused %v)", i, resp.StatusCode, got, reused)
		}
	}
	suspend(t, store, "backend-2")
	resp, got, reused := call(t, cl, "GET", ts.url+"/v1/wallets", "")
	if resp.StatusCode != 401 || code(got) != "principal_inactive" || !reused {
		t.Fatalf("suspended, same connection (reused %v): %d %v", reused, resp.StatusCode, got)
	}
	if resp, got, reused := call(t, cl, "POST", ts.url+"/v1/withdrawals", `{"id":"x"}`); resp.StatusCode != 401 || code(got) != "principal_inactive" || !reused {
		t.Fatalf("suspended create (reused %v): %d %v", reused, resp.StatusCode, got)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d chain verifications on one connection, want 1", n)
	}
}
