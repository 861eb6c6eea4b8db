package withdraw

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
)

// The leader's ETH create path keeps the chain out of each create: the
// chain ID is read once, the fee suggestion at most every FeeMaxAge, and
// nonces come from a leader-local allocator per wallet (nonceAlloc). None
// of this is trusted: the FSM refuses a nonce a request already holds
// (ledger.ErrAllocated) and policy caps the maximum fee.
const (
	// FeeMaxAge is the oldest fee suggestion a create uses (counted from
	// when it was asked for). The bound: EIP-1559's base fee rises at most
	// 12.5% a block and the suggested maximum fee is twice the base fee
	// plus the tip, so a suggestion at most one second old (under a block,
	// 12 s on mainnet) still covers the base fee after five full blocks of
	// maximal increases (1.125^5 ≈ 1.8). A transaction whose maximum fee
	// the base fee overtakes waits in the mempool; it is never overpaid,
	// since policy's max_fee caps what the ledger accepts.
	FeeMaxAge = time.Second
	// NonceRefresh is the default Config.NonceRefresh: how often a
	// wallet's allocator asks the chain for the pending nonce again (a
	// nonce below it is spent). Nonces the ledger frees are taken back at
	// once (see nonceAlloc): ETH executes nonces in order, so a hole would
	// hold back every later withdrawal.
	NonceRefresh = time.Second
)

// NonceStats counts what a wallet's nonce allocator did on this node.
type NonceStats struct {
	// Seeds are full reads of the ledger's held nonces (a new term, a
	// refusal, the first create).
	Seeds int
	// Refused are creates the ledger refused with ErrAllocated: the nonce
	// was held already (another leader's allocation since the seed).
	Refused int
}

// nonceAllocs are the leader's ETH nonce allocators, one per wallet.
type nonceAllocs struct {
	mu sync.Mutex
	m  map[string]*nonceAlloc
}

func (a *nonceAllocs) wallet(id string) *nonceAlloc {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]*nonceAlloc{}
	}
	w := a.m[id]
	if w == nil {
		w = &nonceAlloc{inflight: map[uint64]bool{}}
		a.m[id] = w
	}
	return w
}

// nonceAlloc is one wallet's allocator: the nonces this leader may hand
// out, derived from the ledger when it is seeded and kept in memory after.
//
// Seeded (from a linearizable read of every nonce the ledger holds for the
// wallet, and the chain's pending nonce) when the node's raft term is not
// the one of the last seed (a leadership gain: another leader may have
// allocated meanwhile), after a refusal by the ledger (ErrAllocated) and
// on the first create. Between seeds only this leader allocates the
// wallet's nonces, so memory is exact: next = max(chain pending, highest
// held + 1, highest in flight + 1), and free are the nonces below next,
// from the chain's pending nonce up, that no request holds and no create
// of this node has in flight. A create takes the lowest free nonce, else
// next. Its outcome updates the allocator: held (committed and allowed),
// free again (denied by policy, or refused by the FSM for any other
// reason: nothing was recorded), or, when the outcome is unknown (a
// timeout, a lost leadership), taken back by the next allocation if the
// replica does not show it held then (should the create commit later
// after all, the ledger refuses the second holder: ErrAllocated). A nonce
// given back while higher ones were handed out meanwhile (a create denied
// or refused while others of the wallet ran) is a hole until the next
// create of the wallet takes it, as a rejected or expired request's nonce
// always was.
//
// Nonces the ledger releases (a request rejected, cancelled or expired
// before its claim) are handed out again before any new one, as the lowest
// free: when the ledger's count of freed nonces (Store.NonceReleases, moved
// by the entry that freed one, applied on the leader before any create
// that began after it reads) changed since the last look, the nonces
// between the chain's pending nonce and next are looked up in this node's
// own replica first (enough on the leader: its own commits are applied
// before they return, and since the seed no other leader allocated). Every
// Config.NonceRefresh the same is done with the chain's pending nonce read
// again.
type nonceAlloc struct {
	mu       sync.Mutex
	term     uint64 // the raft term of the seed; 0: not seeded
	reseed   bool   // refused by the ledger: seed before the next allocation
	next     uint64
	free     []uint64 // ascending, all below next
	inflight map[uint64]bool
	// pending is the chain's pending nonce as last read, checked when,
	// releases the ledger's count of freed nonces when the replica was
	// last looked at (Store.NonceReleases).
	pending    uint64
	checked    time.Time
	releases   uint64
	recheck    bool // a create's outcome was unknown: look before the next allocation
	refreshing bool
	stats      NonceStats
}

