package daemon_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"

	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/quorum"
)

// hookAttempt is one delivery attempt the test's receiver saw.
type hookAttempt struct {
	ID         string
	Withdrawal string
	Seq        uint64
	Status     string
	Accepted   bool
}

// hookReceiver is the backend's webhook endpoint in the test: HTTPS with
// its own certificate (the nodes pin it with ca_file), checking each
// delivery's signature itself (HMAC-SHA256 over "t.body", the timestamp
// within 5 minutes of the wall clock) and its body against
// api/openapi.yaml. It refuses (503) the first two attempts of every event,
// and every attempt for a withdrawal while it is blocked.
type hookReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	dir    string
	secret []byte
	schema *openapi3.Schema

	mu       sync.Mutex
	attempts []hookAttempt
	blocked  map[string]bool
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	newSpecValidator(t, http.DefaultTransport) // loads api/openapi.yaml
	hook := specDoc.Webhooks["withdrawalEvent"]
	if hook == nil || hook.Post == nil {
		t.Fatal("api/openapi.yaml has no withdrawalEvent webhook")
	}
	rc := &hookReceiver{t: t, dir: t.TempDir(), secret: []byte(strings.Repeat("5ec2e7", 8)), blocked: map[string]bool{},
		schema: hook.Post.RequestBody.Value.Content.Get("application/json").Schema.Value}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	writeFile(t, filepath.Join(rc.dir, "hook.secret"), 0o600, append(rc.secret, '\n'))
	writeFile(t, filepath.Join(rc.dir, "hook-ca.pem"), 0o644, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.srv.Certificate().Raw}))
	return rc
}

// config is the webhooks section every node carries: the receiver for the
// harness's backend principal, quick retries.
func (rc *hookReceiver) config() daemon.Webhooks {
	return daemon.Webhooks{Endpoints: []daemon.WebhookEndpoint{{Principal: backend.ID, URL: rc.srv.URL + "/custody-hooks",
		SecretFile: filepath.Join(rc.dir, "hook.secret"), CAFile: filepath.Join(rc.dir, "hook-ca.pem")}},
		BackoffMin: daemon.Duration(20 * time.Millisecond), BackoffMax: daemon.Duration(250 * time.Millisecond), MaxAttempts: 1000}
}

func (rc *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	// The verification recipe of docs/api.md, written out.
	var ts, sig string
	for _, part := range strings.Split(r.Header.Get("Custody-Signature"), ",") {
		if v, ok := strings.CutPrefix(part, "t="); ok {
			ts = v
		} else if v, ok := strings.CutPrefix(part, "v1="); ok {
			sig = v
		}
	}
	m := hmac.New(sha256.New, rc.secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	got, _ := hex.DecodeString(sig)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || !hmac.Equal(got, m.Sum(nil)) || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		rc.t.Errorf("a delivery whose signature does not verify: %q", r.Header.Get("Custody-Signature"))
		http.Error(w, "signature", http.StatusBadRequest)
		return
	}
	var ev struct {
		ID           string `json:"id"`
		WithdrawalID string `json:"withdrawal_id"`
		Sequence     uint64 `json:"sequence"`
		Status       string `json:"status"`
	}
	var doc any
	if err := json.Unmarshal(body, &ev); err != nil || json.Unmarshal(body, &doc) != nil || ev.ID != r.Header.Get("Custody-Event-Id") {
		rc.t.Errorf("a delivery that is not an event: %s", body)
		http.Error(w, "event", http.StatusBadRequest)
		return
	}
	if err := rc.schema.VisitJSON(doc); err != nil {
		rc.t.Errorf("an event api/openapi.yaml refuses: %v\n%s", err, body)
	}
	rc.mu.Lock()
	n := 0
	for _, a := range rc.attempts {
		if a.ID == ev.ID {
			n++
		}
	}
	a := hookAttempt{ID: ev.ID, Withdrawal: ev.WithdrawalID, Seq: ev.Sequence, Status: ev.Status, Accepted: n >= 2 && !rc.blocked[ev.WithdrawalID]}
	rc.attempts = append(rc.attempts, a)
	rc.mu.Unlock()
	if !a.Accepted {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *hookReceiver) block(withdrawal string, on bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.blocked[withdrawal] = on
}

// of is every attempt at the withdrawal's events, in order.
func (rc *hookReceiver) of(withdrawal string) []hookAttempt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []hookAttempt
	for _, a := range rc.attempts {
		if a.Withdrawal == withdrawal {
			out = append(out, a)
		}
	}
	return out
}

