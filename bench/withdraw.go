package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// WithdrawConfig is one withdrawal run.
type WithdrawConfig struct {
	// Count withdrawals, Concurrency of them in flight.
	Count, Concurrency int
	Dest               Destination
	// Amount of ETH each pays (whole units, "0.0001").
	Amount string
	// Approvers answer each withdrawal in order; the last one's answer is
	// the final approval.
	Approvers []string
	// Poll is how often a withdrawal is read while it is being signed:
	// the resolution of the latency.
	Poll time.Duration
	// Run names the run's request IDs (bench-RUN-w0001); "" picks one.
	Run string
}

// Stats are latencies of one measurement.
type Stats struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// statsOf computes nearest-rank percentiles.
func statsOf(ds []time.Duration) Stats {
	if len(ds) == 0 {
		return Stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Stats{N: len(s), P50: ms(rank(0.50)), P99: ms(rank(0.99)), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

// WithdrawResult is what a withdrawal run measured.
type WithdrawResult struct {
	Count       int `json:"count"`
	Concurrency int `json:"concurrency"`
	Signed      int `json:"signed"`
	Failed      int `json:"failed"`
	// Errors are the first few failures.
	Errors []string `json:"errors,omitempty"`
	// ApprovalToSigned is from the final approval's acknowledgement (its
	// POST answered: committed) to the first read showing the signed
	// transaction.
	ApprovalToSigned Stats `json:"approval_to_signed"`
	// Create and Approve are the API calls' own latencies.
	Create  Stats   `json:"create"`
	Approve Stats   `json:"approve"`
	PollMS  float64 `json:"poll_ms"`
	// Seconds is the wall time from the first create to the last signed
	// withdrawal; PerSecond = Signed / Seconds.
	Seconds   float64  `json:"seconds"`
	PerSecond float64  `json:"withdrawals_per_s"`
	Wallet    string   `json:"wallet"`
	To        string   `json:"to"`
	Amount    string   `json:"amount_eth"`
	Approvers []string `json:"approvers"`
}

// pool calls fn(0..count-1), concurrency calls at a time, and returns
// when all returned.
func pool(count, concurrency int, fn func(i int)) {
	work := make(chan int, count)
	for i := range count {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range work {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// runID is a fresh run name.
func runID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Withdraw runs cfg.Count withdrawals, cfg.Concurrency at a time: each is
// created as the backend, approved by every approver through the operator
// API, and read until it carries the signed transaction. Withdrawal i goes
// to node i mod n for all of its calls (a backend and operators spread
// over the nodes).
func (t *Target) Withdraw(ctx context.Context, cfg WithdrawConfig) (WithdrawResult, error) {
	res := WithdrawResult{Count: cfg.Count, Concurrency: cfg.Concurrency, PollMS: float64(cfg.Poll.Microseconds()) / 1000,
		Wallet: cfg.Dest.Wallet, To: cfg.Dest.To, Amount: cfg.Amount, Approvers: cfg.Approvers}
	if cfg.Count < 1 || cfg.Concurrency < 1 || cfg.Poll <= 0 || len(cfg.Approvers) == 0 {
		return res, errors.New("bench: count, concurrency, poll and approvers are required")
	}
	for _, a := range cfg.Approvers {
		if t.ops[a] == nil {
			return res, fmt.Errorf("bench: approver %q not opened", a)
		}
	}
	if cfg.Run == "" {
		cfg.Run = runID()
	}
	base, err := amount.ParseUnits(cfg.Amount, 18)
	if err != nil {
		return res, fmt.Errorf("bench: amount %q: %w", cfg.Amount, err)
	}
	var (
		mu                      sync.Mutex
		lat, creates, approvals []time.Duration
		last                    time.Time
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.Failed++
		if len(res.Errors) < 5 {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	start := time.Now()
	pool(cfg.Count, cfg.Concurrency, func(i int) {
		if ctx.Err() != nil {
			fail(ctx.Err())
			return
		}
		node := t.APIs[i%len(t.APIs)]
		id := fmt.Sprintf("bench-%s-w%04d", cfg.Run, i+1)
		m, err := t.oneWithdrawal(ctx, node, id, cfg, base)
		if err != nil {
			fail(fmt.Errorf("%s: %w", id, err))
			return
		}
		mu.Lock()
		lat = append(lat, m.signed)
		creates = append(creates, m.create)
		approvals = append(approvals, m.approvals...)
		if m.at.After(last) {
			last = m.at
		}
		res.Signed++
		mu.Unlock()
	})
	res.ApprovalToSigned, res.Create, res.Approve = statsOf(lat), statsOf(creates), statsOf(approvals)
	if res.Signed > 0 {
		res.Seconds = last.Sub(start).Seconds()
		res.PerSecond = float64(res.Signed) / res.Seconds
	}
	return res, nil
}

type measured struct {
	create    time.Duration
	approvals []time.Duration
	signed    time.Duration
	at        time.Time
}

func (t *Target) oneWithdrawal(ctx context.Context, node, id string, cfg WithdrawConfig, base amount.Amount) (measured, error) {
	var m measured
	c0 := time.Now()
	v, err := t.create(ctx, node, id, cfg.Dest, cfg.Amount, base, time.Time{})
	if err != nil {
		return m, err
	}
	m.create = time.Since(c0)
	if v.Status != "pending_approval" {
		return m, fmt.Errorf("created %s (%s %s), want pending_approval", v.Status, v.Policy.Reason, v.Policy.Detail)
	}
	payload, err := quorum.ParseHash(v.PayloadHash)
	if err != nil {
		return m, fmt.Errorf("payload hash: %w", err)
	}
	var acked time.Time
	for _, name := range cfg.Approvers {
		p := t.ops[name]
		a, err := t.sign(p, id, payload, quorum.Approve, time.Now().Add(time.Hour))
		if err != nil {
			return m, err
		}
		a0 := time.Now()
		if err := p.do(ctx, node, "POST", rest.PathRequests+"/"+id+"/approvals", map[string]any{"approval": a}, nil); err != nil {
			return m, fmt.Errorf("%s's approval: %w", name, err)
		}
		acked = time.Now()
		m.approvals = append(m.approvals, acked.Sub(a0))
	}
	tick := time.NewTicker(cfg.Poll)
	defer tick.Stop()
	for {
		var v rest.WithdrawalView
		err := t.backend.do(ctx, node, "GET", rest.PathWithdrawals+"/"+id, nil, &v)
		now := time.Now()
		if err == nil {
			if v.Signed != nil {
				m.signed, m.at = now.Sub(acked), now
				return m, nil
			}
			switch v.Status {
			case "rejected", "denied", "expired", "awaiting_ceremony":
				return m, fmt.Errorf("ended %s without a signature (%s)", v.Status, v.Failure)
			}
		} else if !retryable(err) {
			return m, err
		}
		select {
		case <-ctx.Done():
			return m, fmt.Errorf("not signed: %w (last status %q)", ctx.Err(), v.Status)
		case <-tick.C:
		}
	}
}

// retryable: the node answered 503 (no leader yet, catching up) or 429
// (the principal's rate limit on that node).
func retryable(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status == 503 || ae.Status == 429)
}

// create posts a withdrawal as the backend (createOnce), retrying a 503
// until ctx ends.
func (t *Target) create(ctx context.Context, node, id string, d Destination, amt string, base amount.Amount, expires time.Time) (*rest.WithdrawalView, error) {
	for {
		v, err := t.createOnce(ctx, node, id, d, amt, base, expires)
		if err == nil {
			return v, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("create: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("create: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createOnce posts a withdrawal as the backend (createBody).
func (t *Target) createOnce(ctx context.Context, node, id string, d Destination, amt string, base amount.Amount, expires time.Time) (*rest.WithdrawalView, error) {
	body, err := t.createBody(id, d, amt, base, expires)
	if err != nil {
		return nil, err
	}
	return t.post(ctx, node, body)
}

// createBody is a withdrawal's create body, the backend's device signing
// the intent. A zero expires leaves the node's default expiry.
func (t *Target) createBody(id string, d Destination, amt string, base amount.Amount, expires time.Time) (map[string]any, error) {
	w := policy.Withdrawal{Wallet: d.Wallet, Asset: "ETH", To: d.To, Amount: base}
	init, err := t.sign(t.backend, id, w.IntentHash(id), quorum.Initiate, time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	body := map[string]any{"id": id, "wallet": d.Wallet, "asset": "ETH", "to": d.To, "amount": amt, "initiation": init}
	if !expires.IsZero() {
		body["expires_at"] = expires.UTC().Format(time.RFC3339)
	}
	return body, nil
}

// post sends a create body to node's backend API.
func (t *Target) post(ctx context.Context, node string, body map[string]any) (*rest.WithdrawalView, error) {
	var v rest.WithdrawalView
	if err := t.backend.do(ctx, node, "POST", rest.PathWithdrawals, body, &v); err != nil {
		return nil, err
	}
	return &v, nil
}