// nonceOutcome is what became of an allocated nonce.
type nonceOutcome int

const (
	nonceHeld    nonceOutcome = iota // the ledger holds it for the create
	nonceFree                        // nothing holds it: hand it out again
	nonceRefused                     // ErrAllocated: another request holds it
	nonceUnknown                     // the create's outcome is unknown
)

// takeNonce allocates the wallet's next nonce for a create; done must be
// called with the create's outcome.
func (c *Orchestrator) takeNonce(ctx context.Context, wallet string, from common.Address) (n uint64, done func(nonceOutcome), err error) {
	a := c.nonces.wallet(wallet)
	term := c.cfg.Ledger.Term()
	a.mu.Lock()
	defer a.mu.Unlock()
	switch released := c.cfg.Ledger.NonceReleases(); {
	case a.term != term || a.reseed:
		if err := c.seedNonces(ctx, a, wallet, from, term); err != nil {
			return 0, nil, err
		}
	case released != a.releases || a.recheck:
		// The ledger freed a nonce (of some wallet) since the last look, or
		// a create's outcome was unknown: before handing out a new one,
		// take back this wallet's that no request holds.
		c.refreshNonces(a, wallet, a.pending)
	case time.Since(a.checked) >= c.cfg.NonceRefresh && !a.refreshing:
		// The chain's answer is waited for outside the lock: other creates
		// of the wallet go on meanwhile.
		a.refreshing = true
		a.mu.Unlock()
		pending, perr := c.cfg.ETH.Nonce(ctx, from)
		a.mu.Lock()
		a.refreshing = false
		if perr == nil && a.term == term && !a.reseed {
			c.refreshNonces(a, wallet, pending)
		}
		if a.term != term || a.reseed {
			if err := c.seedNonces(ctx, a, wallet, from, term); err != nil {
				return 0, nil, err
			}
		}
	}
	if len(a.free) > 0 {
		n, a.free = a.free[0], a.free[1:]
	} else {
		n = a.next
		a.next++
	}
	a.inflight[n] = true
	return n, func(o nonceOutcome) { a.done(n, term, o) }, nil
}

// seedNonces rebuilds the allocator from a linearizable read of the
// ledger and the chain's pending nonce; the caller holds a.mu.
func (c *Orchestrator) seedNonces(ctx context.Context, a *nonceAlloc, wallet string, from common.Address, term uint64) error {
	released := c.cfg.Ledger.NonceReleases()
	var held []uint64
	if err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		held = st.HeldNonces(wallet)
		return nil
	}); err != nil {
		return err
	}
	if c.cfg.Ledger.Term() != term {
		return fmt.Errorf("%w: leadership changed while reading the ledger's nonces", ledger.ErrTimeout)
	}
	pending, err := c.cfg.ETH.Nonce(ctx, from)
	if err != nil {
		return err
	}
	next := pending
	if len(held) > 0 {
		next = max(next, held[len(held)-1]+1)
	}
	for n := range a.inflight {
		next = max(next, n+1)
	}
	a.free = a.free[:0]
	for n := pending; n < next; n++ {
		if _, ok := slices.BinarySearch(held, n); !ok && !a.inflight[n] {
			a.free = append(a.free, n)
		}
	}
	a.next, a.term, a.reseed = next, term, false
	a.pending, a.checked, a.releases = pending, time.Now(), released
	a.stats.Seeds++
	return nil
}

