package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/ledger"
)

// Defaults of Config (docs/config.md, webhooks).
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 12
	DefaultMaxAge      = 24 * time.Hour
	DefaultBackoffMin  = time.Second
	DefaultBackoffMax  = 10 * time.Minute
	DefaultConcurrency = 4
	DefaultPoll        = 250 * time.Millisecond
)

const (
	// maxWorkers bounds the withdrawals delivered at once (their
	// goroutines); more wait for a later scan.
	maxWorkers = 1024
	// ackFlush is how long acks wait to be batched into one ledger
	// command; ackTimeout bounds committing one batch.
	ackFlush   = 100 * time.Millisecond
	ackTimeout = 10 * time.Second
	// ackTries: a batch the ledger keeps refusing is dropped after this
	// many tries (its events are re-delivered by the next leader).
	ackTries = 5
	// maxResponse is how much of a receiver's answer is read (and
	// discarded) so the connection can be reused.
	maxResponse = 64 << 10
)

// Ledger is what the dispatcher needs of its node.
type Ledger interface {
	// Read runs fn on this node's replica; fn must not keep the state.
	Read(fn func(*ledger.State) error) error
	// Ack commits a ledger.WebhookDelivered of acks, signed with this
	// node's key.
	Ack(ctx context.Context, acks []ledger.WebhookAck) error
	// Leading reports whether this node leads (and is not draining):
	// only the leader delivers.
	Leading() bool
	// CatchUp returns once the replica holds every write committed before
	// the call (the leader's read index: ledger.Store.ReadIndex). A
	// new leader reads the recorded progress only then, so it does not
	// re-deliver what its predecessor recorded.
	CatchUp(ctx context.Context) error
}

// Endpoint is one backend principal's webhook receiver.
type Endpoint struct {
	// Principal is the backend principal (certificate ID, the operator ID
	// its withdrawals' initiator is).
	Principal string
	// URL is https (http only to a loopback host, for development: the
	// daemon's config decides).
	URL string
	// Secret keys the HMAC. Never logged.
	Secret []byte
	// RootCAs verifies the receiver's certificate; nil: the system roots.
	RootCAs *x509.CertPool
}

// Counters are the dispatcher's running totals (for metrics).
type Counters struct {
	// Attempts is every HTTP request made.
	Attempts atomic.Uint64
	// Delivered is every event a receiver answered with a 2xx.
	Delivered atomic.Uint64
	// Retries is every failed attempt that will be tried again.
	Retries atomic.Uint64
	// Failed is every event given up after the retry limit.
	Failed atomic.Uint64
}

// Config configures a Dispatcher; zero durations and counts take the
// defaults.
type Config struct {
	Ledger    Ledger
	Endpoints []Endpoint
	// Timeout bounds one HTTP attempt, connection and answer included.
	Timeout time.Duration
	// MaxAttempts and MaxAge bound the retries of one event: it is given
	// up after MaxAttempts attempts by this leader, or after an attempt
	// that fails once it is older than MaxAge (from its ledger time).
	MaxAttempts int
	MaxAge      time.Duration
	// BackoffMin and BackoffMax shape the pause between attempts
	// (Backoff).
	BackoffMin, BackoffMax time.Duration
	// Concurrency bounds the requests in flight per endpoint.
	Concurrency int
	// Poll is how often the leader looks for new events in its replica.
	Poll time.Duration
	// Counters (may be nil) receive the totals.
	Counters *Counters
	// Logger (nil discards) never receives a secret, a body or a URL.
	Logger *slog.Logger
	// Now is the clock of signatures and ages (nil: time.Now); Rand the
	// jitter's source (nil: math/rand/v2).
	Now  func() time.Time
	Rand func(int64) int64
}

// Dispatcher delivers webhook events while its node leads.
type Dispatcher struct {
	cfg Config
	eps map[string]*endpoint
	log *slog.Logger
}

type endpoint struct {
	Endpoint
	client *http.Client
	slots  chan struct{}
}

