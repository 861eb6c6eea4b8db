package daemon

import (
	"crypto"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/custody-dev/custody/api/webhook"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/tss"
)

// nodeMetrics are one node's Prometheus metrics, in the node's own
// registry (never the global default: a process may run several nodes).
// Every label takes values from a small fixed set (chain, outcome, status,
// kind, operation); request, session and wallet IDs are never labels.
// docs/node.md lists them.
type nodeMetrics struct {
	reg *prometheus.Registry

	signing   *prometheus.HistogramVec // chain
	sessions  *prometheus.CounterVec   // outcome
	tssEvents *prometheus.CounterVec   // kind
	hsmErrors *prometheus.CounterVec   // op
	webhooks  *webhookCollector        // outcome
}

// Label values.
const (
	outcomeSigned    = "signed"
	outcomeFailed    = "failed"
	outcomeDelivered = "delivered"
	outcomeRetried   = "retried"

	hsmSeal  = "seal"
	hsmOpen  = "open"
	hsmSign  = "sign"
	hsmProbe = "probe"
)

// signingBuckets are the signing latency histogram's buckets (seconds):
// one tss-lib signing session takes about 0.35 s in process, a claim over
// the node RPC with its checkpoint attestations a few seconds; the session
// timeout is minutes.
var signingBuckets = []float64{0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120}

