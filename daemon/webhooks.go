package daemon

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/custody-dev/custody/api/webhook"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/quorum"
)

// MinWebhookSecret is the shortest webhook secret a node accepts (bytes
// of its file, one trailing newline not counted).
const MinWebhookSecret = 32

func (w *Webhooks) defaults() {
	for _, d := range []struct {
		v   *Duration
		def time.Duration
	}{{&w.Timeout, webhook.DefaultTimeout}, {&w.MaxAge, webhook.DefaultMaxAge},
		{&w.BackoffMin, webhook.DefaultBackoffMin}, {&w.BackoffMax, webhook.DefaultBackoffMax}} {
		if *d.v == 0 {
			*d.v = Duration(d.def)
		}
	}
	if w.MaxAttempts == 0 {
		w.MaxAttempts = webhook.DefaultMaxAttempts
	}
	if w.Concurrency == 0 {
		w.Concurrency = webhook.DefaultConcurrency
	}
}

func (w *Webhooks) validate() error {
	switch {
	case w.Timeout < Duration(time.Second) || w.Timeout > Duration(5*time.Minute):
		return fail("webhooks.timeout", "must be 1s..5m")
	case w.MaxAttempts < 1 || w.MaxAttempts > 1000:
		return fail("webhooks.max_attempts", "must be 1..1000")
	case w.MaxAge < Duration(time.Minute):
		return fail("webhooks.max_age", "must be at least 1m")
	case w.BackoffMin <= 0:
		return fail("webhooks.backoff_min", "must be positive")
	case w.BackoffMax < w.BackoffMin:
		return fail("webhooks.backoff_max", "must be at least webhooks.backoff_min (%s)", time.Duration(w.BackoffMin))
	case w.Concurrency < 1 || w.Concurrency > 64:
		return fail("webhooks.concurrency", "must be 1..64")
	}
	var seen []string
	for i, e := range w.Endpoints {
		at := fmt.Sprintf("webhooks.endpoints[%d]", i)
		if e.Principal == "" || slices.Contains(seen, e.Principal) {
			return fail(at+".principal", "required, one endpoint per backend principal")
		}
		seen = append(seen, e.Principal)
		u, err := url.Parse(e.URL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fail(at+".url", "want an https:// URL")
		}
		if u.User != nil {
			return fail(at+".url", "the URL holds user information; put secrets in files, not the config")
		}
		switch {
		case u.Scheme == "http" && !e.AllowHTTP:
			// Scheme and host only: a receiver's token may sit in the path
			// or query.
			return fail(at+".url", "http://%s is plain http: webhooks go over https (allow_http: true permits http to a loopback host, for development)", u.Host)
		case u.Scheme == "http" && !loopback(u.Host):
			return fail(at+".allow_http", "plain http is allowed to a loopback host only, not %q", u.Hostname())
		case u.Scheme == "https" && e.AllowHTTP:
			return fail(at+".allow_http", "set only with an http:// URL")
		case u.Scheme == "http" && e.CAFile != "":
			return fail(at+".ca_file", "set only with an https:// URL")
		}
		if e.SecretFile == "" {
			return fail(at+".secret_file", "required: the file holding the endpoint's HMAC secret (never the secret itself)")
		}
	}
	return nil
}

// loadWebhooks reads each endpoint's secret and CA file and checks its
// principal is a backend principal of the genesis. Errors name the
// config path and never the secret.
func (n *Node) loadWebhooks() ([]webhook.Endpoint, error) {
	var out []webhook.Endpoint
	for i, e := range n.cfg.Webhooks.Endpoints {
		at := fmt.Sprintf("webhooks.endpoints[%d]", i)
		backend := false
		for _, op := range n.genesis.Operators {
			backend = backend || (op.ID == e.Principal && op.Kind == quorum.KindBackend)
		}
		if !backend {
			return nil, fmt.Errorf("%s.principal: %q is not a backend principal of the genesis", at, e.Principal)
		}
		if err := ownerOnly(e.SecretFile, "a webhook secret"); err != nil {
			return nil, fmt.Errorf("%s.secret_file: %w", at, err)
		}
		secret, err := readSecret(e.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("%s.secret_file: %w", at, err)
		}
		if len(secret) < MinWebhookSecret {
			return nil, fmt.Errorf("%s.secret_file: %s holds %d bytes; a webhook secret has at least %d", at, e.SecretFile, len(secret), MinWebhookSecret)
		}
		ep := webhook.Endpoint{Principal: e.Principal, URL: e.URL, Secret: []byte(secret)}
		if e.CAFile != "" {
			pem, err := readBounded(e.CAFile, 1<<20)
			if err != nil {
				return nil, fmt.Errorf("%s.ca_file: %w", at, err)
			}
			ep.RootCAs = x509.NewCertPool()
			if !ep.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s.ca_file: %s holds no PEM certificate", at, e.CAFile)
			}
		}
		out = append(out, ep)
	}
	return out, nil
}

// startWebhooks runs the webhook dispatcher (it delivers only while this
// node leads) when the config names endpoints.
func (n *Node) startWebhooks(eps []webhook.Endpoint) error {
	if len(eps) == 0 {
		return nil
	}
	w := n.cfg.Webhooks
	// Signatures and ages use the wall clock (Now unset): receivers check
	// the timestamp against theirs.
	d, err := webhook.New(webhook.Config{Ledger: hookLedger{n}, Endpoints: eps, Timeout: time.Duration(w.Timeout),
		MaxAttempts: w.MaxAttempts, MaxAge: time.Duration(w.MaxAge), BackoffMin: time.Duration(w.BackoffMin),
		BackoffMax: time.Duration(w.BackoffMax), Concurrency: w.Concurrency, Counters: n.hookCounters,
		Logger: n.log.With("component", "webhook")})
	if err != nil {
		return err
	}
	n.goLoop("webhooks", d.Run)
	return nil
}

// WebhookCounters are the node's webhook delivery totals (attempts,
// deliveries, retries, events given up), for metrics; they count only
// while the node leads.
func (n *Node) WebhookCounters() *webhook.Counters { return n.hookCounters }

// hookLedger is the node as its webhook dispatcher sees it.
type hookLedger struct{ n *Node }

var _ webhook.Ledger = hookLedger{}

func (h hookLedger) Read(fn func(*ledger.State) error) error { return h.n.store.ReadLocal(fn) }

func (h hookLedger) Leading() bool {
	return h.n.store.IsLeader() && !h.n.draining() && h.n.store.Halted() == nil
}

func (h hookLedger) CatchUp(ctx context.Context) error {
	_, err := h.n.store.ReadIndex(ctx)
	return err
}

// Ack records delivery progress, signed with the node key, as the leader.
func (h hookLedger) Ack(ctx context.Context, acks []ledger.WebhookAck) error {
	var cluster, genesis string
	_ = h.n.store.ReadLocal(func(st *ledger.State) error { cluster, genesis = st.Registry.ClusterID, st.GenesisHash; return nil })
	cmd, err := ledger.SignWebhookDelivered(cluster, genesis, h.n.cfg.NodeID, acks, h.n.signer)
	if err != nil {
		return err
	}
	_, err = h.n.store.Submit(ctx, "node:"+string(h.n.cfg.NodeID), cmd)
	return err
}
