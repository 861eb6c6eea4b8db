package presign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// Peer is how the pool reaches one signer node: a *Presigner in process, an
// RPC client across the cluster later.
type Peer interface {
	Offline(ctx context.Context, wallet string, id ID, subset Subset) error
	Bind(ctx context.Context, id ID, req Request) (*tss.Signature, error)
	Destroy(id ID)
	Sign(ctx context.Context, session tss.SessionID, subset Subset, req Request) (*tss.Signature, error)
}

var _ Peer = (*Presigner)(nil)

// DefaultDepth is the number of ready presignatures kept per (wallet, subset).
const DefaultDepth = 4

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Members reaches every node that may be in a subset.
	Members map[pki.NodeID]Peer
	// Book records offers and claims (the ledger in production).
	Book Book
	// Depth of each (wallet, subset) pool; 0 means DefaultDepth.
	Depth int
	// TTL of a presignature; 0 means DefaultTTL. Use the nodes' TTL.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RefillEvery is the background loop's idle tick; 0 means one second.
	RefillEvery time.Duration
}

// Stats are the pool's metrics.
type Stats struct {
	// Depth is the number of ready presignatures over all tracked pools.
	Depth int
	// Made counts presignatures whose offline phase completed.
	Made int64
	// RefillRate is presignatures made per second of refill work.
	RefillRate float64
	// Hits: requests signed with a presignature; Misses: requests that fell
	// back to full signing because the pool was empty.
	Hits, Misses int64
	// Expired counts presignatures destroyed unused at their TTL.
	Expired int64
	// Aborted counts presignatures destroyed by a failure (offline or online).
	Aborted int64
}

type tracked struct {
	wallet string
	subset Subset
}

// Pool keeps presignatures ready per (wallet, signing subset) and signs
// requests with them, falling back to full signing when a pool is empty.
// Refilling yields to live signing: the background loop starts no offline
// phase while a Sign call runs.
type Pool struct {
	cfg PoolConfig

	mu      sync.Mutex
	tracked map[string]tracked

	live atomic.Int64
	kick chan struct{}

	made, hits, misses, expired, aborted atomic.Int64
	refillNanos                          atomic.Int64
}

// NewPool returns a pool with nothing tracked.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if len(cfg.Members) == 0 || cfg.Book == nil {
		return nil, fmt.Errorf("%w: pool needs Members and Book", ErrBadParams)
	}
	if cfg.Depth <= 0 {
		cfg.Depth = DefaultDepth
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefillEvery <= 0 {
		cfg.RefillEvery = time.Second
	}
	return &Pool{cfg: cfg, tracked: map[string]tracked{}, kick: make(chan struct{}, 1)}, nil
}

// Track makes the background loop keep (wallet, subset) filled.
func (p *Pool) Track(wallet string, subset Subset) {
	s := NewSubset(subset...)
	p.mu.Lock()
	p.tracked[poolKey(wallet, s)] = tracked{wallet, s}
	p.mu.Unlock()
	p.poke()
}

