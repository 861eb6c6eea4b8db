package daemon_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// specValidator checks every request a test client sends and every
// answer it gets against api/openapi.yaml: each answer must match the
// document (status included), and a request the document refuses must be
// refused by the server (4xx).
type specValidator struct {
	t      *testing.T
	router routers.Router
	base   http.RoundTripper

	mu      sync.Mutex
	checked int
}

var (
	specOnce sync.Once
	specDoc  *openapi3.T
	specErr  error
)

func newSpecValidator(t *testing.T, base http.RoundTripper) *specValidator {
	t.Helper()
	specOnce.Do(func() {
		specDoc, specErr = openapi3.NewLoader().LoadFromFile("../api/openapi.yaml")
		if specErr == nil {
			specErr = specDoc.Validate(context.Background())
		}
	})
	if specErr != nil {
		t.Fatal(specErr)
	}
	doc := *specDoc
	doc.Servers = nil // any host: each node listens on its own port
	r, err := gorillamux.NewRouter(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return &specValidator{t: t, router: r, base: base}
}

func (v *specValidator) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		v.t.Errorf("%s %s is not in api/openapi.yaml: %v", req.Method, req.URL.Path, err)
		return v.base.RoundTrip(req)
	}
	in := &openapi3filter.RequestValidationInput{Request: req.Clone(req.Context()), PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	in.Request.Body = io.NopCloser(bytes.NewReader(body))
	reqErr := openapi3filter.ValidateRequest(req.Context(), in)
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := v.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(rb)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		v.t.Errorf("%s %s answered %d, not as api/openapi.yaml says: %v\n%s", req.Method, req.URL, resp.StatusCode, err, rb)
	}
	if reqErr != nil && resp.StatusCode < 400 {
		v.t.Errorf("%s %s: api/openapi.yaml refuses the request (%v) but the server answered %d", req.Method, req.URL, reqErr, resp.StatusCode)
	}
	v.mu.Lock()
	v.checked++
	v.mu.Unlock()
	return resp, nil
}

// apiClient is a client of one node's backend API with a certificate of
// role and ID from the cluster CA (nil role: no certificate).
type apiClient struct {
	t    *testing.T
	base string
	http *http.Client
	spec *specValidator
}

func (c *cluster) apiAddr(id pki.NodeID) string {
	c.t.Helper()
	cfg, err := daemon.LoadConfig(c.nodes[id].config)
	if err != nil {
		c.t.Fatal(err)
	}
	return cfg.Listen.API
}

