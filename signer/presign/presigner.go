package presign

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// ID names one presignature. It is also the tss session ID of the signing
// run behind it, so it is fresh, random and never reused.
type ID = tss.SessionID

// DefaultTTL is how long an unused presignature lives.
const DefaultTTL = 10 * time.Minute

// DefaultOfflineTimeout bounds the offline phase (rounds 1-4).
const DefaultOfflineTimeout = 2 * time.Minute

// Subset is the sorted set of nodes that sign together; a presignature is
// made for exactly one subset and only that subset can finish it.
type Subset []pki.NodeID

// NewSubset returns the nodes sorted and without duplicates.
func NewSubset(nodes ...pki.NodeID) Subset {
	s := append(Subset(nil), nodes...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	out := s[:0]
	for i, n := range s {
		if i == 0 || n != s[i-1] {
			out = append(out, n)
		}
	}
	return out
}

// Key is a map key for the subset.
func (s Subset) Key() string {
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = string(n)
	}
	return strings.Join(parts, ",")
}

// Request is what a node checks before it signs: the request the ledger
// approved and the digest the pool asks it to sign for that request.
type Request struct {
	ID     string
	Wallet string
	Digest [32]byte
}

// CheckFunc is the caller's approval check: the same checks a node makes
// before full signing (approvals, policy, recomputed sighash equals Digest,
// high-water mark). An error refuses the digest.
type CheckFunc func(ctx context.Context, req Request) error

// PresignerConfig configures a Presigner.
type PresignerConfig struct {
	// Engine runs the sessions; its Transport must be Hold.
	Engine *tss.Engine
	// Hold is the transport wrapper of Engine.
	Hold *Hold
	// Share returns this node's share of a wallet.
	Share func(wallet string) (*tss.Share, error)
	// Check approves a digest for a request (required).
	Check CheckFunc
	// TTL of an unused presignature; 0 means DefaultTTL.
	TTL time.Duration
	// OfflineTimeout bounds rounds 1-4; 0 means DefaultOfflineTimeout.
	OfflineTimeout time.Duration
	// Now is the clock (injected in tests); nil means time.Now.
	Now func() time.Time
}

type presigState int

const (
	stOffline presigState = iota
	stReady
	stBound
	stDestroyed
)

// presig is one held signing session on this node.
type presig struct {
	id      ID
	wallet  string
	subset  Subset
	m       *big.Int // tss-lib's message: placeholder until bound
	expires time.Time
	state   presigState
	want    int            // recipients of our round-4 broadcast
	sends   []func() error // our held round-4 envelopes
	ready   chan struct{}  // closed when all of them are held
	done    chan struct{}  // closed when the session ended
	sig     *tss.Signature
	err     error
	cancel  context.CancelCauseFunc
}

// usedRecord remembers that a presignature ID was bound (to digest) or
// destroyed unbound, so that it is never bound afterwards.
type usedRecord struct {
	bound  bool
	digest [32]byte
	at     time.Time
}

// Presigner is one signer node's side of the presignature pool: it runs the
// offline phase of presignatures, binds each to at most one digest, and
// finishes the signature. State lives in memory only; a new Presigner (a restart)
// has no presignatures, and the tss engine never resumes a session ID.
type Presigner struct {
	cfg PresignerConfig

	running atomic.Int64 // sessions (goroutines) still running

	mu      sync.Mutex
	presigs map[ID]*presig
	used    map[ID]usedRecord
}