func (p *Pool) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run refills tracked pools until ctx ends, one presignature at a time and
// only while no Sign call is running, and destroys expired presignatures.
func (p *Pool) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.RefillEvery)
	defer t.Stop()
	for {
		if p.step(ctx) {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}

// step is one turn of Run: sweep, then make one presignature unless a live
// Sign call runs. It reports whether it made one.
func (p *Pool) step(ctx context.Context) bool {
	p.Sweep()
	if p.live.Load() > 0 {
		return false
	}
	return p.refillOne(ctx)
}

// refillOne makes one presignature for the emptiest tracked pool below depth.
func (p *Pool) refillOne(ctx context.Context) bool {
	p.mu.Lock()
	var best *tracked
	bestDepth := p.cfg.Depth
	now := p.cfg.Now()
	for _, t := range p.tracked {
		if d := p.cfg.Book.Depth(t.wallet, t.subset, now); d < bestDepth {
			t := t
			best, bestDepth = &t, d
		}
	}
	p.mu.Unlock()
	if best == nil || ctx.Err() != nil {
		return false
	}
	_, err := p.Make(ctx, best.wallet, best.subset)
	return err == nil
}

// Fill makes presignatures for (wallet, subset) until its depth is n.
func (p *Pool) Fill(ctx context.Context, wallet string, subset Subset, n int) error {
	s := NewSubset(subset...)
	for p.cfg.Book.Depth(wallet, s, p.cfg.Now()) < n {
		if _, err := p.Make(ctx, wallet, s); err != nil {
			return err
		}
	}
	return nil
}

// Make runs the offline phase of one new presignature on every member of
// subset and offers it to the book.
func (p *Pool) Make(ctx context.Context, wallet string, subset Subset) (ID, error) {
	s := NewSubset(subset...)
	members, err := p.members(s)
	if err != nil {
		return ID{}, err
	}
	id := tss.NewSessionID()
	expires := p.cfg.Now().Add(p.cfg.TTL)
	start := time.Now()
	_, err = fanOut(members, func(m Peer) (*tss.Signature, error) {
		return nil, m.Offline(ctx, wallet, id, s)
	}, func() { destroyAll(members, id) })
	p.refillNanos.Add(int64(time.Since(start)))
	if err != nil {
		p.aborted.Add(1)
		return ID{}, err
	}
	if err := p.cfg.Book.Offer(wallet, s, id, expires); err != nil {
		destroyAll(members, id)
		return ID{}, err
	}
	p.made.Add(1)
	return id, nil
}

// Outcome says how a request was signed.
type Outcome struct {
	// Presigned is true when a presignature was used.
	Presigned bool
	// ID is the presignature used, or the full-signing session ID.
	ID ID
}

// Sign signs digest for requestID with wallet's subset: with a presignature
// the book assigns, or by full signing when the pool is empty. Every
// member runs its own Check first. A failure after the claim destroys the
// presignature on every member; Sign never retries (the caller decides, and
// the next call gets a fresh presignature).
func (p *Pool) Sign(ctx context.Context, requestID, wallet string, subset Subset, digest [32]byte) (*tss.Signature, Outcome, error) {
	p.live.Add(1)
	defer func() {
		p.live.Add(-1)
		p.poke()
	}()
	s := NewSubset(subset...)
	members, err := p.members(s)
	if err != nil {
		return nil, Outcome{}, err
	}
	req := Request{ID: requestID, Wallet: wallet, Digest: digest}
	id, err := p.cfg.Book.Claim(wallet, s, requestID, p.cfg.Now())
	if errors.Is(err, ErrEmpty) {
		p.misses.Add(1)
		session := tss.NewSessionID()
		sig, err := fanOut(members, func(m Peer) (*tss.Signature, error) {
			return m.Sign(ctx, session, s, req)
		}, func() {})
		return sig, Outcome{ID: session}, err
	}
	if err != nil {
		return nil, Outcome{}, fmt.Errorf("presign: claim: %w", err)
	}
	p.hits.Add(1)
	sig, err := fanOut(members, func(m Peer) (*tss.Signature, error) {
		return m.Bind(ctx, id, req)
	}, func() { destroyAll(members, id) })
	if err != nil {
		p.aborted.Add(1)
	}
	return sig, Outcome{Presigned: true, ID: id}, err
}

// Sweep withdraws expired presignatures from the book and destroys
// them on every member. It returns how many expired.
func (p *Pool) Sweep() int {
	ids := p.cfg.Book.Expire(p.cfg.Now())
	for _, id := range ids {
		for _, m := range p.cfg.Members {
			m.Destroy(id)
		}
	}
	p.expired.Add(int64(len(ids)))
	return len(ids)
}

// Stats returns the pool's metrics.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	depth := 0
	now := p.cfg.Now()
	for _, t := range p.tracked {
		depth += p.cfg.Book.Depth(t.wallet, t.subset, now)
	}
	p.mu.Unlock()
	st := Stats{Depth: depth, Made: p.made.Load(), Hits: p.hits.Load(), Misses: p.misses.Load(),
		Expired: p.expired.Load(), Aborted: p.aborted.Load()}
	if ns := p.refillNanos.Load(); ns > 0 {
		st.RefillRate = float64(st.Made) / (float64(ns) / 1e9)
	}
	return st
}

func (p *Pool) members(s Subset) ([]Peer, error) {
	if len(s) < 2 {
		return nil, fmt.Errorf("%w: subset of %d nodes", ErrBadParams, len(s))
	}
	out := make([]Peer, 0, len(s))
	for _, n := range s {
		m, ok := p.cfg.Members[n]
		if !ok {
			return nil, fmt.Errorf("%w: no member %s", ErrBadParams, n)
		}
		out = append(out, m)
	}
	return out, nil
}

func destroyAll(members []Peer, id ID) {
	for _, m := range members {
		m.Destroy(id)
	}
}

// fanOut runs f on every member at once. On the first error it calls
// onFail (so the others stop waiting), then waits for all and returns the
// first error. On success all signatures must be equal.
func fanOut(members []Peer, f func(Peer) (*tss.Signature, error), onFail func()) (*tss.Signature, error) {
	type res struct {
		sig *tss.Signature
		err error
	}
	ch := make(chan res, len(members))
	for _, m := range members {
		go func() {
			sig, err := f(m)
			ch <- res{sig, err}
		}()
	}
	var first error
	var sig *tss.Signature
	for range members {
		r := <-ch
		if r.err != nil {
			if first == nil {
				first = r.err
				onFail()
			}
			continue
		}
		if sig != nil && r.sig != nil && !bytes.Equal(sig.Bytes65(), r.sig.Bytes65()) && first == nil {
			first = errors.New("presign: members returned different signatures")
			onFail()
		}
		if r.sig != nil {
			sig = r.sig
		}
	}
	if first != nil {
		return nil, first
	}
	return sig, nil
}
