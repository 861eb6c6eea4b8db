package noderpc_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// issue makes an identity of role for id from ca (a fresh key).
func issue(t testing.TB, ca *pki.CA, role pki.Role, id string) pki.Identity {
	t.Helper()
	cert, key, err := ca.Issue(role, id, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ident, err := pki.LoadIdentity(cert, key, ca.PEM())
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

// rawClient is an HTTPS client presenting ident, accepting any node
// certificate of the cluster CA (the refusals under test are the server's).
func rawClient(ident pki.Identity, ca *pki.CA) *http.Client {
	ident.CA = ca.Pool() // the server is checked against the cluster CA, whoever issued ident
	cfg := ident.ClientTLS(pki.RoleNode, nil)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

func submitBody(t testing.TB, actor string, cmd ledger.Command) []byte {
	t.Helper()
	p, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return jsonOf(t, map[string]any{"actor": actor, "type": cmd.Type(), "payload": json.RawMessage(p)})
}

// TestOutsidersRefusedAtTLS: a cluster-CA node certificate for an ID
// outside the node set, one for a node of the set on another key, one
// from another CA with the node's own key, and operator and backend
// certificates all fail the handshake with the leader's RPC; nothing is
// committed. A genuine node's certificate passes (the control).
func TestOutsidersRefusedAtTLS(t *testing.T) {
	h := newHarness(t, nil, 0)
	leader := h.c.WaitLeader(nil)
	ca := h.c.PKI.CA
	other := ledgertest.NewPKI(t)
	url := "https://" + h.addrs[leader.ID] + noderpc.PathSubmit
	c := create(t, "wd-out", 9, "unsigned-tx:wd-out")
	body := submitBody(t, "backend:exchange", c)
	before := stateOf(t, leader.Store)

	outsiders := map[string]pki.Identity{
		"node outside the node set":        issue(t, ca, pki.RoleNode, "n9"),
		"node of the set on another key":   issue(t, ca, pki.RoleNode, "n2"),
		"node key under another CA":        other.Node(t, "n2"),
		"operator certificate":             issue(t, ca, pki.RoleOperator, "alice"),
		"backend certificate":              issue(t, ca, pki.RoleBackend, "exchange"),
		"node set ID, another CA, own key": other.Node(t, leader.ID),
	}
	for name, ident := range outsiders {
		resp, err := rawClient(ident, ca).Post(url, "application/json", bytes.NewReader(body))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Errorf("%s: answered %d %s", name, resp.StatusCode, b)
			continue
		}
		// The server's alert, not a refusal of the server by this client.
		if !strings.Contains(err.Error(), "remote error: tls") {
			t.Errorf("%s: %v, want the server's TLS alert", name, err)
		}
	}
	// No client certificate at all.
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the test refuses it
	if resp, err := noCert.Post(url, "application/json", bytes.NewReader(body)); err == nil {
		resp.Body.Close()
		t.Errorf("no client certificate: answered %d", resp.StatusCode)
	}
	if after := stateOf(t, leader.Store); after != before {
		t.Fatalf("state changed: %+v -> %+v", before, after)
	}
	if request(t, leader.Store, "wd-out") != nil {
		t.Fatal("an outsider's write was committed")
	}

	// The control: a node of the set, over the same raw client.
	f := h.follower()
	resp, err := rawClient(f.Identity, ca).Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || request(t, leader.Store, "wd-out") == nil {
		t.Fatalf("a node of the set: %d", resp.StatusCode)
	}
}

// TestHandlerChecksEveryRequest: the handler refuses on its own what the
// TLS layer would: no TLS, a TLS peer that is not a node (a listener
// misconfigured to admit operators), a node outside the node set (a
// listener without the gate). Each gets 403 rpc.forbidden in the error
// shape.
func TestHandlerChecksEveryRequest(t *testing.T) {
	h := newHarness(t, nil, 0)
	leader := h.c.WaitLeader(nil)
	ca := h.c.PKI.CA
	handler, err := noderpc.NewHandler(noderpc.Config{Identity: leader.Identity, Authorize: leader.Gate.Authorize, Store: leader.Store})
	if err != nil {
		t.Fatal(err)
	}
	body := submitBody(t, "backend:exchange", create(t, "wd-h", 10, "unsigned-tx:wd-h"))
	before := stateOf(t, leader.Store)

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, noderpc.PathSubmit, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	handler.ServeHTTP(rec, req)
	checkError(t, "plain HTTP", rec.Code, rec.Body.Bytes(), http.StatusForbidden, noderpc.CodeForbidden)

	serve := func(cfg *tls.Config) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: handler, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		t.Cleanup(func() { _ = srv.Close() })
		return "https://" + ln.Addr().String() + noderpc.PathSubmit
	}
	cases := []struct {
		name   string
		listen *tls.Config
		ident  pki.Identity
	}{
		{"operator on a listener admitting operators", leader.Identity.ServerTLS(pki.RoleOperator, nil), issue(t, ca, pki.RoleOperator, "alice")},
		{"node outside the set on a listener without the gate", leader.Identity.NodeTLS(nil), issue(t, ca, pki.RoleNode, "n9")},
	}
	for _, tc := range cases {
		resp, err := rawClient(tc.ident, ca).Post(serve(tc.listen), "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkError(t, tc.name, resp.StatusCode, b, http.StatusForbidden, noderpc.CodeForbidden)
	}
	if after := stateOf(t, leader.Store); after != before {
		t.Fatalf("state changed: %+v -> %+v", before, after)
	}
}

// checkError asserts the one error shape, strictly: {"error":{"code",
// "message"}} with a known code.
func checkError(t testing.TB, name string, status int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	var eb struct {
		Error struct {
			Code       string     `json:"code"`
			Message    string     `json:"message"`
			LeaderID   pki.NodeID `json:"leader_id"`
			LeaderAddr string     `json:"leader_addr"`
			Index      uint64     `json:"index"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Errorf("%s: body %q is not the error shape: %v", name, body, err)
		return
	}
	if status != wantStatus || eb.Error.Code != wantCode || eb.Error.Message == "" || !slices.Contains(noderpc.Codes(), eb.Error.Code) {
		t.Errorf("%s: %d %+v, want %d %s", name, status, eb.Error, wantStatus, wantCode)
	}
	if strings.Contains(eb.Error.Message, "PRIVATE KEY") {
		t.Errorf("%s: message leaks key material", name)
	}
}