// accepted is what the backend processes: the withdrawal's accepted
// events de-duplicated by event ID, in the order of first acceptance.
func (rc *hookReceiver) accepted(withdrawal string) []hookAttempt {
	var out []hookAttempt
	for _, a := range rc.of(withdrawal) {
		if a.Accepted && !slices.ContainsFunc(out, func(b hookAttempt) bool { return b.ID == a.ID }) {
			out = append(out, a)
		}
	}
	return out
}

// waitAccepted polls until the withdrawal's processed events are want
// (their statuses), numbered 1, 2, 3, ... in order.
func (rc *hookReceiver) waitAccepted(t *testing.T, withdrawal string, want ...string) []hookAttempt {
	t.Helper()
	var got []hookAttempt
	ledgertest.Poll(t, withdrawal+"'s events received", func() error {
		got = rc.accepted(withdrawal)
		var st []string
		for _, a := range got {
			st = append(st, a.Status)
		}
		if !slices.Equal(st, want) {
			return fmt.Errorf("received %v, want %v", st, want)
		}
		return nil
	})
	for i, a := range got {
		if a.Seq != uint64(i+1) {
			t.Fatalf("%s: event %d has sequence %d: %+v", withdrawal, i+1, a.Seq, got)
		}
	}
	// In order: no attempt at an event before the one before it was
	// accepted.
	var done uint64
	for _, a := range rc.of(withdrawal) {
		if a.Seq > done+1 {
			t.Fatalf("%s: event %d sent before event %d was accepted: %+v", withdrawal, a.Seq, done+1, rc.of(withdrawal))
		}
		if a.Accepted && a.Seq == done+1 {
			done++
		}
	}
	return got
}

