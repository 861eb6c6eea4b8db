package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/custody-dev/custody/amount"
)

// CreateConfig is one request-creation run: withdrawals created through
// the backend API (policy evaluated, the request and its nonce committed
// through raft), never approved. They expire after ExpiresIn, which
// releases their nonces (the ledger frees an unclaimed request's nonce at
// expiry).
type CreateConfig struct {
	Count, Concurrency int
	Dest               Destination
	Amount             string
	ExpiresIn          time.Duration
	// Node, when set (a node's API URL), takes every create instead of
	// spreading them over the nodes.
	Node string
	Run  string
}

// CreateResult is what a creation run measured.
type CreateResult struct {
	Count       int `json:"count"`
	Concurrency int `json:"concurrency"`
	// Created were answered 2xx; Statuses counts their statuses
	// (pending_approval expected).
	Created  int            `json:"created"`
	Statuses map[string]int `json:"statuses"`
	Failed   int            `json:"failed"`
	Errors   []string       `json:"errors,omitempty"`
	Latency  Stats          `json:"latency"`
	// Seconds is the wall time of the run; PerSecond = Created / Seconds.
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"requests_per_s"`
	// Spread says where the creates went: "all nodes" or one node's URL.
	Spread string `json:"sent_to"`
}

// Create runs cfg.Count creates, cfg.Concurrency at a time. The intents
// are signed before the clock starts (the backend's work, not custody's);
// each create's latency is its POST until the answer.
func (t *Target) Create(ctx context.Context, cfg CreateConfig) (CreateResult, error) {
	res := CreateResult{Count: cfg.Count, Concurrency: cfg.Concurrency, Statuses: map[string]int{}, Spread: "all nodes, round robin"}
	if cfg.Count < 1 || cfg.Concurrency < 1 {
		return res, errors.New("bench: count and concurrency are required")
	}
	if cfg.Node != "" {
		res.Spread = cfg.Node
	}
	if cfg.Run == "" {
		cfg.Run = runID()
	}
	base, err := amount.ParseUnits(cfg.Amount, 18)
	if err != nil {
		return res, fmt.Errorf("bench: amount %q: %w", cfg.Amount, err)
	}
	expires := time.Now().Add(cfg.ExpiresIn)
	bodies := make([]map[string]any, cfg.Count)
	for i := range bodies {
		if bodies[i], err = t.createBody(fmt.Sprintf("bench-%s-c%05d", cfg.Run, i+1), cfg.Dest, cfg.Amount, base, expires); err != nil {
			return res, err
		}
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
	)
	start := time.Now()
	pool(cfg.Count, cfg.Concurrency, func(i int) {
		node := cfg.Node
		if node == "" {
			node = t.APIs[i%len(t.APIs)]
		}
		t0 := time.Now()
		v, err := t.post(ctx, node, bodies[i])
		d := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			res.Failed++
			if len(res.Errors) < 5 {
				res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", bodies[i]["id"], err))
			}
			return
		}
		res.Created++
		res.Statuses[v.Status]++
		lats = append(lats, d)
	})
	res.Seconds = time.Since(start).Seconds()
	res.Latency = statsOf(lats)
	if res.Seconds > 0 {
		res.PerSecond = float64(res.Created) / res.Seconds
	}
	return res, nil
}
