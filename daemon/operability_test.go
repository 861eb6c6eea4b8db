package daemon_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custody-dev/custody/api/requestid"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/pki"
)

// metricsGet sends GET path to node id's metrics listener.
func (c *cluster) metricsGet(id pki.NodeID, path string) (int, []byte) {
	c.t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + c.nodes[id].metrics + path)
	if err != nil {
		c.t.Fatalf("%s %s: %v", id, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// scrape reads node id's /metrics: every sample by its series as exposed
// (name{label="value",...}).
func (c *cluster) scrape(id pki.NodeID) map[string]float64 {
	c.t.Helper()
	st, b := c.metricsGet(id, daemon.PathMetrics)
	if st != http.StatusOK {
		c.t.Fatalf("%s /metrics: %d %s", id, st, b)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			c.t.Fatalf("%s /metrics: line %q", id, line)
		}
		out[line[:i]] = v
	}
	return out
}

// readyz is node id's /readyz answer.
func (c *cluster) readyz(id pki.NodeID) (int, daemon.Readiness) {
	c.t.Helper()
	st, b := c.metricsGet(id, daemon.PathReadyz)
	var rd daemon.Readiness
	if err := json.Unmarshal(b, &rd); err != nil {
		c.t.Fatalf("%s /readyz: %d %q: %v", id, st, b, err)
	}
	return st, rd
}

// waitReadiness polls node id's /readyz until it answers 503 with exactly
// the checks in notReady failing (200 when none), each naming why.
func (c *cluster) waitReadiness(id pki.NodeID, notReady ...string) daemon.Readiness {
	c.t.Helper()
	var rd daemon.Readiness
	c.poll(fmt.Sprintf("%s /readyz not ready for %v only", id, notReady), func() error {
		var st int
		st, rd = c.readyz(id)
		want := http.StatusOK
		if len(notReady) > 0 {
			want = http.StatusServiceUnavailable
		}
		if st != want || rd.Ready != (len(notReady) == 0) {
			return fmt.Errorf("%d %+v", st, rd)
		}
		for _, check := range []string{"node", "ledger", "hsm", "chain.eth", "preparams"} {
			got, failing := rd.Checks[check], false
			for _, nr := range notReady {
				failing = failing || nr == check
			}
			if got == "" || (got == "ok") == failing {
				return fmt.Errorf("check %s: %q (%+v)", check, got, rd)
			}
		}
		return nil
	})
	return rd
}

// sum adds one series' samples over the nodes.
func sum(samples map[pki.NodeID]map[string]float64, series string) float64 {
	var total float64
	for _, m := range samples {
		total += m[series]
	}
	return total
}

// checkMetricsAfterSigning: the metrics of every node once the cluster
// signed, broadcast and confirmed exactly one withdrawal (request): the
// leaders' session counter and latency histogram moved, every replica's
// withdrawal gauges count it confirmed, the raft gauges agree on one
// leader, nothing failed in an HSM, and no label names the request.
func (c *cluster) checkMetricsAfterSigning(request string) {
	t := c.t
	t.Helper()
	samples := map[pki.NodeID]map[string]float64{}
	for _, id := range nodeIDs {
		c.poll(string(id)+"'s metrics count the withdrawal confirmed", func() error {
			m := c.scrape(id)
			if m[`custody_withdrawals{status="confirmed"}`] != 1 || m["custody_pending_approvals"] != 0 {
				return fmt.Errorf("confirmed %v, pending %v", m[`custody_withdrawals{status="confirmed"}`], m["custody_pending_approvals"])
			}
			samples[id] = m
			return nil
		})
		if st, b := c.metricsGet(id, daemon.PathMetrics); st != 200 || strings.Contains(string(b), request) {
			t.Errorf("%s: /metrics %d names the request %s", id, st, request)
		}
	}
	// Sessions are counted by the node that led them (a leader change may
	// split them); one signed withdrawal is one signed session.
	signed := sum(samples, `custody_signing_sessions_total{outcome="signed"}`)
	if signed != 1 || sum(samples, `custody_signing_duration_seconds_count{chain="eth"}`) != signed ||
		sum(samples, `custody_signing_duration_seconds_sum{chain="eth"}`) <= 0 {
		t.Errorf("signed sessions %v, latency count %v sum %v", signed, sum(samples, `custody_signing_duration_seconds_count{chain="eth"}`),
			sum(samples, `custody_signing_duration_seconds_sum{chain="eth"}`))
	}
	leaders := 0.0
	for _, id := range nodeIDs {
		m := samples[id]
		leaders += m[`custody_raft_state{state="leader"}`]
		states := m[`custody_raft_state{state="leader"}`] + m[`custody_raft_state{state="follower"}`] +
			m[`custody_raft_state{state="candidate"}`] + m[`custody_raft_state{state="shutdown"}`]
		term, commit, applied, last, fsm := m["custody_raft_term"], m["custody_raft_commit_index"], m["custody_raft_applied_index"],
			m["custody_raft_last_log_index"], m["custody_ledger_state_index"]
		if states != 1 || term < 1 || applied < 1 || fsm > applied || applied > commit || commit > last ||
			m["custody_raft_has_leader"] != 1 || m["custody_ledger_halted"] != 0 {
			t.Errorf("%s raft: states %v term %v commit %v applied %v last %v state index %v leader %v halted %v",
				id, states, term, commit, applied, last, fsm, m["custody_raft_has_leader"], m["custody_ledger_halted"])
		}
		for _, op := range []string{"seal", "open", "sign", "probe"} {
			if v, ok := m[`custody_hsm_errors_total{op="`+op+`"}`]; !ok || v != 0 {
				t.Errorf("%s: hsm errors (%s) %v (exposed %v)", id, op, v, ok)
			}
		}
		if m["custody_preparams_ready"] < 1 || m["custody_presign_pool_depth"] != 0 ||
			m[`custody_webhook_deliveries_total{outcome="delivered"}`] != 0 || m[`custody_webhook_deliveries_total{outcome="failed"}`] != 0 {
			t.Errorf("%s: preparams %v presign %v webhooks %v/%v", id, m["custody_preparams_ready"], m["custody_presign_pool_depth"],
				m[`custody_webhook_deliveries_total{outcome="delivered"}`], m[`custody_webhook_deliveries_total{outcome="failed"}`])
		}
		if _, ok := m["go_goroutines"]; !ok {
			t.Errorf("%s: no Go runtime metrics", id)
		}
	}
	if leaders > 1 {
		t.Errorf("%v nodes report themselves leader", leaders)
	}
}

// logLines are node id's captured log lines, decoded.
func (c *cluster) logLines(id pki.NodeID) []map[string]any {
	c.t.Helper()
	var out []map[string]any
	for i, line := range c.nodes[id].log.Lines() {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			c.t.Fatalf("%s's log line %d is not JSON: %q", id, i+1, line)
		}
		out = append(out, m)
	}
	return out
}

