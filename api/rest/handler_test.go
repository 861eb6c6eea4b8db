package rest_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

const testCluster = "rest-test"

// testRules: the smallest rules a genesis takes (the API tests here read
// the registry; withdrawals are TestBackendAPI's).
const testRules = "version: 1\nassets: {ETH: {decimals: 18}}\nallowlist: {cooling_off: 1h, approvals: 1, roles: [admin]}\n" +
	"lock: {unlock_delay: 1h}\nwallets: [{name: hot, wallets: [hot], asset: ETH, class: hot, limits: {per_tx: \"1\", max_fee: \"0.01\"}, " +
	"approvals: [{min: \"0\", required: 1, roles: [admin]}]}]\n"

var (
	alice    = ledgertest.NewOperator("alice", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	bob      = ledgertest.NewOperator("bob", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	backend  = ledgertest.NewOperator("backend", quorum.KindBackend, quorum.RoleInitiator)
	backend2 = ledgertest.NewOperator("backend-2", quorum.KindBackend, quorum.RoleInitiator)
)

// newLedger is a real one-node ledger whose genesis enrolls alice and bob
// (admins) and the backend principals backend and backend-2.
func newLedger(t testing.TB) *ledger.Store {
	t.Helper()
	g := ledgertest.GenesisFor([]pki.NodeID{"n1"}, testCluster, 2, testRules, alice, bob, backend, backend2)
	c := ledgertest.New(t, 1, func(cfg *ledger.Config) { cfg.Genesis = &g })
	c.Submit(context.Background(), "ceremony", g)
	return c.Nodes[0].Store
}

// service is the API's Service over a real ledger, with faults injected:
// every read fails with readErr, the read index with indexErr, creates
// with createErr (the daemon's TestBackendAPI runs the real node).
type service struct {
	store                        *ledger.Store
	readErr, indexErr, createErr error
}

func (s service) CreateWithdrawal(context.Context, string, rest.Withdrawal) (*ledger.Request, bool, error) {
	return nil, false, s.createErr
}

func (s service) Read(_ context.Context, _ uint64, fn func(*ledger.State) error) error {
	if s.readErr != nil {
		return s.readErr
	}
	return s.store.ReadLocal(fn)
}

func (s service) ReadIndex(context.Context) (uint64, error) {
	if s.indexErr != nil {
		return 0, s.indexErr
	}
	return s.store.StateIndex(), nil
}

func (s service) WalletKey(context.Context, string) []byte { return nil }

func (s service) Balances(context.Context, *ledger.Wallet, string) []rest.Balance { return nil }

// testServer is the API over a service with real mTLS, the node's clock a
// test clock.
type testServer struct {
	t     testing.TB
	ca    *pki.CA
	url   string
	clock *ledgertest.Clock
}

func serveWith(t testing.TB, svc rest.Service, limit rest.RateLimit) *testServer {
	t.Helper()
	ca, err := pki.NewCA("rest-test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, ca: ca, clock: ledgertest.NewClock(time.Now())}
	node := ts.identity(pki.RoleNode, "n1", time.Now(), time.Hour)
	h, err := rest.NewHandler(rest.Config{CA: node.CA, Service: svc, RetryAfter: 3 * time.Second, Now: ts.clock.Now, RateLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = rest.ServerTLS(node, ts.clock.Now)
	srv.Config.ConnContext = rest.ConnContext // as NewServer has it
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ts.url = srv.URL
	return ts
}

func (ts *testServer) identity(role pki.Role, id string, issued time.Time, validity time.Duration) pki.Identity {
	ts.t.Helper()
	c, k, err := ts.ca.Issue(role, id, issued, validity)
	if err != nil {
		ts.t.Fatal(err)
	}
	ident, err := pki.LoadIdentity(c, k, ts.ca.PEM())
	if err != nil {
		ts.t.Fatal(err)
	}
	return ident
}

// client has a certificate of role for id issued at the node clock's now,
// valid for an hour.
func (ts *testServer) client(role pki.Role, id string) *http.Client {
	ts.t.Helper()
	return ts.clientWith(ts.identity(role, id, ts.clock.Now(), time.Hour).ClientTLS(pki.RoleNode, pki.ExpectNode("n1")))
}

func (ts *testServer) clientWith(cfg *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg}
	ts.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// serve runs the API over svc with an operator's and a backend's
// principal enrolled and returns a client with a certificate of role.
func serve(t *testing.T, svc rest.Service, role pki.Role, id string) (*http.Client, string) {
	t.Helper()
	ts := serveWith(t, svc, rest.RateLimit{})
	return ts.client(role, id), ts.url
}

// call sends a request and decodes the JSON answer; reused reports
// whether it went over an already open connection.
func call(t *testing.T, cl *http.Client, method, url, body string) (resp *http.Response, out map[string]any, reused bool) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %d %q", url, resp.StatusCode, b)
	}
	return resp, out, reused
}

func get(t *testing.T, cl *http.Client, url string) (*http.Response, map[string]any) {
	t.Helper()
	resp, out, _ := call(t, cl, http.MethodGet, url, "")
	return resp, out
}

func code(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// TestUnavailableAnswers: a replica behind, a halted ledger, no leader
// for the read index: 503 unavailable with Retry-After; any other failure
// is 500 internal with a fixed message (the cause stays in the log); an
// unknown path is 404, a wrong method 405 with Allow, a body over 1 MiB
// 413; an operator certificate 403.
func TestUnavailableAnswers(t *testing.T) {
	store := newLedger(t)
	for _, tc := range []struct {
		name string
		svc  service
		path string
		want int
		code string
	}{
		{"replica behind", service{store: store, readErr: fmt.Errorf("x: %w", ledger.ErrNotCaughtUp)}, "/v1/withdrawals/wd", 503, "unavailable"},
		{"halted", service{store: store, readErr: ledger.ErrHalted}, "/v1/wallets", 503, "unavailable"},
		{"no leader for the read index", service{store: store, indexErr: &ledger.NotLeaderError{}}, "/v1/withdrawals/wd", 503, "unavailable"},
		{"outcome unknown", service{store: store, indexErr: fmt.Errorf("x: %w", ledger.ErrTimeout)}, "/v1/withdrawals/wd", 503, "unavailable"},
		{"internal", service{store: store, readErr: errors.New("secret detail")}, "/v1/withdrawals?limit=2", 500, "internal"},
		{"not found", service{store: store}, "/v1/withdrawals/wd", 404, "not_found"},
		{"no endpoint", service{store: store}, "/v2/withdrawals", 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, url := serve(t, tc.svc, pki.RoleBackend, "backend")
			resp, got := get(t, cl, url+tc.path)
			if resp.StatusCode != tc.want || code(got) != tc.code {
				t.Fatalf("%d %v, want %d %s", resp.StatusCode, got, tc.want, tc.code)
			}
			if ra := resp.Header.Get("Retry-After"); (tc.want == 503) != (ra == "3") {
				t.Fatalf("Retry-After %q on %d", ra, tc.want)
			}
			if strings.Contains(fmt.Sprint(got), "secret detail") {
				t.Fatalf("the cause crossed the wire: %v", got)
			}
		})
	}
	cl, url := serve(t, service{store: store}, pki.RoleBackend, "backend")
	for path, allow := range map[string]string{"/v1/withdrawals/wd": "GET", "/v1/withdrawals": "GET, POST"} {
		resp, got, _ := call(t, cl, http.MethodDelete, url+path, "")
		if resp.StatusCode != 405 || code(got) != "method_not_allowed" || resp.Header.Get("Allow") != allow {
			t.Fatalf("DELETE %s: %d Allow %q", path, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	// A body over MaxBody is refused unread, before the service is asked.
	big := `{"id":"` + strings.Repeat("a", rest.MaxBody) + `"}`
	resp, err := cl.Post(url+"/v1/withdrawals", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(b), `"too_large"`) || strings.Contains(string(b), "aaaaaaaa") {
		t.Fatalf("oversized body: %d %.200s", resp.StatusCode, b)
	}
	// An operator certificate of an active operator passes the handshake
	// and the registry, and is refused by the endpoint's role.
	cl, url = serve(t, service{store: store, createErr: errors.New("asked")}, pki.RoleOperator, "alice")
	if resp, got := get(t, cl, url+"/v1/withdrawals/wd"); resp.StatusCode != 403 || code(got) != "forbidden" {
		t.Fatalf("operator: %d %v", resp.StatusCode, got)
	}
}

// suspend suspends principal id in the ledger by alice's signed change.
func suspend(t *testing.T, store *ledger.Store, id string) {
	t.Helper()
	ch := quorum.Change{ID: "suspend-" + id, Kind: quorum.ChangeSuspendOperator, OperatorID: id}
	if _, err := store.Submit(context.Background(), "alice", ledger.RegistryChange{Change: ch,
		Approvals: []quorum.Approval{alice.Sign(t, testCluster, ch.ID, ch.PayloadHash(), quorum.Approve, time.Now().Add(time.Hour))}}); err != nil {
		t.Fatal(err)
	}
}

// TestPrincipalFromTheRegistry: the certificate names the principal, the
// registry says whether it may still act. A backend suspended by a signed
// change is refused at its next request on the same keep-alive
// connection (401 principal_inactive), and another principal is not; a
// certificate of the CA naming no registry entry, or an entry of the
// other kind, is refused; nothing reaches the service's writes.
func TestPrincipalFromTheRegistry(t *testing.T) {
	store := newLedger(t)
	ts := serveWith(t, service{store: store, createErr: errors.New("asked")}, rest.RateLimit{})
	cl, other := ts.client(pki.RoleBackend, "backend-2"), ts.client(pki.RoleBackend, "backend")
	if resp, got, _ := call(t, cl, "GET", ts.url+"/v1/wallets", ""); resp.StatusCode != 200 {
		t.Fatalf("before the suspension: %d %v", resp.StatusCode, got)
	}
	suspend(t, store, "backend-2")
	before, err := store.Hash()
	if err != nil {
		t.Fatal(err)
	}
	resp, got, reused := call(t, cl, "GET", ts.url+"/v1/wallets", "")
	if resp.StatusCode != 401 || code(got) != "principal_inactive" || !reused {
		t.Fatalf("suspended, same connection (reused %v): %d %v", reused, resp.StatusCode, got)
	}
	if resp, got, _ := call(t, cl, "POST", ts.url+"/v1/withdrawals", `{"id":"x"}`); resp.StatusCode != 401 || code(got) != "principal_inactive" {
		t.Fatalf("suspended create: %d %v", resp.StatusCode, got)
	}
	if resp, got, _ := call(t, other, "GET", ts.url+"/v1/wallets", ""); resp.StatusCode != 200 {
		t.Fatalf("another principal: %d %v", resp.StatusCode, got)
	}
	for name, cl := range map[string]*http.Client{
		"not enrolled":                  ts.client(pki.RoleBackend, "stranger"),
		"operator certificate, backend": ts.client(pki.RoleOperator, "backend"),
		"backend certificate, human":    ts.client(pki.RoleBackend, "alice"),
	} {
		if resp, got, _ := call(t, cl, "GET", ts.url+"/v1/wallets", ""); resp.StatusCode != 401 || code(got) != "principal_inactive" {
			t.Errorf("%s: %d %v", name, resp.StatusCode, got)
		}
	}
	if after, err := store.Hash(); err != nil || after != before {
		t.Fatalf("the refused requests changed the ledger: %x → %x (%v)", before, after, err)
	}
}

// TestCertificateValidityByTheNodeClock: validity is the node's clock's
// word. A certificate is refused at the next request on an open
// connection once the node's clock passes its NotAfter (401
// unauthenticated) and at the handshake of a new one; a certificate valid
// by the wall clock but not yet by the node's is refused at the
// handshake.
func TestCertificateValidityByTheNodeClock(t *testing.T) {
	store := newLedger(t)
	ts := serveWith(t, service{store: store}, rest.RateLimit{})
	short := ts.identity(pki.RoleBackend, "backend", ts.clock.Now(), 10*time.Minute)
	cl := ts.clientWith(short.ClientTLS(pki.RoleNode, pki.ExpectNode("n1")))
	if resp, got, _ := call(t, cl, "GET", ts.url+"/v1/wallets", ""); resp.StatusCode != 200 {
		t.Fatalf("valid: %d %v", resp.StatusCode, got)
	}
	ts.clock.Advance(11 * time.Minute)
	resp, got, reused := call(t, cl, "GET", ts.url+"/v1/wallets", "")
	if resp.StatusCode != 401 || code(got) != "unauthenticated" || !reused {
		t.Fatalf("expired on an open connection (reused %v): %d %v", reused, resp.StatusCode, got)
	}
	fresh := ts.clientWith(short.ClientTLS(pki.RoleNode, pki.ExpectNode("n1")))
	if resp, err := fresh.Get(ts.url + "/v1/wallets"); err == nil {
		resp.Body.Close()
		t.Fatalf("expired certificate, new connection: answered %d", resp.StatusCode)
	}
	// NotBefore 30 minutes ago by the wall clock, 20 minutes ahead of the
	// node's clock: the node refuses it.
	ts.clock.Set(time.Now().Add(-50 * time.Minute))
	early := ts.identity(pki.RoleBackend, "backend", time.Now().Add(30*time.Minute), time.Hour)
	if resp, err := ts.clientWith(early.ClientTLS(pki.RoleNode, pki.ExpectNode("n1"))).Get(ts.url + "/v1/wallets"); err == nil {
		resp.Body.Close()
		t.Fatalf("not yet valid by the node's clock: answered %d", resp.StatusCode)
	}
}

// TestRateLimitPerPrincipal: each principal has its own bucket: past the
// burst the answer is 429 rate_limited with Retry-After and the error
// shape, before anything is read or written; another principal is
// served; the node's clock refills the bucket at the configured rate.
func TestRateLimitPerPrincipal(t *testing.T) {
	store := newLedger(t)
	ts := serveWith(t, service{store: store}, rest.RateLimit{PerMinute: 30, Burst: 3})
	cl, other := ts.client(pki.RoleBackend, "backend"), ts.client(pki.RoleOperator, "alice")
	for i := range 3 {
		if resp, got := get(t, cl, ts.url+"/v1/wallets"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %v", i, resp.StatusCode, got)
		}
	}
	before, _ := store.Hash()
	resp, got, _ := call(t, cl, "POST", ts.url+"/v1/withdrawals", `{"id":"rl-1"}`)
	if resp.StatusCode != 429 || code(got) != "rate_limited" || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("past the burst: %d %v Retry-After %q", resp.StatusCode, got, resp.Header.Get("Retry-After"))
	}
	// The 429 is as api/openapi.yaml describes it (the daemon's
	// TestBackendAPI validates every other answer).
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	route, params, err := router.FindRoute(resp.Request)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(got)
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: resp.Request, PathParams: params, Route: route},
		Status:                 resp.StatusCode, Header: resp.Header, Body: io.NopCloser(strings.NewReader(string(body))),
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}); err != nil {
		t.Fatalf("the 429 is not as api/openapi.yaml says: %v", err)
	}
	if after, _ := store.Hash(); after != before {
		t.Fatal("a limited request changed the ledger")
	}
	// alice's own bucket: her operator certificate is limited separately
	// (and then refused by the backend endpoint's role).
	if resp, got := get(t, other, ts.url+"/v1/withdrawals/wd"); resp.StatusCode != 403 || code(got) != "forbidden" {
		t.Fatalf("another principal: %d %v", resp.StatusCode, got)
	}
	ts.clock.Advance(2 * time.Second) // one token at 30 a minute
	if resp, got := get(t, cl, ts.url+"/v1/wallets"); resp.StatusCode != 200 {
		t.Fatalf("after the refill: %d %v", resp.StatusCode, got)
	}
	if resp, got := get(t, cl, ts.url+"/v1/wallets"); resp.StatusCode != 429 || code(got) != "rate_limited" {
		t.Fatalf("the refill was one token: %d %v", resp.StatusCode, got)
	}
}
