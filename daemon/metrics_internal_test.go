package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/api/webhook"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// failingSealer is an HSM whose every operation fails (fault injection).
type failingSealer struct{}

func (failingSealer) Seal([]byte, []byte) ([]byte, error) { return nil, errors.New("CKR_DEVICE_ERROR") }
func (failingSealer) Open([]byte, []byte) ([]byte, error) { return nil, errors.New("CKR_DEVICE_ERROR") }

// TestNodeMetricsHooks: the counters the node's code paths move, read
// back from the node's own registry (the webhook hook included, which no
// code path calls yet).
func TestNodeMetricsHooks(t *testing.T) {
	hooks := new(webhook.Counters)
	m := newNodeMetrics(hooks)
	m.session("eth", 2*time.Second, nil)
	m.session("btc", time.Second, errors.New("peer timed out"))
	hooks.Delivered.Add(1)
	hooks.Retries.Add(2)
	s := countingSealer{s: failingSealer{}, m: m}
	if _, err := s.Seal([]byte("x"), nil); err == nil {
		t.Fatal("the failing sealer sealed")
	}
	if _, err := s.Open([]byte("x"), nil); err == nil {
		t.Fatal("the failing sealer opened")
	}
	for name, tc := range map[string]struct{ got, want float64 }{
		"signed sessions":      {testutil.ToFloat64(m.sessions.WithLabelValues(outcomeSigned)), 1},
		"failed sessions":      {testutil.ToFloat64(m.sessions.WithLabelValues(outcomeFailed)), 1},
		"hsm seal errors":      {testutil.ToFloat64(m.hsmErrors.WithLabelValues(hsmSeal)), 1},
		"hsm open errors":      {testutil.ToFloat64(m.hsmErrors.WithLabelValues(hsmOpen)), 1},
		"hsm sign errors":      {testutil.ToFloat64(m.hsmErrors.WithLabelValues(hsmSign)), 0},
		"latency series (eth)": {float64(testutil.CollectAndCount(m.signing)), 1}, // a failed session observes no latency
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", name, tc.got, tc.want)
		}
	}
	// Pre-initialised: every label value shows before anything happened.
	if got := testutil.CollectAndCount(m.webhooks); got != 3 {
		t.Errorf("webhook series: %d, want 3 (delivered, retried, failed)", got)
	}
	if err := testutil.CollectAndCompare(m.webhooks, strings.NewReader(`
# HELP custody_webhook_deliveries_total Webhook events this node delivered while it led, by outcome: delivered (a 2xx answer), retried (a failed attempt tried again), failed (given up after the retry limit).
# TYPE custody_webhook_deliveries_total counter
custody_webhook_deliveries_total{outcome="delivered"} 1
custody_webhook_deliveries_total{outcome="failed"} 0
custody_webhook_deliveries_total{outcome="retried"} 2
`)); err != nil {
		t.Errorf("webhook counters: %v", err)
	}
	fresh := newNodeMetrics(new(webhook.Counters))
	if n := testutil.CollectAndCount(fresh.hsmErrors); n != 4 {
		t.Errorf("hsm error series before any error: %d, want 4", n)
	}
	if n := testutil.CollectAndCount(fresh.webhooks); n != 3 {
		t.Errorf("webhook series before any delivery: %d, want 3", n)
	}
}

// TestLineLog: hclog's text lines become records at their level with the
// prefix stripped; a line without one is a warning as is.
func TestLineLog(t *testing.T) {
	var buf bytes.Buffer
	w := lineLog{slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	in := "2026-12-05T00:01:06.859Z [WARN]  raft: heartbeat timeout reached\n" +
		"2026-12-05T00:01:07.000Z [ERROR] raft: failed to contact: id=n2\n\n" +
		"something else\n"
	if n, err := w.Write([]byte(in)); n != len(in) || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m["level"].(string)+" "+m["msg"].(string))
	}
	want := []string{"WARN raft: heartbeat timeout reached", "ERROR raft: failed to contact: id=n2", "WARN something else"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}
