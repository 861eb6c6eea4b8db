package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/webhook"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

const (
	testCluster = "webhook-test"
	testRules   = `version: 1
assets:
  ETH: {decimals: 18}
allowlist:
  cooling_off: 1h
  approvals: 2
  roles: [approver]
lock:
  unlock_delay: 1h
wallets:
  - name: eth-hot
    wallets: [hot]
    asset: ETH
    class: hot
    allowlist_required: false
    limits:
      per_tx: "10"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [approver]}
`
)

var (
	backend = ledgertest.NewOperator("backend", quorum.KindBackend, quorum.RoleInitiator)
	// other is a backend principal with no webhook configured.
	other = ledgertest.NewOperator("other", quorum.KindBackend, quorum.RoleInitiator)
	bob   = ledgertest.NewOperator("bob", quorum.KindHuman, quorum.RoleApprover, quorum.RoleAdmin)
	carol = ledgertest.NewOperator("carol", quorum.KindHuman, quorum.RoleApprover)
)

// nodeLedger is the dispatcher's view of a real one-node raft ledger, as
// the daemon gives it: the local replica, acks signed with the node key
// and submitted, and leadership (which the test can take away, as a
// leader change would).
type nodeLedger struct {
	t       *testing.T
	store   *ledger.Store
	leading atomic.Bool
	nonce   atomic.Uint64
}

func (l *nodeLedger) Read(fn func(*ledger.State) error) error { return l.store.ReadLocal(fn) }
func (l *nodeLedger) Leading() bool                           { return l.leading.Load() && l.store.IsLeader() }
func (l *nodeLedger) CatchUp(ctx context.Context) error {
	_, err := l.store.ReadIndex(ctx)
	return err
}
func (l *nodeLedger) Ack(ctx context.Context, acks []ledger.WebhookAck) error {
	var genesis string
	_ = l.store.ReadLocal(func(st *ledger.State) error { genesis = st.GenesisHash; return nil })
	cmd, err := ledger.SignWebhookDelivered(testCluster, genesis, "n1", acks, ledgertest.NodeKey("n1"))
	if err != nil {
		return err
	}
	_, err = l.store.Submit(ctx, "node:n1", cmd)
	return err
}

var _ webhook.Ledger = (*nodeLedger)(nil)