// apiTLS is a client TLS config for node id's API: a certificate of role
// for principal (none when role is ""), the server a node certificate of
// node id.
func (c *cluster) apiTLS(id pki.NodeID, role pki.Role, principal string) *tls.Config {
	c.t.Helper()
	// Issued at the node's clock, which the API checks validity against.
	certPEM, keyPEM, err := c.ca.Issue(pki.RoleOperator, "unused", c.clock.Now(), time.Hour)
	if role != "" {
		certPEM, keyPEM, err = c.ca.Issue(role, principal, c.clock.Now(), time.Hour)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.secrets.PEM("an API client's key", keyPEM)
	ident, err := pki.LoadIdentity(certPEM, keyPEM, c.caPEM)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := ident.ClientTLS(pki.RoleNode, pki.ExpectNode(id))
	if role == "" {
		cfg.Certificates = nil
	}
	return cfg
}

func (c *cluster) api(id pki.NodeID, role pki.Role, principal string) *apiClient {
	c.t.Helper()
	tr := &http.Transport{TLSClientConfig: c.apiTLS(id, role, principal)}
	c.t.Cleanup(tr.CloseIdleConnections)
	v := newSpecValidator(c.t, tr)
	return &apiClient{t: c.t, base: "https://" + c.apiAddr(id), http: &http.Client{Transport: v, Timeout: time.Minute}, spec: v}
}

// do sends method path with body (a value to encode as JSON, or []byte
// sent as is) and header, and decodes the answer into a generic map.
func (a *apiClient) do(method, path string, body any, header ...string) (int, map[string]any) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		a.t.Fatalf("%s %s: %d, body not JSON: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// wantError requires an error answer with status and code (and field when
// given).
func wantError(t *testing.T, what string, status int, got map[string]any, gotStatus int, code string, field ...string) {
	t.Helper()
	e, _ := got["error"].(map[string]any)
	f, _ := e["field"].(string)
	if gotStatus != status || e == nil || e["code"] != code || (len(field) > 0 && f != field[0]) {
		t.Errorf("%s: %d %v, want %d %s %v", what, gotStatus, got, status, code, field)
	}
}

// createBody is a POST /v1/withdrawals body for amt (units of asset) to
// dest, initiated by op (the backend unless the test says otherwise).
func createBody(t *testing.T, id, wallet, asset, to, amt string, decimals int, op ledgertest.Operator) map[string]any {
	t.Helper()
	return notedBody(t, id, wallet, asset, to, amt, decimals, op, "")
}

// notedBody is createBody with a note, signed with the intent ("" none).
func notedBody(t *testing.T, id, wallet, asset, to, amt string, decimals int, op ledgertest.Operator, note string) map[string]any {
	t.Helper()
	base, err := amount.ParseUnits(amt, decimals)
	if err != nil {
		t.Fatal(err)
	}
	w := policy.Withdrawal{Wallet: wallet, Asset: asset, To: to, Amount: base, Note: note}
	b := map[string]any{"id": id, "wallet": wallet, "asset": asset, "to": to, "amount": amt,
		"initiation": op.Sign(t, clusterID, id, w.IntentHash(id), quorum.Initiate, time.Now().Add(time.Hour))}
	if note != "" {
		b["note"] = note
	}
	return b
}

// TestBackendAPI: the backend API of a real four-node cluster, every
// request and answer checked against api/openapi.yaml. A withdrawal
// created through a follower lands through the leader with the backend's
// initiation byte for byte; idempotency by id; reads on every node;
// pagination and filters; wallets with their address; approvals move it
// to signed, broadcast and confirmed as the API shows; every bad input is
// refused with its code and nothing recorded; only backend certificates
// are served.
func TestBackendAPI(t *testing.T) {
	c := newCluster(t)
	leader := c.leader().ID()
	fol := c.follower().ID()
	var other pki.NodeID // a follower that is not fol
	for _, id := range nodeIDs {
		if id != leader && id != fol {
			other = id
			break
		}
	}
	api := c.api(fol, pki.RoleBackend, "backend")
	dest := c.dests[0].Hex()
	// onLeader is the request as the leader's replica holds it (a refused
	// create leaves none: the leader answered before the API did).
	onLeader := func(id string) *ledger.Request { return c.read(c.leader().ID(), id) }
	// Every node registers the wallet (its key, the leader's orchestrator)
	// within a second of start; the API shows its address from then on.
	for _, id := range nodeIDs {
		a := c.api(id, pki.RoleBackend, "backend")
		c.poll(string(id)+" shows the wallet's address", func() error {
			if st, w := a.do("GET", "/v1/wallets/"+walletID, nil); st != 200 || w["address"] == nil {
				return fmt.Errorf("%d %v", st, w)
			}
			return nil
		})
	}

	t.Run("Wallets", func(t *testing.T) {
		st, got := api.do("GET", "/v1/wallets", nil)
		ws, _ := got["wallets"].([]any)
		if st != 200 || len(ws) != 1 {
			t.Fatalf("GET /v1/wallets: %d %v", st, got)
		}
		st, w := api.do("GET", "/v1/wallets/"+walletID, nil)
		if st != 200 || w["address"] != c.wallet.Hex() || w["chain"] != "eth" || w["network"] != network || w["status"] != "active" ||
			w["threshold"] != 1.0 || len(w["committee"].([]any)) != len(committee) {
			t.Fatalf("GET wallet: %d %v, want address %s", st, w, c.wallet.Hex())
		}
		// Balances from the node's chain adapter, read at the node's
		// clock: the simulated chain's genesis gave the wallet 100 ETH and
		// 5000 TKN, and nothing is spent yet.
		want := map[string]string{"ETH": "100", "TKN": "5000"}
		bals, _ := w["balances"].([]any)
		for _, b := range bals {
			m := b.(map[string]any)
			if at, err := time.Parse(time.RFC3339Nano, m["at"].(string)); err != nil || !at.Equal(c.clock.Now()) {
				t.Errorf("balance %v read at %v, the node's clock says %s", m, m["at"], c.clock.Now())
			}
			if want[m["asset"].(string)] != m["amount"] {
				t.Errorf("balance %v, want %v", m, want)
			}
			delete(want, m["asset"].(string))
		}
		if len(want) != 0 {
			t.Errorf("balances %v lack %v", bals, want)
		}
		st, got = api.do("GET", "/v1/wallets/nope", nil)
		wantError(t, "unknown wallet", 404, got, st, "not_found")
	})

	body := createBody(t, "api-1", walletID, "ETH", dest, "1.5", 18, backend)
	var created map[string]any
	t.Run("CreateThroughFollower", func(t *testing.T) {
		st, got := api.do("POST", "/v1/withdrawals", body, "Idempotency-Key", "api-1")
		if st != 201 || got["status"] != "pending_approval" || got["amount"] != "1.5" || got["amount_base"] != "1500000000000000000" {
			t.Fatalf("create: %d %v", st, got)
		}
		pol := got["policy"].(map[string]any)
		appr := got["approvals"].(map[string]any)
		if pol["rule"] != "eth-hot" || pol["route"] != "hot" || pol["allowed"] != true || appr["required"] != 2.0 || appr["collected"] != 0.0 ||
			got["initiator"] != "backend" || got["fee_cap"].(map[string]any)["asset"] != "ETH" {
			t.Fatalf("create: decision %v approvals %v initiator %v", pol, appr, got["initiator"])
		}
		created = got
		r := onLeader("api-1")
		sent := body["initiation"].(quorum.Approval)
		if r == nil || r.Initiator != "backend" || r.Initiation == nil || !bytes.Equal(r.Initiation.Signature, sent.Signature) ||
			r.Amount.Big().Cmp(new(big.Int).Mul(big.NewInt(15), big.NewInt(1e17))) != 0 || r.To != dest {
			t.Fatalf("the leader's ledger holds %+v", r)
		}
		// Read your write on the same follower, and on another node.
		for _, a := range []*apiClient{api, c.api(other, pki.RoleBackend, "backend")} {
			st, got := a.do("GET", "/v1/withdrawals/api-1", nil)
			if st != 200 || got["payload_hash"] != created["payload_hash"] || got["status"] != "pending_approval" {
				t.Fatalf("GET after create: %d %v", st, got)
			}
		}
	})

	t.Run("Idempotency", func(t *testing.T) {
		// The same withdrawal again (a fresh signature over the same
		// intent, sent to the leader's API): 200 with the stored one.
		again := createBody(t, "api-1", walletID, "ETH", dest, "1.5", 18, backend)
		st, got := c.api(leader, pki.RoleBackend, "backend").do("POST", "/v1/withdrawals", again)
		if st != 200 || got["payload_hash"] != created["payload_hash"] || got["created_at"] != created["created_at"] {
			t.Fatalf("repeat: %d %v", st, got)
		}
		st, got = api.do("POST", "/v1/withdrawals", body, "Idempotency-Key", "api-1")
		if st != 200 || got["payload_hash"] != created["payload_hash"] {
			t.Fatalf("repeat with the key: %d %v", st, got)
		}
		st, got = api.do("POST", "/v1/withdrawals", createBody(t, "api-1", walletID, "ETH", dest, "2", 18, backend))
		wantError(t, "same id, another amount", 409, got, st, "conflict", "amount")
		st, got = api.do("POST", "/v1/withdrawals", createBody(t, "api-1", walletID, "ETH", c.dests[1].Hex(), "1.5", 18, backend))
		wantError(t, "same id, another destination", 409, got, st, "conflict", "to")
		st, got = api.do("POST", "/v1/withdrawals", body, "Idempotency-Key", "api-other")
		wantError(t, "key and id differ", 400, got, st, "idempotency_key", "Idempotency-Key")
		if r := onLeader("api-1"); r.Amount.Big().String() != "1500000000000000000" || r.To != dest || r.Status != ledger.StatusAwaitingApprovals {
			t.Fatalf("after the refused repeats the ledger holds %+v", r)
		}
	})

	t.Run("BadInputsChangeNothing", func(t *testing.T) {
		lower := strings.ToLower(dest)
		broken := []byte(dest)
		for i := 2; i < len(broken); i++ { // flip the case of one letter: the checksum breaks
			if broken[i] >= 'a' && broken[i] <= 'f' {
				broken[i] -= 'a' - 'A'
				break
			} else if broken[i] >= 'A' && broken[i] <= 'F' {
				broken[i] += 'a' - 'A'
				break
			}
		}
		forged := createBody(t, "bad-forged", walletID, "ETH", dest, "1", 18, backend)
		fa := forged["initiation"].(quorum.Approval)
		fa.Signature = slices.Clone(fa.Signature)
		fa.Signature[0] ^= 1
		forged["initiation"] = fa
		otherIntent := createBody(t, "bad-intent", walletID, "ETH", dest, "1", 18, backend)
		otherIntent["amount"] = "2"
		noInit := createBody(t, "bad-noinit", walletID, "ETH", dest, "1", 18, backend)
		delete(noInit, "initiation")
		unknown := createBody(t, "bad-field", walletID, "ETH", dest, "1", 18, backend)
		unknown["memo"] = "x"
		unsigned := createBody(t, "bad-note", walletID, "ETH", dest, "1", 18, backend)
		unsigned["note"] = "not what was signed"
		unprintable := notedBody(t, "bad-note-2", walletID, "ETH", dest, "1", 18, backend, "pay\u202eevil")
		long := notedBody(t, "bad-note-3", walletID, "ETH", dest, "1", 18, backend, strings.Repeat("n", policy.MaxNote+1))
		deep := []byte(`{"id":"bad-deep","initiation":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`)
		past := createBody(t, "bad-past", walletID, "ETH", dest, "1", 18, backend)
		past["expires_at"] = c.clock.Now().Add(-time.Minute).UTC()
		for _, tc := range []struct {
			name   string
			body   any
			status int
			code   string
			field  string
		}{
			{"unknown wallet", createBody(t, "bad-wallet", "nope", "ETH", dest, "1", 18, backend), 400, "unknown_wallet", "wallet"},
			{"checksum-broken address", createBody(t, "bad-sum", walletID, "ETH", string(broken), "1", 18, backend), 400, "invalid_address", "to"},
			{"non-canonical address", createBody(t, "bad-case", walletID, "ETH", lower, "1", 18, backend), 400, "address_not_canonical", "to"},
			{"short address", createBody(t, "bad-short", walletID, "ETH", dest[:20], "1", 18, backend), 400, "invalid_address", "to"},
			{"too many decimals", createBody(t, "bad-prec", walletID, "ETH", dest, "1", 18, backend), 0, "", ""}, // replaced below
			{"zero", createBody(t, "bad-zero", walletID, "ETH", dest, "0", 18, backend), 400, "amount_zero", "amount"},
			{"unknown asset", createBody(t, "bad-asset", walletID, "DOGE", dest, "1", 18, backend), 400, "unknown_asset", "asset"},
			{"BTC from an eth wallet", createBody(t, "bad-btc", walletID, "BTC", dest, "1", 8, backend), 400, "unknown_asset", "asset"},
			{"initiated by a human operator", createBody(t, "bad-human", walletID, "ETH", dest, "1", 18, alice), 403, "initiator_mismatch", "initiation"},
			{"forged initiation", forged, 400, "invalid_initiation", "initiation"},
			{"initiation of another amount", otherIntent, 400, "invalid_initiation", "initiation"},
			{"no initiation", noInit, 400, "invalid", "initiation"},
			{"unknown field", unknown, 400, "malformed", "memo"},
			{"a note the initiation does not sign", unsigned, 400, "invalid_initiation", "initiation"},
			{"an unprintable note", unprintable, 400, "invalid", "note"},
			{"a note over 256 bytes", long, 400, "invalid", "note"},
			{"nested too deep", deep, 400, "malformed", ""},
			{"expiry in the past", past, 400, "invalid", "expires_at"},
			{"not JSON", []byte(`{"id":`), 400, "malformed", ""},
			{"two values", []byte(`{}{}`), 400, "malformed", ""},
		} {
			if tc.name == "too many decimals" {
				b := createBody(t, "bad-prec", walletID, "ETH", dest, "1", 18, backend)
				b["amount"] = "1.0000000000000000001"
				tc.body, tc.status, tc.code, tc.field = b, 400, "amount_too_precise", "amount"
			}
			st, got := api.do("POST", "/v1/withdrawals", tc.body)
			wantError(t, tc.name, tc.status, got, st, tc.code, tc.field)
			if m, ok := tc.body.(map[string]any); ok && onLeader(m["id"].(string)) != nil {
				t.Errorf("%s: the ledger recorded %s", tc.name, m["id"])
			}
		}
		neg := createBody(t, "bad-neg", walletID, "ETH", dest, "1", 18, backend)
		neg["amount"] = "-1"
		st, got := api.do("POST", "/v1/withdrawals", neg)
		wantError(t, "negative", 400, got, st, "amount_negative", "amount")
		huge := createBody(t, "bad-huge", walletID, "ETH", dest, "1", 18, backend)
		huge["amount"] = "1" + strings.Repeat("0", 80)
		st, got = api.do("POST", "/v1/withdrawals", huge)
		wantError(t, "overflow", 400, got, st, "amount_too_large", "amount")
		req, _ := http.NewRequest("POST", api.base+"/v1/withdrawals", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "text/plain")
		resp, err := api.http.Do(req)
		if err != nil || resp.StatusCode != 415 {
			t.Errorf("text/plain: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		for _, id := range []string{"bad-neg", "bad-huge"} {
			if onLeader(id) != nil {
				t.Errorf("the ledger recorded %s", id)
			}
		}
	})

	t.Run("PolicyDenialIsRecorded", func(t *testing.T) {
		stranger := common.HexToAddress("0x00000000000000000000000000000000000000aa").Hex()
		st, got := api.do("POST", "/v1/withdrawals", createBody(t, "api-denied", walletID, "ETH", stranger, "1", 18, backend))
		pol, _ := got["policy"].(map[string]any)
		if st != 201 || got["status"] != "denied" || pol["allowed"] != false || pol["reason"] != string(policy.ReasonNotAllowlisted) {
			t.Fatalf("non-allowlisted destination: %d %v", st, got)
		}
		if r := onLeader("api-denied"); r == nil || r.Status != ledger.StatusRejected {
			t.Fatalf("the ledger holds %+v", r)
		}
		st, got = api.do("POST", "/v1/withdrawals", createBody(t, "api-denied", walletID, "ETH", stranger, "1", 18, backend))
		if st != 200 || got["status"] != "denied" {
			t.Fatalf("denied repeat: %d %v", st, got)
		}
	})

	t.Run("ListPagesAndFilters", func(t *testing.T) {
		st, got := api.do("POST", "/v1/withdrawals", createBody(t, "api-2", walletID, "ETH", c.dests[1].Hex(), "0.25", 18, backend))
		if st != 201 {
			t.Fatalf("create api-2: %d %v", st, got)
		}
		// The list reads the follower's replica as it is: wait until it
		// applied the create (committed on the leader).
		c.poll("api-2 on "+string(fol), func() error {
			if c.read(fol, "api-2") == nil {
				return errors.New("not applied yet")
			}
			return nil
		})
		want := []string{"api-1", "api-denied", "api-2"} // creation order (ConcurrentCreates runs after)
		var ids []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > len(want) {
				t.Fatalf("more pages than withdrawals: %v", ids)
			}
			path := "/v1/withdrawals?limit=1"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			st, got := api.do("GET", path, nil)
			ws, _ := got["withdrawals"].([]any)
			if st != 200 || len(ws) > 1 {
				t.Fatalf("%s: %d %v", path, st, got)
			}
			for _, w := range ws {
				ids = append(ids, w.(map[string]any)["id"].(string))
			}
			next, _ := got["next_cursor"].(string)
			if next == "" {
				break
			}
			cursor = next
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("pages: %v, want %v", ids, want)
		}
		st, got = api.do("GET", "/v1/withdrawals?status=denied&wallet="+walletID, nil)
		if ws := got["withdrawals"].([]any); st != 200 || len(ws) != 1 || ws[0].(map[string]any)["id"] != "api-denied" {
			t.Fatalf("status=denied: %d %v", st, got)
		}
		st, got = api.do("GET", "/v1/withdrawals?wallet=nope", nil)
		if ws := got["withdrawals"].([]any); st != 200 || len(ws) != 0 {
			t.Fatalf("wallet=nope: %d %v", st, got)
		}
		for q, field := range map[string]string{"limit=0": "limit", "limit=101": "limit", "cursor=zz": "cursor", "status=nope": "status", "color=red": "color"} {
			st, got := api.do("GET", "/v1/withdrawals?"+q, nil)
			wantError(t, q, 400, got, st, "invalid", field)
		}
		st, got = api.do("GET", "/v1/withdrawals/nope", nil)
		wantError(t, "unknown withdrawal", 404, got, st, "not_found")
	})

	t.Run("ConcurrentCreates", func(t *testing.T) {
		// Two nodes asked for the same withdrawal at once, and different
		// withdrawals at once through every node: one request each, every
		// answer 200 or 201 with the one stored withdrawal, and the
		// wallet's held nonces stay one run with no gap and no duplicate.
		type answer struct {
			id     string
			status int
			got    map[string]any
		}
		clients := []*apiClient{api, c.api(other, pki.RoleBackend, "backend"), c.api(leader, pki.RoleBackend, "backend")}
		bodies := []map[string]any{
			createBody(t, "api-dup", walletID, "ETH", dest, "0.5", 18, backend),
			createBody(t, "api-dup", walletID, "ETH", dest, "0.5", 18, backend),
			createBody(t, "api-par", walletID, "ETH", c.dests[1].Hex(), "0.75", 18, backend),
		}
		for i := range 6 {
			bodies = append(bodies, createBody(t, fmt.Sprint("api-par-", i), walletID, "ETH", c.dests[i%2].Hex(), "0.01", 18, backend))
		}
		answers := make([]answer, len(bodies))
		var wg sync.WaitGroup
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, got := clients[i%len(clients)].do("POST", "/v1/withdrawals", bodies[i])
				answers[i] = answer{bodies[i]["id"].(string), st, got}
			}()
		}
		wg.Wait()
		for _, a := range answers {
			r := onLeader(a.id)
			if (a.status != 200 && a.status != 201) || r == nil || a.got["payload_hash"] != r.PayloadHash.String() {
				t.Fatalf("%s: %d %v; the ledger holds %+v", a.id, a.status, a.got, r)
			}
		}
		if answers[0].status+answers[1].status != 401 {
			t.Fatalf("want one 201 and one 200 for the duplicate: %v", answers)
		}
		for _, a := range answers[2:] {
			if a.status != 201 {
				t.Fatalf("want 201 for each other create: %v", answers)
			}
		}
		if n0, n1 := onLeader("api-dup").Nonce, onLeader("api-par").Nonce; n0 == nil || n1 == nil || *n0 == *n1 {
			t.Fatalf("nonces %v %v", n0, n1)
		}
		var held []uint64
		_ = c.leader().Store().ReadLocal(func(st *ledger.State) error {
			held = st.HeldNonces(walletID)
			return nil
		})
		for i := 1; i < len(held); i++ {
			if held[i] != held[i-1]+1 {
				t.Fatalf("the wallet's held nonces have a gap: %v", held)
			}
		}
	})

	t.Run("Note", func(t *testing.T) {
		// The note travels signed into the ledger, comes back in the
		// views, and is part of the idempotency comparison.
		note := "payout #7781 for user 42 – Zürich desk"
		st, got := api.do("POST", "/v1/withdrawals", notedBody(t, "api-note", walletID, "ETH", dest, "0.1", 18, backend, note))
		if st != 201 || got["note"] != note {
			t.Fatalf("create with a note: %d %v", st, got)
		}
		if r := onLeader("api-note"); r == nil || r.Note != note || r.Initiation.PayloadHash != r.IntentHash(r.ID) {
			t.Fatalf("the leader's ledger holds %+v", r)
		}
		st, got = c.api(other, pki.RoleBackend, "backend").do("GET", "/v1/withdrawals/api-note", nil)
		if st != 200 || got["note"] != note {
			t.Fatalf("GET on another node: %d %v", st, got)
		}
		st, got = api.do("POST", "/v1/withdrawals", notedBody(t, "api-note", walletID, "ETH", dest, "0.1", 18, backend, note))
		if st != 200 || got["note"] != note {
			t.Fatalf("repeat: %d %v", st, got)
		}
		for name, n := range map[string]string{"another note": "payout #7782", "no note": ""} {
			st, got = api.do("POST", "/v1/withdrawals", notedBody(t, "api-note", walletID, "ETH", dest, "0.1", 18, backend, n))
			wantError(t, name, 409, got, st, "conflict", "note")
		}
		if r := onLeader("api-note"); r.Note != note {
			t.Fatalf("after the refused repeats the ledger holds the note %q", r.Note)
		}
	})

	t.Run("ApprovalsToConfirmed", func(t *testing.T) {
		r := onLeader("api-1")
		c.approve(r, bob)
		c.approve(r, carol)
		var got map[string]any
		c.poll("api-1 signed through the API", func() error {
			var st int
			st, got = api.do("GET", "/v1/withdrawals/api-1", nil)
			if s := got["status"]; st != 200 || (s != "signed" && s != "broadcast" && s != "confirmed") {
				return fmt.Errorf("api-1: %d %v", st, s)
			}
			return nil
		})
		signed, _ := got["signed"].(map[string]any)
		raw, _ := signed["raw_tx"].(string)
		stored := c.waitStatus(leader, "api-1", ledger.StatusSigned)
		if raw != fmt.Sprintf("0x%x", stored.Result.Signed) || signed["tx_hash"] != stored.Result.TxHash {
			t.Fatalf("signed %v, the ledger holds %s", signed, stored.Result.TxHash)
		}
		appr := got["approvals"].(map[string]any)
		var by []string
		for _, a := range appr["by"].([]any) {
			m := a.(map[string]any)
			if m["at"] == nil || m["decision"] != "approve" {
				t.Errorf("approval %v", m)
			}
			by = append(by, m["operator"].(string))
		}
		if !slices.Equal(by, []string{"bob", "carol"}) || appr["collected"] != 2.0 {
			t.Fatalf("approvals %v", appr)
		}
		c.mine(stored)
		c.poll("api-1 confirmed through the API", func() error {
			var st int
			st, got = api.do("GET", "/v1/withdrawals/api-1", nil)
			oc, _ := got["on_chain"].(map[string]any)
			if st != 200 || got["status"] != "confirmed" || oc == nil || oc["confirmations"] == nil || oc["block"] == nil {
				return fmt.Errorf("api-1: %d %v %v", st, got["status"], oc)
			}
			return nil
		})
		// The leader's confirmed, then witnessed by a checkpoint quorum
		// of the node set, each node from its own chain node.
		c.poll("api-1 witnessed through the API", func() error {
			var st int
			st, got = api.do("GET", "/v1/withdrawals/api-1", nil)
			oc, _ := got["on_chain"].(map[string]any)
			by, _ := oc["witnessed_by"].([]any)
			if st != 200 || oc["witnessed"] != true || len(by) < ledger.CheckpointQuorum(len(nodeIDs)) {
				return fmt.Errorf("api-1: %d %v", st, oc)
			}
			return nil
		})
	})

	t.Run("OnlyBackendCertificates", func(t *testing.T) {
		op := c.api(fol, pki.RoleOperator, "alice")
		st, got := op.do("GET", "/v1/withdrawals/api-1", nil)
		wantError(t, "operator certificate", 403, got, st, "forbidden")
		st, got = op.do("POST", "/v1/withdrawals", createBody(t, "bad-op", walletID, "ETH", dest, "1", 18, backend))
		wantError(t, "operator certificate creating", 403, got, st, "forbidden")
		if onLeader("bad-op") != nil {
			t.Error("an operator's create was recorded")
		}
		// A certificate of another principal cannot use the backend's
		// initiation.
		st, got = c.api(fol, pki.RoleBackend, "backend-2").do("POST", "/v1/withdrawals", createBody(t, "bad-principal", walletID, "ETH", dest, "1", 18, backend))
		wantError(t, "another principal", 403, got, st, "initiator_mismatch", "initiation")
		// No certificate, a node certificate, another cluster's CA: the
		// handshake fails, nothing is answered.
		otherCA, err := pki.NewCA("other", time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		oc, ok, err := otherCA.Issue(pki.RoleBackend, "backend", time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		nc, nk, err := c.ca.Issue(pki.RoleNode, "n9", time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for name, cfg := range map[string]*tls.Config{
			"no certificate":   c.apiTLS(fol, "", ""),
			"node certificate": withCert(t, c.apiTLS(fol, pki.RoleBackend, "backend"), nc, nk),
			"another CA":       withCert(t, c.apiTLS(fol, pki.RoleBackend, "backend"), oc, ok),
		} {
			cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
			resp, err := cl.Get("https://" + c.apiAddr(fol) + "/v1/wallets")
			if err == nil {
				resp.Body.Close()
				t.Errorf("%s: answered %d", name, resp.StatusCode)
			} else if !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "certificate") && !errors.Is(err, io.EOF) {
				t.Logf("%s: %v", name, err)
			}
		}
	})

	t.Run("EndpointRoleTable", func(t *testing.T) { walkRoleTable(t, c, fol) })

	t.Run("RequestIDs", func(t *testing.T) { c.checkRequestIDs(api, fol) })

	t.Run("LogsAreJSONWithoutSecrets", func(t *testing.T) {
		// The harness checks every node's whole log for secrets when the
		// test ends; here: the logs are JSON, not empty, and the check
		// would find a secret of this cluster.
		for _, id := range nodeIDs {
			lines := c.logLines(id)
			if len(lines) == 0 {
				t.Errorf("%s logged nothing", id)
			}
			for _, m := range lines {
				if m["time"] == nil || m["level"] == nil || m["msg"] == nil || m["node"] != string(id) {
					t.Fatalf("%s: line %v", id, m)
				}
			}
			pin := c.nodes[id].token.PIN
			if leaks := c.secrets.Find([]byte(`{"msg":"x","pin":"` + pin + `"}`)); len(leaks) != 1 {
				t.Errorf("a planted PIN of %s: found %v", id, leaks)
			}
		}
		if !c.logged(leader, "signed", map[string]any{"request": "api-1"}) && !slices.ContainsFunc(nodeIDs, func(id pki.NodeID) bool {
			return c.logged(id, "signed", map[string]any{"request": "api-1"})
		}) {
			t.Error("no node logged api-1 signed")
		}
	})

	if api.spec.checked < 40 {
		t.Errorf("only %d exchanges checked against api/openapi.yaml", api.spec.checked)
	}
}

// withCert replaces cfg's client certificate.
func withCert(t *testing.T, cfg *tls.Config, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg
}

// walkRoleTable walks docs/api.md's endpoint × role table (rest.Routes)
// against node id: every endpoint with a backend and an operator
// certificate of active principals, a node certificate, a certificate of
// another cluster's CA, none, an expired one and one not yet valid (both
// by the node's clock), a suspended principal and one never enrolled.
// Exactly the rows' allowed roles are served; the others are refused at
// the handshake or answered 401/403 in the one error shape, and the
// refused requests leave the ledger's state hash as it was. A principal
// suspended by a signed change while its connection is open is refused at
// its next request on that connection.
func walkRoleTable(t *testing.T, c *cluster, id pki.NodeID) {
	store := c.nodes[id].node.Store()
	dest := c.dests[0].Hex()
	n := 0
	// A concrete request of each route: known ids; a create body valid
	// but for who sends it.
	request := func(rt rest.Route) (string, any) {
		path := strings.ReplaceAll(rt.Path, "{id}", "api-1")
		if strings.HasPrefix(rt.Path, rest.PathWallets) {
			path = strings.ReplaceAll(rt.Path, "{id}", walletID)
		}
		if rt.Method != http.MethodPost {
			return path, nil
		}
		n++
		return path, createBody(t, fmt.Sprintf("table-%d", n), walletID, "ETH", dest, "0.01", 18, backend)
	}
	// backend-2 holds a connection open across its suspension.
	held := c.api(id, pki.RoleBackend, "backend-2")
	if st, got := held.do("GET", "/v1/wallets", nil); st != 200 {
		t.Fatalf("backend-2 before its suspension: %d %v", st, got)
	}
	ch := quorum.Change{ID: "suspend-backend-2", Kind: quorum.ChangeSuspendOperator, OperatorID: "backend-2"}
	c.submit("alice", ledger.RegistryChange{Change: ch,
		Approvals: []quorum.Approval{alice.Sign(t, clusterID, ch.ID, ch.PayloadHash(), quorum.Approve, time.Now().Add(time.Hour))}})
	c.poll(string(id)+" applied the suspension", func() error {
		return store.ReadLocal(func(st *ledger.State) error {
			if st.Registry.Operators["backend-2"].Status != quorum.StatusSuspended {
				return errors.New("backend-2 is not suspended yet")
			}
			return nil
		})
	})
	var reused bool
	req, _ := http.NewRequest("GET", held.base+"/v1/wallets", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
	resp, err := held.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !reused {
		t.Fatalf("suspended backend-2 on its open connection (reused %v): %d", reused, resp.StatusCode)
	}

	before, err := store.Hash()
	if err != nil {
		t.Fatal(err)
	}
	// Answered in the error shape (validated against api/openapi.yaml).
	answered := map[string]*apiClient{
		"operator alice":                      c.api(id, pki.RoleOperator, "alice"),
		"backend":                             c.api(id, pki.RoleBackend, "backend"),
		"suspended backend-2":                 c.api(id, pki.RoleBackend, "backend-2"),
		"backend never enrolled":              c.api(id, pki.RoleBackend, "backend-9"),
		"operator certificate of the backend": c.api(id, pki.RoleOperator, "backend"),
	}
	// Refused at the handshake.
	otherCA, err := pki.NewCA("other", c.clock.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, role pki.Role, who string, at time.Time) (cert, key []byte) {
		cert, key, err := ca.Issue(role, who, at, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	base := func() *tls.Config { return c.apiTLS(id, pki.RoleBackend, "backend") }
	oc, ok := issue(otherCA, pki.RoleBackend, "backend", c.clock.Now())
	nc, nk := issue(c.ca, pki.RoleNode, string(id), c.clock.Now())
	ec, ek := issue(c.ca, pki.RoleBackend, "backend", c.clock.Now().Add(-3*time.Hour)) // NotAfter 2 h ago by the node's clock
	fc, fk := issue(c.ca, pki.RoleBackend, "backend", c.clock.Now().Add(2*time.Hour))  // NotBefore in an hour
	handshake := map[string]*tls.Config{
		"no certificate":       c.apiTLS(id, "", ""),
		"node certificate":     withCert(t, base(), nc, nk),
		"another cluster's CA": withCert(t, base(), oc, ok),
		"expired certificate":  withCert(t, base(), ec, ek),
		"not yet valid":        withCert(t, base(), fc, fk),
	}
	for _, rt := range rest.Routes() {
		for name, a := range answered {
			if name == "backend" && rt.Allows(pki.RoleBackend) {
				continue // served: below, after the state check
			}
			path, body := request(rt)
			st, got := a.do(rt.Method, path, body)
			want, code := 401, "principal_inactive"
			if name == "operator alice" || name == "backend" {
				role := pki.RoleOperator
				if name == "backend" {
					role = pki.RoleBackend
				}
				if rt.Allows(role) {
					// Allowed: past authentication and authorization
					// (a body meant for another endpoint is the
					// handler's 400, a GET is served), nothing changed.
					if st == 401 || st == 403 {
						t.Errorf("%s: %s %s: %d %v, but the table allows %s", name, rt.Method, path, st, got, role)
					}
					continue
				}
				want, code = 403, "forbidden"
			}
			wantError(t, fmt.Sprintf("%s: %s %s", name, rt.Method, path), want, got, st, code)
		}
		for name, cfg := range handshake {
			path, _ := request(rt)
			cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
			req, _ := http.NewRequest(rt.Method, "https://"+c.apiAddr(id)+path, nil)
			if resp, err := cl.Do(req); err == nil {
				resp.Body.Close()
				t.Errorf("%s: %s %s answered %d", name, rt.Method, path, resp.StatusCode)
			}
			cl.CloseIdleConnections()
		}
	}
	if after, err := store.Hash(); err != nil || after != before {
		t.Fatalf("refused requests changed %s's ledger: %x → %x (%v)", id, before, after, err)
	}
	// The allowed role is served.
	be := c.api(id, pki.RoleBackend, "backend")
	for _, rt := range rest.Routes() {
		if !rt.Allows(pki.RoleBackend) {
			continue
		}
		path, body := request(rt)
		if st, got := be.do(rt.Method, path, body); st != 200 && st != 201 {
			t.Errorf("backend: %s %s: %d %v", rt.Method, path, st, got)
		}
	}
}