// TestWebhooks: one four-node cluster whose nodes all carry a webhook for
// the backend principal. Every status change of a withdrawal reaches the
// receiver exactly once after de-duplication, in order, signed, and as
// api/openapi.yaml describes it — while the receiver refuses the first
// attempts of every event and all of one withdrawal's for a while, and
// across a leader kill: the new leader resumes from the progress recorded
// in the ledger and does not send again what its predecessor recorded.
// Bad webhook config is refused at start with one line.
func TestWebhooks(t *testing.T) {
	rc := newHookReceiver(t)
	c := newCluster(t, func(cfg *daemon.Config) { cfg.Webhooks = rc.config() })
	// Every node reads the secret: no line of any node's log may hold it
	// (the harness checks at the end).
	c.secrets.String("the webhook secret", string(rc.secret))

	t.Run("EveryChangeOnceInOrderAcrossLeaderKill", func(t *testing.T) {
		// The harness fails through its t: this subtest's, not the parent's.
		c := func() *cluster { sc := *c; sc.t = t; return &sc }()
		// wd-h0: created and rejected; both events delivered and recorded
		// in the ledger before the leader dies.
		h0 := c.withdrawal("wd-h0", c.dests[0], ether(1))
		c.submit(bob.ID, ledger.Approve{RequestID: h0.ID, Approval: bob.Sign(t, clusterID, h0.ID, h0.PayloadHash, quorum.Reject, time.Now().Add(time.Hour))})
		rc.waitAccepted(t, "wd-h0", "pending_approval", "rejected")
		c.poll("wd-h0's events recorded as delivered", func() error {
			if r := c.read(c.leader().ID(), "wd-h0"); r.Webhook == nil || r.Webhook.Through != 2 {
				return fmt.Errorf("progress %+v", r.Webhook)
			}
			return nil
		})

		// wd-h1: the receiver refuses its first event until the leader
		// is gone; the rest of its life happens under the new leader.
		rc.block("wd-h1", true)
		r := c.withdrawal("wd-h1", c.dests[0], ether(1))
		c.approve(r, bob)
		c.poll("wd-h1's first event refused a few times", func() error {
			if n := len(rc.of("wd-h1")); n < 3 {
				return fmt.Errorf("%d attempts", n)
			}
			return nil
		})
		old := c.leader().ID()
		c.stop(old)
		c.approve(r, carol)
		rc.block("wd-h1", false)
		signed := c.waitStatus(c.leader().ID(), "wd-h1", ledger.StatusSigned)
		c.mine(signed)
		got := rc.waitAccepted(t, "wd-h1", "pending_approval", "approved", "signing", "signed", "broadcast", "confirmed")
		ids := map[string]bool{}
		for _, a := range got {
			ids[a.ID] = true
		}
		if len(ids) != len(got) {
			t.Fatalf("event IDs repeat across changes: %+v", got)
		}
		// Recorded before the kill, so never sent again: each wd-h0 event
		// was accepted once.
		for _, a := range rc.accepted("wd-h0") {
			n := 0
			for _, b := range rc.of("wd-h0") {
				if b.ID == a.ID && b.Accepted {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("wd-h0 event %d accepted %d times; the new leader re-sent a recorded event", a.Seq, n)
			}
		}
		c.poll("wd-h1's delivery recorded", func() error {
			if r := c.read(c.leader().ID(), "wd-h1"); r.Webhook == nil || r.Webhook.Through != uint64(len(r.History)) || len(r.Webhook.Failed) != 0 {
				return fmt.Errorf("progress %+v of %d changes", r.Webhook, len(r.History))
			}
			return nil
		})
		// The killed node restarts and finds the same outbox state.
		c.start(old)
		c.poll(string(old)+" holds wd-h1's recorded progress", func() error {
			if r := c.read(old, "wd-h1"); r == nil || r.Webhook == nil || r.Webhook.Through != uint64(len(r.History)) {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		var counters int
		for _, id := range nodeIDs {
			if n := c.nodes[id].node; n != nil {
				counters += int(n.WebhookCounters().Delivered.Load())
			}
		}
		if counters == 0 {
			t.Fatal("no running node counted a delivery")
		}
	})

	t.Run("BadConfigRefusedAtStart", func(t *testing.T) {
		base, err := daemon.LoadConfig(c.nodes["n1"].config)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "short.secret"), 0o600, []byte("tiny-secret-value\n"))
		writeFile(t, filepath.Join(dir, "open.secret"), 0o644, rc.secret)
		for name, tc := range map[string]struct {
			edit func(*daemon.WebhookEndpoint)
			want string
		}{
			"missing secret file":    {func(e *daemon.WebhookEndpoint) { e.SecretFile = filepath.Join(dir, "nope") }, "webhooks.endpoints[0].secret_file: stat " + filepath.Join(dir, "nope") + ": no such file or directory"},
			"unknown principal":      {func(e *daemon.WebhookEndpoint) { e.Principal = "nobody" }, `webhooks.endpoints[0].principal: "nobody" is not a backend principal of the genesis`},
			"a human principal":      {func(e *daemon.WebhookEndpoint) { e.Principal = alice.ID }, `"alice" is not a backend principal`},
			"short secret":           {func(e *daemon.WebhookEndpoint) { e.SecretFile = filepath.Join(dir, "short.secret") }, "holds 17 bytes; a webhook secret has at least 32"},
			"secret readable by all": {func(e *daemon.WebhookEndpoint) { e.SecretFile = filepath.Join(dir, "open.secret") }, "has mode 0644"},
			"CA file without a PEM":  {func(e *daemon.WebhookEndpoint) { e.CAFile = filepath.Join(dir, "short.secret") }, "ca_file: "},
		} {
			t.Run(name, func(t *testing.T) {
				cfg := *base
				cfg.Webhooks.Endpoints = slices.Clone(base.Webhooks.Endpoints)
				tc.edit(&cfg.Webhooks.Endpoints[0])
				n, err := daemon.Start(&cfg, daemon.Options{ETH: c.sim, Now: c.clock.Now})
				var se *daemon.StartError
				if n != nil || !errors.As(err, &se) || se.Step != "webhooks" || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Start: %v, want a webhooks refusal with %q", err, tc.want)
				}
				if msg := err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, "tiny-secret") || strings.Contains(msg, string(rc.secret)) {
					t.Fatalf("not one line, or it shows the secret: %q", msg)
				}
			})
		}
		t.Run("http URL without the opt-out", func(t *testing.T) {
			cfg := *base
			cfg.Webhooks.Endpoints = []daemon.WebhookEndpoint{{Principal: backend.ID, URL: "http://127.0.0.1:1/hooks/tok3n?key=s3cr3t", SecretFile: base.Webhooks.Endpoints[0].SecretFile}}
			b, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "config.yaml")
			writeFile(t, path, 0o644, b)
			_, err = daemon.LoadConfig(path)
			if !errors.Is(err, daemon.ErrInvalid) || !strings.Contains(err.Error(), "webhooks.endpoints[0].url: http://127.0.0.1:1 is plain http") || strings.Contains(err.Error(), "\n") ||
				strings.Contains(err.Error(), "tok3n") || strings.Contains(err.Error(), "s3cr3t") {
				// Scheme and host only: a receiver's token may sit in the
				// path or the query.
				t.Fatalf("LoadConfig: %v", err)
			}
		})
	})
}