func newNodeMetrics(hooks *webhook.Counters) *nodeMetrics {
	m := &nodeMetrics{
		reg: prometheus.NewRegistry(),
		signing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "custody_signing_duration_seconds",
			Help:    "Signing sessions this node led that ended signed: seconds from the claim to the committed result, by chain.",
			Buckets: signingBuckets,
		}, []string{"chain"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custody_signing_sessions_total",
			Help: "Signing sessions this node led (claims and re-claims), by outcome: signed or failed.",
		}, []string{"outcome"}),
		tssEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custody_tss_events_total",
			Help: "Threshold engine audit events on this node, by kind: abort, quarantine, share-retired.",
		}, []string{"kind"}),
		hsmErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custody_hsm_errors_total",
			Help: "Failed operations of this node's HSM token, by operation: seal, open (shares under the KEK), sign (the node key), probe (the readiness check).",
		}, []string{"op"}),
		webhooks: &webhookCollector{c: hooks, desc: prometheus.NewDesc("custody_webhook_deliveries_total",
			"Webhook events this node delivered while it led, by outcome: delivered (a 2xx answer), retried (a failed attempt tried again), failed (given up after the retry limit).",
			[]string{"outcome"}, nil)},
	}
	for _, o := range []string{outcomeSigned, outcomeFailed} {
		m.sessions.WithLabelValues(o)
	}
	for _, k := range []string{tss.EventAbort, tss.EventQuarantine, tss.EventShareRetired} {
		m.tssEvents.WithLabelValues(k)
	}
	for _, op := range []string{hsmSeal, hsmOpen, hsmSign, hsmProbe} {
		m.hsmErrors.WithLabelValues(op)
	}
	m.reg.MustRegister(m.signing, m.sessions, m.tssEvents, m.hsmErrors, m.webhooks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// session records the end of a signing session this node led.
func (m *nodeMetrics) session(chain string, took time.Duration, err error) {
	if err != nil {
		m.sessions.WithLabelValues(outcomeFailed).Inc()
		return
	}
	m.sessions.WithLabelValues(outcomeSigned).Inc()
	m.signing.WithLabelValues(chain).Observe(took.Seconds())
}

// webhookCollector reads the webhook dispatcher's counters at each scrape.
type webhookCollector struct {
	c    *webhook.Counters
	desc *prometheus.Desc
}

func (w *webhookCollector) Describe(ch chan<- *prometheus.Desc) { ch <- w.desc }

func (w *webhookCollector) Collect(ch chan<- prometheus.Metric) {
	for _, o := range []struct {
		outcome string
		v       uint64
	}{{outcomeDelivered, w.c.Delivered.Load()}, {outcomeRetried, w.c.Retries.Load()}, {outcomeFailed, w.c.Failed.Load()}} {
		ch <- prometheus.MustNewConstMetric(w.desc, prometheus.CounterValue, float64(o.v), o.outcome)
	}
}

// hsmError counts a failed HSM operation.
func (m *nodeMetrics) hsmError(op string) { m.hsmErrors.WithLabelValues(op).Inc() }

// countingSealer is the KEK as the share store uses it, counting failures.
type countingSealer struct {
	s shares.Sealer
	m *nodeMetrics
}

func (c countingSealer) Seal(plaintext, aad []byte) ([]byte, error) {
	b, err := c.s.Seal(plaintext, aad)
	if err != nil {
		c.m.hsmError(hsmSeal)
	}
	return b, err
}

func (c countingSealer) Open(blob, aad []byte) ([]byte, error) {
	b, err := c.s.Open(blob, aad)
	if err != nil {
		c.m.hsmError(hsmOpen)
	}
	return b, err
}

// countingSigner is a node key in the HSM token, counting failed
// signatures.
type countingSigner struct {
	crypto.Signer
	m *nodeMetrics
}

func (c countingSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := c.Signer.Sign(rand, digest, opts)
	if err != nil {
		c.m.hsmError(hsmSign)
	}
	return sig, err
}

// Statuses the withdrawals gauge always reports (0 when none): every
// status of a ledger request.
var requestStatuses = []ledger.Status{
	ledger.StatusAwaitingApprovals, ledger.StatusApproved, ledger.StatusClaimed, ledger.StatusSigned, ledger.StatusFailed,
	ledger.StatusExpired, ledger.StatusRejected, ledger.StatusExported, ledger.StatusImported, ledger.StatusBroadcast,
	ledger.StatusConfirmed, ledger.StatusReverted, ledger.StatusDropped, ledger.StatusReplaced,
}

// raftStates are the values of custody_raft_state's state label.
var raftStates = []string{"follower", "candidate", "leader", "shutdown"}

// stateCollector reads the node's ledger, raft and pools at scrape time:
// gauges of what is, rather than counters of what happened.
type stateCollector struct {
	n *Node

	withdrawals, pending, raftState, term, commit, applied, lastLog, stateIndex,
	hasLeader, halted, preparams, presign *prometheus.Desc
}

func newStateCollector(n *Node) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateCollector{n: n,
		withdrawals: d("custody_withdrawals", "Withdrawal requests in this node's replica of the ledger, by ledger status.", "status"),
		pending:     d("custody_pending_approvals", "Withdrawal requests waiting for operator approvals (ledger status awaiting_approvals)."),
		raftState:   d("custody_raft_state", "This node's raft state: 1 for the current one of follower, candidate, leader, shutdown.", "state"),
		term:        d("custody_raft_term", "The raft term this node is in."),
		commit:      d("custody_raft_commit_index", "The highest raft log index this node knows committed."),
		applied:     d("custody_raft_applied_index", "The highest raft log index applied to this node's ledger."),
		lastLog:     d("custody_raft_last_log_index", "The last index in this node's raft log."),
		stateIndex:  d("custody_ledger_state_index", "The log index of the last command this node's ledger state machine applied."),
		hasLeader:   d("custody_raft_has_leader", "1 when this node knows a leader."),
		halted:      d("custody_ledger_halted", "1 when this node's ledger halted (an unknown command or a refused snapshot) and needs a person."),
		preparams:   d("custody_preparams_ready", "tss-lib pre-params ready for keygens and reshares on this node."),
		presign:     d("custody_presign_pool_depth", "Presignatures ready on this node (0: the node runs no presignature pool yet)."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.withdrawals, c.pending, c.raftState, c.term, c.commit, c.applied, c.lastLog,
		c.stateIndex, c.hasLeader, c.halted, c.preparams, c.presign} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	n := c.n
	if n.pool != nil {
		gauge(c.preparams, float64(n.pool.Len()))
	}
	gauge(c.presign, 0)
	s := n.store
	if s == nil {
		return
	}
	stats := s.RaftStats()
	num := func(key string) float64 {
		v, _ := strconv.ParseUint(stats[key], 10, 64)
		return float64(v)
	}
	gauge(c.term, num("term"))
	gauge(c.commit, num("commit_index"))
	gauge(c.applied, num("applied_index"))
	gauge(c.lastLog, num("last_log_index"))
	gauge(c.stateIndex, float64(s.StateIndex()))
	state := strings.ToLower(s.RaftState().String())
	for _, st := range raftStates {
		gauge(c.raftState, b2f(st == state), st)
	}
	leader, _ := s.Leader()
	gauge(c.hasLeader, b2f(leader != ""))
	gauge(c.halted, b2f(s.Halted() != nil))
	counts := map[ledger.Status]int{}
	_ = s.ReadLocal(func(st *ledger.State) error {
		for _, r := range st.Requests {
			counts[r.Status]++
		}
		return nil
	})
	gauge(c.pending, float64(counts[ledger.StatusAwaitingApprovals]))
	for _, st := range requestStatuses {
		gauge(c.withdrawals, float64(counts[st]), string(st))
		delete(counts, st)
	}
	for st, k := range counts { // a status added to the ledger after this list
		gauge(c.withdrawals, float64(k), string(st))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