// NewPresigner returns a Presigner with an empty set of presignatures.
func NewPresigner(cfg PresignerConfig) (*Presigner, error) {
	if cfg.Engine == nil || cfg.Hold == nil || cfg.Share == nil || cfg.Check == nil {
		return nil, fmt.Errorf("%w: node needs Engine, Hold, Share and Check", ErrBadParams)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.OfflineTimeout <= 0 {
		cfg.OfflineTimeout = DefaultOfflineTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Presigner{cfg: cfg, presigs: map[ID]*presig{}, used: map[ID]usedRecord{}}, nil
}

// Self is the node's identity.
func (n *Presigner) Self() pki.NodeID { return n.cfg.Engine.Self() }

// placeholder is the message presignatures start with: 1 passes tss-lib's
// round-1 range check and is never signed (round 5 cannot start before the
// real digest replaced it).
var placeholder = big.NewInt(1)

// Offline runs rounds 1-4 of presignature id for wallet with subset and
// returns once this node holds its own round-4 broadcast (or on failure).
// Every member of the subset must call it with the same id.
func (n *Presigner) Offline(ctx context.Context, wallet string, id ID, subset Subset) error {
	share, err := n.cfg.Share(wallet)
	if err != nil {
		return fmt.Errorf("presign: share of %s: %w", wallet, err)
	}
	now := n.cfg.Now()
	p := &presig{
		id: id, wallet: wallet, subset: append(Subset(nil), subset...),
		m: new(big.Int).Set(placeholder), expires: now.Add(n.cfg.TTL),
		want: len(subset) - 1, ready: make(chan struct{}), done: make(chan struct{}),
	}
	// The session context has no deadline: ending a held session by deadline
	// would charge the peers whose round 4 we hold ourselves to the failure
	// budget. Destroy cancels it with tss.ErrWithdrawn (nobody blamed); only
	// a stalled offline phase is cancelled as a timeout that blames.
	sctx, cancel := context.WithCancelCause(context.Background())
	p.cancel = cancel
	n.mu.Lock()
	if _, ok := n.presigs[id]; ok {
		cancel(nil)
		n.mu.Unlock()
		return fmt.Errorf("%w: presignature %s exists", ErrBadParams, id)
	}
	if _, ok := n.used[id]; ok {
		n.mu.Unlock()
		cancel(nil)
		return fmt.Errorf("%w: presignature %s was used", ErrBadParams, id)
	}
	n.presigs[id] = p
	// Hold before the session starts, so no round-4 envelope slips through.
	n.cfg.Hold.hold(id)
	n.mu.Unlock()
	n.running.Add(1)
	go func() {
		defer n.running.Add(-1)
		defer cancel(nil)
		sig, err := n.cfg.Engine.SignLateBound(sctx, share, tss.SignParams{
			Session: id, Signers: p.subset, Hook: n.hook(p),
		}, p.m)
		n.mu.Lock()
		p.sig, p.err = sig, err
		if _, ok := n.used[id]; !ok {
			// Ended unbound (for example a peer destroyed its part): it can
			// never be bound here either.
			n.used[id] = usedRecord{at: n.cfg.Now()}
		}
		if p.state != stBound {
			p.state = stDestroyed
			p.sends = nil
		}
		n.forgetLocked(p)
		n.cfg.Hold.drop(id)
		n.mu.Unlock()
		close(p.done)
	}()

	timer := time.NewTimer(n.cfg.OfflineTimeout)
	defer timer.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.done:
		if p.err == nil {
			p.err = errors.New("presign: session ended in the offline phase")
		}
		return fmt.Errorf("presign: offline phase of %s: %w", id, p.err)
	case <-timer.C:
		// Peers that did not finish rounds 1-4 in time are rightly blamed.
		cancel(nil)
		<-p.done
		return fmt.Errorf("presign: offline phase of %s: %w", id, p.err)
	case <-ctx.Done():
		n.Destroy(id)
		return fmt.Errorf("presign: offline phase of %s: %w", id, ctx.Err())
	}
}

// hook holds our round-4 broadcast until the presignature is bound; every
// other envelope leaves at once.
func (n *Presigner) hook(p *presig) tss.OutboundHook {
	return func(env *tss.Envelope, send func() error) error {
		if env.Type != tss.SignRound4Type {
			return send()
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		switch p.state {
		case stOffline:
			p.sends = append(p.sends, send)
			if len(p.sends) == p.want {
				p.state = stReady
				close(p.ready)
			}
			return nil
		case stBound:
			return send()
		default:
			return nil // destroyed: it never leaves
		}
	}
}

// Bound reports the digest presignature id was bound to on this node.
func (n *Presigner) Bound(id ID) ([32]byte, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.used[id]
	return r.digest, ok && r.bound
}

// Running counts this node's presignature sessions still running.
func (n *Presigner) Running() int { return int(n.running.Load()) }

// Ready lists the presignatures this node holds ready to bind.
func (n *Presigner) Ready() []ID {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []ID
	for id, p := range n.presigs {
		if p.state == stReady {
			out = append(out, id)
		}
	}
	return out
}

// Bind binds presignature id to req.Digest and finishes the signature. In
// order: the digest must be below N (else no state change); (id, digest) is
// recorded, so one of any number of concurrent binders wins; the caller's
// Check must approve the digest for the request; only then the digest is
// written into the session's message and the held round-4 envelopes (ours
// and the peers') are released. A second Bind of id, with
// any digest, returns *AlreadyBoundError. A refused check, a failure or ctx
// ending after the binding destroys the presignature.
func (n *Presigner) Bind(ctx context.Context, id ID, req Request) (*tss.Signature, error) {
	if new(big.Int).SetBytes(req.Digest[:]).Cmp(btcec.S256().N) >= 0 {
		return nil, ErrDigestRange
	}
	n.mu.Lock()
	if r, ok := n.used[id]; ok {
		n.mu.Unlock()
		if !r.bound {
			return nil, fmt.Errorf("%w: %s", ErrDestroyed, id)
		}
		return nil, &AlreadyBoundError{ID: id, Digest: r.digest}
	}
	p, ok := n.presigs[id]
	if !ok {
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	if !n.cfg.Now().Before(p.expires) {
		n.destroyLocked(p)
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrExpired, id)
	}
	if p.state != stReady {
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotReady, id)
	}
	if req.Wallet != p.wallet {
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: presignature %s is for wallet %s", ErrBadParams, id, p.wallet)
	}
	// Claim the presignature before the (possibly slow) check runs, so that
	// concurrent binders lose at once and only one ever reaches the check.
	p.state = stBound
	n.used[id] = usedRecord{bound: true, digest: req.Digest, at: n.cfg.Now()}
	n.mu.Unlock()

	if err := n.cfg.Check(ctx, req); err != nil {
		n.Destroy(id)
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	n.mu.Lock()
	if p.state != stBound {
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrDestroyed, id)
	}
	// No tss-lib code reads m now: round 5 needs every round-4 message, and
	// all of them are still held.
	p.m.SetBytes(req.Digest[:])
	sends := p.sends
	p.sends = nil
	n.mu.Unlock()

	n.cfg.Hold.release(id)
	for _, send := range sends {
		if err := send(); err != nil {
			n.Destroy(id)
			return nil, fmt.Errorf("presign: release round 4 of %s: %w", id, err)
		}
	}
	select {
	case <-p.done:
		if p.err != nil {
			return nil, fmt.Errorf("presign: online phase of %s: %w", id, p.err)
		}
		return p.sig, nil
	case <-ctx.Done():
		n.Destroy(id)
		return nil, fmt.Errorf("presign: online phase of %s: %w: %w", id, ErrDestroyed, ctx.Err())
	}
}

// Destroy ends presignature id on this node; it can never be bound again
// (a binding already recorded stays recorded). Destroying an unknown id is
// a no-op.
func (n *Presigner) Destroy(id ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.presigs[id]; ok {
		n.destroyLocked(p)
	}
}

func (n *Presigner) destroyLocked(p *presig) {
	if p.state == stDestroyed {
		return
	}
	if _, ok := n.used[p.id]; !ok {
		// Record it as used so that nothing can bind it later either.
		n.used[p.id] = usedRecord{at: n.cfg.Now()}
	}
	p.state = stDestroyed
	p.sends = nil
	n.forgetLocked(p)
	n.cfg.Hold.drop(p.id)
	// End the session blaming nobody; the engine tells the peers.
	p.cancel(tss.ErrWithdrawn)
}

func (n *Presigner) forgetLocked(p *presig) {
	if n.presigs[p.id] == p {
		delete(n.presigs, p.id)
	}
}

// Sweep destroys presignatures past their TTL and forgets binding records
// old enough that their presignature can no longer exist anywhere. It
// returns how many presignatures expired.
func (n *Presigner) Sweep() int {
	now := n.cfg.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	expired := 0
	for _, p := range n.presigs {
		if p.state != stBound && !now.Before(p.expires) {
			n.destroyLocked(p)
			expired++
		}
	}
	for id, r := range n.used {
		if _, live := n.presigs[id]; !live && now.Sub(r.at) > 2*n.cfg.TTL {
			delete(n.used, id)
		}
	}
	return expired
}

// Run calls Sweep every interval until ctx ends: each node expires its
// presignatures on its own clock, whatever the book does.
func (n *Presigner) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.Sweep()
		}
	}
}

// Close destroys every presignature (what a restart does to memory).
func (n *Presigner) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.presigs {
		n.destroyLocked(p)
	}
}

// Sign is full signing, the fallback when the pool is empty: the same
// Check, then a complete tss session.
func (n *Presigner) Sign(ctx context.Context, session tss.SessionID, subset Subset, req Request) (*tss.Signature, error) {
	if err := n.cfg.Check(ctx, req); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	share, err := n.cfg.Share(req.Wallet)
	if err != nil {
		return nil, fmt.Errorf("presign: share of %s: %w", req.Wallet, err)
	}
	return n.cfg.Engine.Sign(ctx, share, tss.SignParams{Session: session, Signers: subset, Digest: req.Digest})
}