func newNodeLedger(t *testing.T) *nodeLedger {
	t.Helper()
	c := ledgertest.New(t, 1, nil)
	l := &nodeLedger{t: t, store: c.Nodes[0].Store}
	l.leading.Store(true)
	l.submit("ceremony", ledgertest.GenesisFor([]pki.NodeID{"n1"}, testCluster, 1, testRules, backend, other, bob, carol))
	l.submit("ceremony", ledger.WalletSet{Wallet: ledger.Wallet{ID: "hot", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1", "n2"}, Threshold: 1}})
	return l
}

func (l *nodeLedger) submit(actor string, cmd ledger.Command) *ledger.Request {
	l.t.Helper()
	out, err := l.store.Submit(context.Background(), actor, cmd)
	if err != nil {
		l.t.Fatalf("%s: %v", cmd.Type(), err)
	}
	return out.Request
}

// create records a withdrawal initiated by op (pending_approval).
func (l *nodeLedger) create(id string, op ledgertest.Operator) *ledger.Request {
	l.t.Helper()
	payload := []byte("unsigned-tx:" + id)
	n := l.nonce.Add(1)
	c := ledger.RequestCreate{ID: id, Withdrawal: policy.Withdrawal{Wallet: "hot", Asset: "ETH", Chain: "eth", Network: "devnet", To: "0xdest",
		Amount: amount.FromUint64(1000)}, Payload: payload, PayloadHash: quorum.Hash(sha256.Sum256(payload)), Nonce: &n, ExpiresAt: time.Now().Add(time.Hour)}
	init := op.Sign(l.t, testCluster, id, c.IntentHash(id), quorum.Initiate, time.Now().Add(time.Hour))
	c.Initiation = &init
	return l.submit(op.ID, c)
}

func (l *nodeLedger) answer(r *ledger.Request, op ledgertest.Operator, d quorum.Decision) {
	l.t.Helper()
	l.submit(op.ID, ledger.Approve{RequestID: r.ID, Approval: op.Sign(l.t, testCluster, r.ID, r.PayloadHash, d, time.Now().Add(time.Hour))})
}

// approveAndReject takes r through approved to rejected (an operator's
// rejection before the claim): events 2 and 3.
func (l *nodeLedger) approveAndReject(r *ledger.Request) {
	l.t.Helper()
	l.answer(r, bob, quorum.Approve)
	l.answer(r, carol, quorum.Approve)
	l.answer(r, bob, quorum.Reject)
}

func (l *nodeLedger) progress(id string) ledger.WebhookProgress {
	var p ledger.WebhookProgress
	_ = l.store.ReadLocal(func(st *ledger.State) error {
		if r := st.Requests[id]; r != nil && r.Webhook != nil {
			p = ledger.WebhookProgress{Through: r.Webhook.Through, Failed: slices.Clone(r.Webhook.Failed)}
		}
		return nil
	})
	return p
}

// delivery is one attempt the receiver saw.
type delivery struct {
	ID           string
	WithdrawalID string
	Sequence     uint64
	Status       string
	Answer       int
}

// receiver is a TLS webhook endpoint that checks every signature itself
// (HMAC-SHA256 over "t.body", not the package's Verify) and records each
// attempt. fail decides an attempt's answer (0: 200); hold, when it
// returns a channel, blocks the attempt until the channel closes.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret []byte
	schema *openapi3.Schema

	mu       sync.Mutex
	attempts []delivery
	fail     func(d delivery, n int) int
	hold     func(d delivery) chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, secret: []byte("whsec_dispatch_test_secret_0123456789"), schema: eventSchema(t)}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	ts, sig, ok := strings.Cut(r.Header.Get(webhook.SignatureHeader), ",v1=")
	m := hmac.New(sha256.New, rc.secret)
	m.Write([]byte(strings.TrimPrefix(ts, "t=") + "."))
	m.Write(body)
	if !ok || !strings.HasPrefix(ts, "t=") || sig != hex.EncodeToString(m.Sum(nil)) {
		rc.t.Errorf("a delivery with a bad signature header %q", r.Header.Get(webhook.SignatureHeader))
		http.Error(w, "signature", http.StatusBadRequest)
		return
	}
	var ev webhook.Event
	var doc any
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != r.Header.Get(webhook.EventIDHeader) || ev.Withdrawal.ID != ev.WithdrawalID {
		rc.t.Errorf("a delivery that is not an event: %v %s", err, body)
		http.Error(w, "event", http.StatusBadRequest)
		return
	}
	if err := json.Unmarshal(body, &doc); err != nil || rc.schema.VisitJSON(doc) != nil {
		rc.t.Errorf("an event api/openapi.yaml refuses: %v\n%s", rc.schema.VisitJSON(doc), body)
		http.Error(w, "schema", http.StatusBadRequest)
		return
	}
	d := delivery{ID: ev.ID, WithdrawalID: ev.WithdrawalID, Sequence: ev.Sequence, Status: ev.Status, Answer: http.StatusOK}
	rc.mu.Lock()
	n := 0
	for _, a := range rc.attempts {
		if a.ID == d.ID {
			n++
		}
	}
	if rc.fail != nil {
		if code := rc.fail(d, n); code != 0 {
			d.Answer = code
		}
	}
	var hold chan struct{}
	if rc.hold != nil {
		hold = rc.hold(d)
	}
	answer := d.Answer
	if hold != nil {
		d.Answer = 0 // not answered yet
	}
	i := len(rc.attempts)
	rc.attempts = append(rc.attempts, d)
	rc.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
		rc.mu.Lock()
		rc.attempts[i].Answer = answer
		rc.mu.Unlock()
	}
	w.WriteHeader(answer)
}

// of is every attempt at withdrawal id's events, in order.
func (rc *receiver) of(id string) []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []delivery
	for _, a := range rc.attempts {
		if a.WithdrawalID == id {
			out = append(out, a)
		}
	}
	return out
}

// accepted are withdrawal id's events answered 2xx, de-duplicated by
// event ID, in the order of their first acceptance.
func (rc *receiver) accepted(id string) []delivery {
	var out []delivery
	seen := map[string]bool{}
	for _, a := range rc.of(id) {
		if a.Answer/100 == 2 && !seen[a.ID] {
			seen[a.ID] = true
			out = append(out, a)
		}
	}
	return out
}