// logged reports whether node id logged a line with msg whose attributes
// include attrs.
func (c *cluster) logged(id pki.NodeID, msg string, attrs map[string]any) bool {
	c.t.Helper()
	for _, m := range c.logLines(id) {
		if m["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range attrs {
			ok = ok && m[k] == v
		}
		if ok {
			return true
		}
	}
	return false
}

// checkRequestIDs: the backend API keeps a client's well-formed
// X-Request-ID and echoes it, on answers and errors alike; replaces a
// malformed or missing one with a fresh one; and a create sent to a
// follower carries its ID into the follower's log line and, over the node
// RPC, into the leader's.
func (c *cluster) checkRequestIDs(api *apiClient, fol pki.NodeID) {
	t := c.t
	t.Helper()
	send := func(method, path string, body []byte, rid string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(string(body))
		}
		req, err := http.NewRequest(method, api.base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if rid != "" {
			req.Header.Set(requestid.Header, rid)
		}
		resp, err := api.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get(requestid.Header)
	}
	for _, tc := range []struct {
		path, sent string
		status     int
	}{
		{"/v1/wallets", "ops-test.1:a_b-C", 200},
		{"/v1/withdrawals/nope", "ops-404", 404},
	} {
		if st, got := send("GET", tc.path, nil, tc.sent); st != tc.status || got != tc.sent {
			t.Errorf("GET %s with %s: %d, echoed %q", tc.path, tc.sent, st, got)
		}
	}
	seen := map[string]bool{}
	for _, sent := range []string{"", "bad id", strings.Repeat("x", requestid.MaxLen+1), ""} {
		st, got := send("GET", "/v1/wallets", nil, sent)
		if st != 200 || got == sent || len(got) != 32 || !requestid.Valid(got) || seen[got] {
			t.Errorf("GET with %q: %d, got the ID %q", sent, st, got)
		}
		seen[got] = true
	}

	// A create through the follower: its ID in the follower's request
	// line and in the leader's log of the forwarded create.
	body, err := json.Marshal(createBody(t, "api-rid", walletID, "ETH", c.dests[0].Hex(), "0.1", 18, backend))
	if err != nil {
		t.Fatal(err)
	}
	const rid = "ops-create-1"
	if st, got := send("POST", "/v1/withdrawals", body, rid); st != 201 || got != rid {
		t.Fatalf("create: %d, echoed %q", st, got)
	}
	if !c.logged(fol, "backend api: request", map[string]any{requestid.Attr: rid, "method": "POST", "status": 201.0, "principal": "backend"}) {
		t.Errorf("%s logged no request line with the request ID %s", fol, rid)
	}
	var builder pki.NodeID
	for _, id := range nodeIDs {
		if c.logged(id, "backend withdrawal", map[string]any{"request": "api-rid"}) {
			builder = id
			if !c.logged(id, "backend withdrawal", map[string]any{"request": "api-rid", requestid.Attr: rid}) {
				t.Errorf("%s built api-rid without the request ID in its log", id)
			}
		}
	}
	switch builder {
	case "":
		t.Error("no node logged building api-rid")
	case fol:
		t.Logf("%s led when api-rid was created: no forward to check", fol)
	default:
		if !c.logged(builder, "noderpc: forwarded withdrawal recorded", map[string]any{"request": "api-rid", requestid.Attr: rid}) {
			t.Errorf("the leader %s logged the forwarded create without the request ID", builder)
		}
	}
}