// refreshNonces moves the allocator to the chain's pending nonce and
// frees the nonces below next that this node's replica shows unheld (and
// no create of this node has in flight); the caller holds a.mu.
func (c *Orchestrator) refreshNonces(a *nonceAlloc, wallet string, pending uint64) {
	a.releases, a.recheck = c.cfg.Ledger.NonceReleases(), false
	a.next = max(a.next, pending)
	a.free = a.free[:0]
	_ = c.cfg.Ledger.ReadLocal(func(st *ledger.State) error {
		for n := pending; n < a.next; n++ {
			if !a.inflight[n] && st.NonceHolder(wallet, n) == "" {
				a.free = append(a.free, n)
			}
		}
		return nil
	})
	a.pending, a.checked = pending, time.Now()
}

// done records the outcome of nonce n allocated in term.
func (a *nonceAlloc) done(n, term uint64, o nonceOutcome) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.inflight, n)
	switch o {
	case nonceRefused:
		a.stats.Refused++
		a.reseed = true
	case nonceUnknown:
		a.recheck = true
	case nonceFree:
		// Only into the allocation it came from: a seed since then has
		// its own view (a refresh or the next seed finds it free).
		if a.term == term && n < a.next {
			if i, found := slices.BinarySearch(a.free, n); !found {
				a.free = slices.Insert(a.free, i, n)
			}
		}
	}
}

// NonceStats returns what wallet's nonce allocator did on this node.
func (c *Orchestrator) NonceStats(wallet string) NonceStats {
	a := c.nonces.wallet(wallet)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// nonceOutcomeOf classifies a create's commit (Store.Submit's answer) for
// the allocator: out.Index is set when the FSM decided (applied or
// refused), so an error with it is a refusal that changed nothing.
func nonceOutcomeOf(nonce uint64, out ledger.Outcome, err error) nonceOutcome {
	switch {
	case err == nil:
		if r := out.Request; r != nil && r.Nonce != nil && *r.Nonce == nonce && r.Status != ledger.StatusRejected {
			return nonceHeld
		}
		return nonceFree // denied by policy, or an identical create already stored
	case errors.Is(err, ledger.ErrAllocated):
		return nonceRefused
	case out.Index != 0:
		return nonceFree
	}
	return nonceUnknown
}

// chainCache holds what the Ethereum node answers that a create needs and
// that does not change per create: the chain ID (read once) and the fee
// suggestion (at most FeeMaxAge old).
type chainCache struct {
	mu      sync.Mutex
	chainID *big.Int

	feeMu  sync.Mutex // one fee request at a time
	fees   eth.Fees
	feesAt time.Time // when the cached suggestion was asked for; zero: none
}

func (c *Orchestrator) chainID(ctx context.Context) (*big.Int, error) {
	c.chain.mu.Lock()
	id := c.chain.chainID
	c.chain.mu.Unlock()
	if id != nil {
		return new(big.Int).Set(id), nil
	}
	id, err := c.cfg.ETH.ChainID(ctx)
	if err != nil {
		return nil, err
	}
	c.chain.mu.Lock()
	c.chain.chainID = new(big.Int).Set(id)
	c.chain.mu.Unlock()
	return id, nil
}

func (c *Orchestrator) suggestFees(ctx context.Context) (eth.Fees, error) {
	cc := &c.chain
	cc.feeMu.Lock()
	defer cc.feeMu.Unlock()
	if !cc.feesAt.IsZero() && time.Since(cc.feesAt) < FeeMaxAge {
		return copyFees(cc.fees), nil
	}
	asked := time.Now()
	f, err := c.cfg.ETH.SuggestFees(ctx)
	if err != nil {
		return eth.Fees{}, err
	}
	cc.fees, cc.feesAt = copyFees(f), asked
	return f, nil
}

func copyFees(f eth.Fees) eth.Fees {
	cp := func(x *big.Int) *big.Int {
		if x == nil {
			return nil
		}
		return new(big.Int).Set(x)
	}
	return eth.Fees{Legacy: f.Legacy, GasPrice: cp(f.GasPrice), GasTipCap: cp(f.GasTipCap), GasFeeCap: cp(f.GasFeeCap)}
}