// New checks cfg and builds the endpoints' HTTP clients.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Ledger == nil {
		return nil, errors.New("webhook: a dispatcher needs its ledger")
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.Timeout, DefaultTimeout}, {&cfg.MaxAge, DefaultMaxAge}, {&cfg.BackoffMin, DefaultBackoffMin},
		{&cfg.BackoffMax, DefaultBackoffMax}, {&cfg.Poll, DefaultPoll}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		return nil, fmt.Errorf("webhook: backoff maximum %s below its minimum %s", cfg.BackoffMax, cfg.BackoffMin)
	}
	if cfg.Counters == nil {
		cfg.Counters = new(Counters)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Dispatcher{cfg: cfg, eps: map[string]*endpoint{}, log: cfg.Logger}
	for _, e := range cfg.Endpoints {
		if e.Principal == "" || d.eps[e.Principal] != nil {
			return nil, fmt.Errorf("webhook: endpoint principal %q empty or repeated", e.Principal)
		}
		u, err := url.Parse(e.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("webhook: endpoint of %q: not an http(s) URL", e.Principal)
		}
		if len(e.Secret) == 0 {
			return nil, fmt.Errorf("webhook: endpoint of %q has no secret", e.Principal)
		}
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: e.RootCAs},
			TLSHandshakeTimeout:   cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   cfg.Concurrency,
			IdleConnTimeout:       90 * time.Second,
		}
		d.eps[e.Principal] = &endpoint{Endpoint: e, slots: make(chan struct{}, cfg.Concurrency), client: &http.Client{
			Transport: tr, Timeout: cfg.Timeout,
			// A redirect is an answer, not a delivery: retried.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	}
	return d, nil
}

// Counters are the dispatcher's totals.
func (d *Dispatcher) Counters() *Counters { return d.cfg.Counters }

// Run delivers while the node leads, until ctx ends. Each time the node
// becomes leader it starts from the ledger's recorded progress; when it
// stops leading, delivery stops at once (in-flight attempts are
// cancelled; what they delivered is re-delivered by the next leader).
func (d *Dispatcher) Run(ctx context.Context) {
	tick := time.NewTicker(d.cfg.Poll)
	defer tick.Stop()
	var t *term
	defer func() {
		if t != nil {
			t.stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !d.cfg.Ledger.Leading() {
			if t != nil {
				t.stop()
				t = nil
				d.log.Info("webhook delivery stopped: not the leader")
			}
			continue
		}
		if t == nil {
			cctx, cancel := context.WithTimeout(ctx, ackTimeout)
			err := d.cfg.Ledger.CatchUp(cctx)
			cancel()
			if err != nil {
				d.log.Debug("webhook delivery waits for the replica to catch up", "err", err)
				continue
			}
			t = d.newTerm(ctx)
			d.log.Info("webhook delivery started", "endpoints", len(d.eps))
		}
		if err := t.scan(); err != nil && ctx.Err() == nil {
			d.log.Warn("webhook scan", "err", err)
		}
	}
}

// term is one stretch of leadership: its workers, its acks and what it
// delivered that the ledger may not record yet.
type term struct {
	d      *Dispatcher
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	acks   chan ledger.WebhookAck

	mu     sync.Mutex
	active map[string]bool   // withdrawals with a running worker
	done   map[string]uint64 // entry delivered or given up, per withdrawal, this term
}

func (d *Dispatcher) newTerm(parent context.Context) *term {
	ctx, cancel := context.WithCancel(parent)
	t := &term{d: d, ctx: ctx, cancel: cancel, acks: make(chan ledger.WebhookAck, ledger.MaxWebhookAcks),
		active: map[string]bool{}, done: map[string]uint64{}}
	t.wg.Add(1)
	go t.ackLoop()
	return t
}

func (t *term) stop() {
	t.cancel()
	t.wg.Wait()
}

// through is how far r's events are delivered: the ledger's progress or
// this term's, whichever is further (the caller holds t.mu). Once the
// ledger caught up, the term forgets its own.
func (t *term) through(r *ledger.Request) uint64 {
	p := progress(r)
	if m, ok := t.done[r.ID]; ok {
		if m > p {
			return m
		}
		delete(t.done, r.ID)
	}
	return p
}

// scan starts a worker for each withdrawal of a configured principal with
// an event left to deliver.
func (t *term) scan() error {
	type job struct {
		id string
		ep *endpoint
	}
	var jobs []job
	err := t.d.cfg.Ledger.Read(func(st *ledger.State) error {
		t.mu.Lock()
		defer t.mu.Unlock()
		for id, r := range st.Requests {
			ep := t.d.eps[r.Initiator]
			if ep == nil || t.active[id] {
				continue
			}
			through := t.through(r)
			if through >= uint64(len(r.History)) || next(r, through) == nil {
				continue
			}
			jobs = append(jobs, job{id, ep})
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, j := range jobs {
		if len(t.active) >= maxWorkers {
			break
		}
		t.active[j.id] = true
		t.wg.Add(1)
		go t.worker(j.id, j.ep)
	}
	return nil
}

// next is the first change of r after entry through (nil: none).
func next(r *ledger.Request, through uint64) *Change {
	for _, c := range Changes(r) {
		if c.Entry > through {
			return &c
		}
	}
	return nil
}

// pending is the next event of one withdrawal, rendered.
type pending struct {
	Change
	id   string
	body []byte
}

// nextEvent reads the withdrawal's next undelivered event and renders it
// as the replica shows the withdrawal now.
func (t *term) nextEvent(id string) (*pending, error) {
	var out *pending
	err := t.d.cfg.Ledger.Read(func(st *ledger.State) error {
		r := st.Requests[id]
		if r == nil {
			return nil
		}
		t.mu.Lock()
		through := t.through(r)
		t.mu.Unlock()
		c := next(r, through)
		if c == nil {
			return nil
		}
		ev := Event{ID: EventID(st.Registry.ClusterID, id, c.Seq), Type: "withdrawal." + c.Status, CreatedAt: c.At,
			WithdrawalID: id, Sequence: c.Seq, Status: c.Status, PreviousStatus: c.Previous, Withdrawal: rest.Render(st, r)}
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("webhook: encode event: %w", err)
		}
		out = &pending{Change: *c, id: ev.ID, body: b}
		return nil
	})
	return out, err
}

// worker delivers one withdrawal's events in order until none is left or
// the term ends.
func (t *term) worker(id string, ep *endpoint) {
	defer t.wg.Done()
	defer func() {
		t.mu.Lock()
		delete(t.active, id)
		t.mu.Unlock()
	}()
	cfg := &t.d.cfg
	var entry uint64
	attempts := 0
	for t.ctx.Err() == nil {
		ev, err := t.nextEvent(id)
		if err != nil || ev == nil {
			if err != nil {
				t.d.log.Warn("webhook: read the next event", "withdrawal", id, "err", err)
			}
			return
		}
		if ev.Entry != entry {
			entry, attempts = ev.Entry, 0
		}
		status, err := t.attempt(ep, ev)
		if t.ctx.Err() != nil {
			return // the term ended mid-attempt: the next leader re-delivers
		}
		attempts++
		if err == nil {
			cfg.Counters.Delivered.Add(1)
			t.finish(id, ev, false)
			continue
		}
		age := cfg.Now().Sub(ev.At)
		if attempts >= cfg.MaxAttempts || age > cfg.MaxAge {
			cfg.Counters.Failed.Add(1)
			t.d.log.Warn("webhook: event given up", "principal", ep.Principal, "withdrawal", id, "event", ev.id,
				"sequence", ev.Seq, "attempts", attempts, "age", age.Round(time.Second), "status", status, "err", err)
			t.finish(id, ev, true)
			continue
		}
		cfg.Counters.Retries.Add(1)
		wait := Backoff(attempts, cfg.BackoffMin, cfg.BackoffMax, cfg.Rand)
		t.d.log.Debug("webhook: attempt failed", "principal", ep.Principal, "withdrawal", id, "event", ev.id,
			"attempt", attempts, "status", status, "retry_in", wait, "err", err)
		timer := time.NewTimer(wait)
		select {
		case <-t.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// errStatus is a receiver's answer other than 2xx.
var errStatus = errors.New("webhook: the receiver did not answer 2xx")

// attempt POSTs the event once, signed now, within the endpoint's
// concurrency and the timeout. It returns the HTTP status (0 without an
// answer) and nil for a 2xx.
func (t *term) attempt(ep *endpoint, ev *pending) (int, error) {
	select {
	case ep.slots <- struct{}{}:
	case <-t.ctx.Done():
		return 0, t.ctx.Err()
	}
	defer func() { <-ep.slots }()
	cfg := &t.d.cfg
	cfg.Counters.Attempts.Add(1)
	ctx, cancel := context.WithTimeout(t.ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(ev.body))
	if err != nil {
		return 0, errors.New("webhook: cannot build the request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "custody-webhook/1")
	req.Header.Set(EventIDHeader, ev.id)
	req.Header.Set(SignatureHeader, Sign(ep.Secret, cfg.Now(), ev.body))
	resp, err := ep.client.Do(req)
	if err != nil {
		// The url.Error names the URL, which may carry a receiver's
		// token: log only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, errStatus
	}
	return resp.StatusCode, nil
}

// finish moves the withdrawal past ev in this term and queues its ack.
func (t *term) finish(id string, ev *pending, failed bool) {
	t.mu.Lock()
	t.done[id] = ev.Entry
	t.mu.Unlock()
	select {
	case t.acks <- ledger.WebhookAck{RequestID: id, Entry: ev.Entry, Failed: failed}:
	case <-t.ctx.Done():
	}
}

// ackLoop commits the term's acks in batches.
func (t *term) ackLoop() {
	defer t.wg.Done()
	tick := time.NewTicker(ackFlush)
	defer tick.Stop()
	var batch []ledger.WebhookAck
	tries := 0
	for {
		select {
		case <-t.ctx.Done():
			return
		case a := <-t.acks:
			batch = append(batch, a)
			if len(batch) < ledger.MaxWebhookAcks {
				continue
			}
		case <-tick.C:
		}
		if len(batch) == 0 {
			continue
		}
		n := min(len(batch), ledger.MaxWebhookAcks)
		ctx, cancel := context.WithTimeout(t.ctx, ackTimeout)
		err := t.d.cfg.Ledger.Ack(ctx, batch[:n])
		cancel()
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			if tries++; tries < ackTries {
				t.d.log.Debug("webhook: record delivery", "acks", n, "err", err)
				continue
			}
			t.d.log.Warn("webhook: delivery progress not recorded; the next leader re-delivers", "acks", n, "err", err)
		}
		batch, tries = batch[n:], 0
	}
}