// waitAccepted polls until id's accepted events have the statuses want.
func (rc *receiver) waitAccepted(id string, want ...string) []delivery {
	rc.t.Helper()
	var got []delivery
	ledgertest.Poll(rc.t, id+" events accepted", func() error {
		got = rc.accepted(id)
		if len(got) < len(want) {
			return fmt.Errorf("%d of %d events accepted: %+v", len(got), len(want), got)
		}
		return nil
	})
	var st []string
	for i, d := range got {
		st = append(st, d.Status)
		if d.Sequence != uint64(i+1) {
			rc.t.Fatalf("%s: accepted %+v, sequence %d at place %d", id, got, d.Sequence, i+1)
		}
	}
	if !slices.Equal(st, want) {
		rc.t.Fatalf("%s: accepted %v, want %v", id, st, want)
	}
	return got
}

// inOrder checks that no attempt at an event came before the receiver
// accepted (or the dispatcher gave up, given as skipped) every earlier one
// of its withdrawal.
func inOrder(t *testing.T, attempts []delivery, skipped ...uint64) {
	t.Helper()
	var done uint64
	for _, a := range attempts {
		for slices.Contains(skipped, done+1) && a.Sequence > done+1 {
			done++
		}
		if a.Sequence > done+1 {
			t.Fatalf("event %d attempted before event %d was accepted: %+v", a.Sequence, done+1, attempts)
		}
		if a.Answer/100 == 2 && a.Sequence == done+1 {
			done++
		}
	}
}

func (rc *receiver) endpoint() webhook.Endpoint {
	pool := x509.NewCertPool()
	pool.AddCert(rc.srv.Certificate())
	return webhook.Endpoint{Principal: backend.ID, URL: rc.srv.URL + "/hooks", Secret: rc.secret, RootCAs: pool}
}

