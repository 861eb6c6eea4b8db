package noderpc_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/custody-dev/custody/api/noderpc"
)

// TestBadBodiesChangeNothing: malformed, oversized, unknown-field and
// otherwise wrong requests from a genuine node get a 4xx in the error
// shape, and the leader's state (index and hash) is unchanged.
func TestBadBodiesChangeNothing(t *testing.T) {
	h := newHarness(t, nil, 0)
	leader := h.c.WaitLeader(nil)
	f := h.follower()
	cl := rawClient(f.Identity, h.c.PKI.CA)
	base := "https://" + h.addrs[leader.ID]
	good := string(submitBody(t, "backend:exchange", create(t, "wd-b", 11, "unsigned-tx:wd-b")))
	before := stateOf(t, leader.Store)
	const sid = "abababababababababababababababababababababababababababababababab"

	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
	}{
		{"not JSON", "POST", noderpc.PathSubmit, "application/json", "actor=x", 400, noderpc.CodeBadRequest},
		{"truncated", "POST", noderpc.PathSubmit, "application/json", good[:len(good)/2], 400, noderpc.CodeBadRequest},
		{"unknown envelope field", "POST", noderpc.PathSubmit, "application/json", strings.Replace(good, `"actor"`, `"sudo":true,"actor"`, 1), 400, noderpc.CodeBadRequest},
		{"unknown payload field", "POST", noderpc.PathSubmit, "application/json", strings.Replace(good, `"payload":{`, `"payload":{"bypass":1,`, 1), 400, "ledger.invalid"},
		{"unknown command type", "POST", noderpc.PathSubmit, "application/json", strings.Replace(good, `"request.create"`, `"request.nuke"`, 1), 400, "ledger.invalid"},
		{"null payload", "POST", noderpc.PathSubmit, "application/json", `{"actor":"a","type":"request.create","payload":null}`, 400, "ledger.invalid"},
		{"empty actor", "POST", noderpc.PathSubmit, "application/json", strings.Replace(good, `"actor":"backend:exchange"`, `"actor":""`, 1), 400, noderpc.CodeBadRequest},
		{"trailing data", "POST", noderpc.PathSubmit, "application/json", good + `{}`, 400, noderpc.CodeBadRequest},
		{"two values", "POST", noderpc.PathSubmit, "application/json", good + good, 400, noderpc.CodeBadRequest},
		{"oversized", "POST", noderpc.PathSubmit, "application/json", `{"actor":"` + strings.Repeat("a", noderpc.MaxBody) + `"}`, 413, noderpc.CodeTooLarge},
		{"not application/json", "POST", noderpc.PathSubmit, "text/plain", good, 400, noderpc.CodeBadRequest},
		{"GET on submit", "GET", noderpc.PathSubmit, "", "", 405, noderpc.CodeMethod},
		{"POST on read index", "POST", noderpc.PathReadIndex, "application/json", `{}`, 405, noderpc.CodeMethod},
		{"unknown path", "GET", "/node/v1/shares", "", "", 404, noderpc.CodeNoRoute},
		{"unversioned path", "POST", "/submit", "application/json", good, 404, noderpc.CodeNoRoute},
		{"withdrawal on a node without a creator", "POST", noderpc.PathWithdrawals, "application/json", `{"principal":"backend","withdrawal":{}}`, 503, noderpc.CodeUnavailable},
		{"GET on withdrawals", "GET", noderpc.PathWithdrawals, "", "", 405, noderpc.CodeMethod},
		{"sign on a node without a member", "POST", noderpc.PathSign, "application/json", `{"request_id":"x","claim":{"session_id":"` + sid + `"}}`, 503, noderpc.CodeUnavailable},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkError(t, tc.name, resp.StatusCode, b, tc.status, tc.code)
		if bytes.Contains(b, []byte("aaaaaaaaaaaaaaaa")) {
			t.Errorf("%s: the error echoes the body", tc.name)
		}
	}
	if after := stateOf(t, leader.Store); after != before {
		t.Fatalf("state changed: %+v -> %+v", before, after)
	}
	if request(t, leader.Store, "wd-b") != nil {
		t.Fatal("a refused body was committed")
	}
}
