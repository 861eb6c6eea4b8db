package rest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
)

// faultyService injects failures: every read fails with readErr (or runs
// on an empty state when nil), the read index with indexErr, creates with
// createErr. Fault injection only; the daemon's TestBackendAPI runs the
// real service.
type faultyService struct {
	readErr, indexErr, createErr error
}

func (f faultyService) CreateWithdrawal(context.Context, string, rest.Withdrawal) (*ledger.Request, bool, error) {
	return nil, false, f.createErr
}

func (f faultyService) Read(_ context.Context, _ uint64, fn func(*ledger.State) error) error {
	if f.readErr != nil {
		return f.readErr
	}
	return fn(&ledger.State{})
}

func (f faultyService) ReadIndex(context.Context) (uint64, error) { return 7, f.indexErr }

func (f faultyService) WalletKey(context.Context, string) []byte { return nil }

// serve runs the API over svc with real mTLS and returns a client with a
// certificate of role.
func serve(t *testing.T, svc rest.Service, role pki.Role) (*http.Client, string) {
	t.Helper()
	ca, err := pki.NewCA("backend-test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	identity := func(role pki.Role, id string) pki.Identity {
		c, k, err := ca.Issue(role, id, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ident, err := pki.LoadIdentity(c, k, ca.PEM())
		if err != nil {
			t.Fatal(err)
		}
		return ident
	}
	node := identity(pki.RoleNode, "n1")
	h, err := rest.NewHandler(rest.Config{CA: node.CA, Service: svc, RetryAfter: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = rest.ServerTLS(node)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr := &http.Transport{TLSClientConfig: identity(role, "backend").ClientTLS(pki.RoleNode, pki.ExpectNode("n1"))}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, srv.URL
}

func get(t *testing.T, cl *http.Client, url string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %d %q", url, resp.StatusCode, b)
	}
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
	for _, tc := range []struct {
		name string
		svc  faultyService
		path string
		want int
		code string
	}{
		{"replica behind", faultyService{readErr: fmt.Errorf("x: %w", ledger.ErrNotCaughtUp)}, "/v1/withdrawals/wd", 503, "unavailable"},
		{"halted", faultyService{readErr: ledger.ErrHalted}, "/v1/wallets", 503, "unavailable"},
		{"no leader for the read index", faultyService{indexErr: &ledger.NotLeaderError{}}, "/v1/withdrawals/wd", 503, "unavailable"},
		{"outcome unknown", faultyService{indexErr: fmt.Errorf("x: %w", ledger.ErrTimeout)}, "/v1/withdrawals/wd", 503, "unavailable"},
		{"internal", faultyService{readErr: errors.New("secret detail")}, "/v1/withdrawals?limit=2", 500, "internal"},
		{"not found", faultyService{}, "/v1/withdrawals/wd", 404, "not_found"},
		{"no endpoint", faultyService{}, "/v2/withdrawals", 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, url := serve(t, tc.svc, pki.RoleBackend)
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
	cl, url := serve(t, faultyService{}, pki.RoleBackend)
	req, _ := http.NewRequest(http.MethodDelete, url+"/v1/withdrawals/wd", nil)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
		t.Fatalf("DELETE: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// A body over MaxBody is refused unread, before the service is asked.
	big := `{"id":"` + strings.Repeat("a", rest.MaxBody) + `"}`
	resp, err = cl.Post(url+"/v1/withdrawals", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(b), `"too_large"`) || strings.Contains(string(b), "aaaaaaaa") {
		t.Fatalf("oversized body: %d %.200s", resp.StatusCode, b)
	}
	// An operator certificate passes the handshake and is refused by the
	// handler, before the service is asked.
	cl, url = serve(t, faultyService{readErr: errors.New("asked")}, pki.RoleOperator)
	if resp, got := get(t, cl, url+"/v1/withdrawals/wd"); resp.StatusCode != 403 || code(got) != "forbidden" {
		t.Fatalf("operator: %d %v", resp.StatusCode, got)
	}
}