// TestDispatcher runs the dispatcher against a real one-node ledger and a
// TLS receiver that injects failures: events of a withdrawal arrive in
// order, each retried until the receiver accepts it; an event refused
// past the retry limit is given up, recorded as failed, and the next one
// follows; a receiver that hangs on one withdrawal does not hold up
// another; after leadership is lost and regained, delivery resumes from
// the ledger's recorded progress and does not repeat what it recorded.
func TestDispatcher(t *testing.T) {
	l := newNodeLedger(t)
	rc := newReceiver(t)
	var counters webhook.Counters
	d, err := webhook.New(webhook.Config{Ledger: l, Endpoints: []webhook.Endpoint{rc.endpoint()}, Timeout: 20 * time.Second,
		MaxAttempts: 4, BackoffMin: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond, Concurrency: 2,
		Poll: 20 * time.Millisecond, Counters: &counters})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	t.Run("InOrderWithRetries", func(t *testing.T) {
		rc.mu.Lock()
		rc.fail = func(d delivery, n int) int {
			if d.WithdrawalID == "wd-order" && n < 2 {
				return http.StatusServiceUnavailable
			}
			return 0
		}
		rc.mu.Unlock()
		r := l.create("wd-order", backend)
		l.approveAndReject(r)
		rc.waitAccepted("wd-order", "pending_approval", "approved", "rejected")
		all := rc.of("wd-order")
		inOrder(t, all)
		for _, seq := range []uint64{1, 2, 3} {
			n := 0
			for _, a := range all {
				if a.Sequence == seq {
					n++
				}
			}
			if n < 3 {
				t.Fatalf("event %d: %d attempts, want the two refused ones and the accepted one", seq, n)
			}
		}
		ledgertest.Poll(t, "progress recorded", func() error {
			if p := l.progress("wd-order"); p.Through != 3 || len(p.Failed) != 0 {
				return fmt.Errorf("progress %+v", p)
			}
			return nil
		})
		if counters.Retries.Load() < 6 || counters.Delivered.Load() < 3 {
			t.Fatalf("counters: %d retries, %d delivered", counters.Retries.Load(), counters.Delivered.Load())
		}
	})

	t.Run("GivenUpThenNextEvent", func(t *testing.T) {
		failedBefore := counters.Failed.Load()
		rc.mu.Lock()
		rc.fail = func(d delivery, _ int) int {
			if d.WithdrawalID == "wd-refused" && d.Sequence == 1 {
				return http.StatusInternalServerError
			}
			return 0
		}
		rc.mu.Unlock()
		r := l.create("wd-refused", backend)
		ledgertest.Poll(t, "event 1 given up", func() error {
			if p := l.progress("wd-refused"); p.Through != 1 || !slices.Equal(p.Failed, []uint64{1}) {
				return fmt.Errorf("progress %+v", p)
			}
			return nil
		})
		if n := len(rc.of("wd-refused")); n != 4 {
			t.Fatalf("%d attempts at the refused event, want max_attempts (4)", n)
		}
		l.approveAndReject(r)
		got := rc.accepted("wd-refused")
		ledgertest.Poll(t, "events 2 and 3 after the given-up one", func() error {
			if got = rc.accepted("wd-refused"); len(got) < 2 {
				return fmt.Errorf("accepted %+v", got)
			}
			return nil
		})
		if got[0].Sequence != 2 || got[0].Status != "approved" || got[1].Sequence != 3 || got[1].Status != "rejected" {
			t.Fatalf("accepted %+v", got)
		}
		inOrder(t, rc.of("wd-refused"), 1)
		if counters.Failed.Load() != failedBefore+1 {
			t.Fatalf("failed counter %d, want %d", counters.Failed.Load(), failedBefore+1)
		}
	})

	t.Run("SlowReceiverDoesNotBlockOthers", func(t *testing.T) {
		release := make(chan struct{})
		rc.mu.Lock()
		rc.fail = nil
		rc.hold = func(d delivery) chan struct{} {
			if d.WithdrawalID == "wd-slow" {
				return release
			}
			return nil
		}
		rc.mu.Unlock()
		l.create("wd-slow", backend)
		ledgertest.Poll(t, "the slow receiver holds wd-slow", func() error {
			if len(rc.of("wd-slow")) == 0 {
				return fmt.Errorf("not attempted yet")
			}
			return nil
		})
		r := l.create("wd-fast", backend)
		l.approveAndReject(r)
		rc.waitAccepted("wd-fast", "pending_approval", "approved", "rejected")
		if got := rc.accepted("wd-slow"); len(got) != 0 {
			t.Fatalf("wd-slow accepted %+v while held", got)
		}
		close(release)
		rc.waitAccepted("wd-slow", "pending_approval")
	})

	t.Run("ResumesFromRecordedProgress", func(t *testing.T) {
		rc.mu.Lock()
		rc.hold = nil
		rc.mu.Unlock()
		r := l.create("wd-resume", backend)
		rc.waitAccepted("wd-resume", "pending_approval")
		ledgertest.Poll(t, "event 1 recorded", func() error {
			if p := l.progress("wd-resume"); p.Through != 1 {
				return fmt.Errorf("progress %+v", p)
			}
			return nil
		})
		// Leadership lost: events pile up in the ledger undelivered.
		l.leading.Store(false)
		l.approveAndReject(r)
		o := l.create("wd-other", other) // a principal without a webhook
		l.approveAndReject(o)
		l.leading.Store(true)
		got := rc.waitAccepted("wd-resume", "pending_approval", "approved", "rejected")
		if n := len(rc.of("wd-resume")); n != 3 {
			t.Fatalf("%d attempts for 3 events: the recorded event 1 was delivered again (%+v)", n, rc.of("wd-resume"))
		}
		if got[0].ID != webhook.EventID(testCluster, "wd-resume", 1) {
			t.Fatalf("event 1's ID %s", got[0].ID)
		}
		if a := rc.of("wd-other"); len(a) != 0 {
			t.Fatalf("a principal without a webhook got %+v", a)
		}
	})
}

// TestNewRefusesBadEndpoints: no ledger, a repeated or empty principal, a
// URL that is not http(s), no secret.
func TestNewRefusesBadEndpoints(t *testing.T) {
	l := &nodeLedger{}
	good := webhook.Endpoint{Principal: "backend", URL: "https://hooks.example/x", Secret: []byte("s")}
	for name, cfg := range map[string]webhook.Config{
		"no ledger":          {Endpoints: []webhook.Endpoint{good}},
		"repeated principal": {Ledger: l, Endpoints: []webhook.Endpoint{good, good}},
		"empty principal":    {Ledger: l, Endpoints: []webhook.Endpoint{{URL: good.URL, Secret: good.Secret}}},
		"ftp":                {Ledger: l, Endpoints: []webhook.Endpoint{{Principal: "b", URL: "ftp://hooks.example/", Secret: good.Secret}}},
		"no host":            {Ledger: l, Endpoints: []webhook.Endpoint{{Principal: "b", URL: "https:///x", Secret: good.Secret}}},
		"no secret":          {Ledger: l, Endpoints: []webhook.Endpoint{{Principal: "b", URL: good.URL}}},
		"backoff max < min":  {Ledger: l, BackoffMin: time.Second, BackoffMax: time.Millisecond},
	} {
		if _, err := webhook.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), string(good.Secret)+"\"") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}
