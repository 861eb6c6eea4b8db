package withdraw

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// Member is a committee member as the leader reaches it: *member.Member
// in-process; a client of the node API in the daemon.
type Member interface {
	Self() pki.NodeID
	SignClaimed(ctx context.Context, requestID string, c member.Claim) (*member.Signed, error)
}

var _ Member = (*member.Member)(nil)

// ErrDenied: policy denied a new request at creation (the denial is recorded
// in the ledger; the request's Decision says why).
var ErrDenied = errors.New("withdraw: request denied by policy")

// ErrSigners: the members asked to sign did not return one agreed signature.
var ErrSigners = errors.New("withdraw: signers did not produce one signature")

// ErrUnknownRequest: the ledger has no such request.
var ErrUnknownRequest = errors.New("withdraw: unknown request")

// Config wires the leader's orchestration.
type Config struct {
	// Ledger is the leader's ledger store (writes fail on followers).
	Ledger *ledger.Store
	// ETH builds fees and the pending nonce (eth.NewSimulated, eth.Dial).
	ETH eth.RPC
	// BTCNode broadcasts and tracks Bitcoin transactions (*btc.Client);
	// optional: without it Broadcast and Track refuse btc requests.
	BTCNode BTCNode
	// Network is the ledger's network name of ETH ("devnet").
	Network string
	// Chains are the adapters that compute each claim's digest, by chain
	// name (the members' own adapters recompute it).
	Chains map[string]chains.Chain
	// Actor is this node's principal on claims and results ("node:n1").
	Actor string
	// Members are the committee members reachable from here.
	Members []Member
	// PollInterval for WaitApproved (default 20 ms).
	PollInterval time.Duration
	// BTC builds Bitcoin withdrawals (CreateBTC, btc.go); zero: none.
	BTC BTCConfig
	// NonceRefresh is how often an ETH wallet's nonce allocator reads the
	// chain's pending nonce again (default: NonceRefresh).
	NonceRefresh time.Duration
}

// Orchestrator is the leader's thin orchestration of hot ETH and BTC
// withdrawals (DESIGN.md steps 2, 4 and 6). It decides nothing the members
// do not re-check.
type Orchestrator struct {
	cfg     Config
	members map[pki.NodeID]Member

	mu      sync.Mutex
	wallets map[string]tss.WalletInfo

	btcLocks btcLocks
	requests keyLocks // by request ID: LockRequest
	nonces   nonceAllocs
	chain    chainCache
}

// New returns an orchestrator.
func New(cfg Config) (*Orchestrator, error) {
	if cfg.Ledger == nil || cfg.Actor == "" || len(cfg.Chains) == 0 {
		return nil, errors.New("withdraw: needs a ledger, chain adapters and an actor")
	}
	if cfg.ETH == nil && cfg.BTC.Node == nil {
		return nil, errors.New("withdraw: needs an Ethereum node (ETH) or a Bitcoin node (BTC.Node)")
	}
	if cfg.ETH != nil && cfg.Network == "" {
		return nil, errors.New("withdraw: an Ethereum node needs its ledger network name (Network)")
	}
	if cfg.NonceRefresh <= 0 {
		cfg.NonceRefresh = NonceRefresh
	}
	c := &Orchestrator{cfg: cfg, members: map[pki.NodeID]Member{}, wallets: map[string]tss.WalletInfo{}}
	for _, m := range cfg.Members {
		c.members[m.Self()] = m
	}
	return c, nil
}

// AddWallet registers a wallet's public description (from keygen).
func (c *Orchestrator) AddWallet(info tss.WalletInfo) {
	c.mu.Lock()
	c.wallets[info.Wallet] = info
	c.mu.Unlock()
}

func (c *Orchestrator) wallet(id string) (tss.WalletInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.wallets[id]
	if !ok {
		return tss.WalletInfo{}, fmt.Errorf("withdraw: unknown wallet %q", id)
	}
	return w, nil
}

// ETHWithdrawal is a backend's hot withdrawal of native ETH or of an ERC-20
// token registered in the orchestrator's eth adapter.
type ETHWithdrawal struct {
	// ID is the backend's idempotency key.
	ID     string
	Wallet string
	// Asset is "" or "ETH" for native ETH, else the symbol of a token
	// registered on the network in the "eth" adapter (eth.Config.Tokens).
	Asset string
	// To is the destination in its canonical (EIP-55) form, as the
	// initiator signed it; any other spelling is refused. For a token it
	// is the token's recipient, not the contract.
	To string
	// Amount in base units of the asset (wei, or token units).
	Amount *big.Int
	// Initiation is the initiator's signed creation of this withdrawal
	// (quorum.Initiate over policy.Withdrawal.IntentHash of ID, Wallet,
	// the asset ("ETH" or the token's symbol), the canonical To and
	// Amount): the ledger and every member verify it, and its signer is
	// the request's initiator.
	Initiation quorum.Approval
	ExpiresAt  time.Time
	// Note is the initiator's note (policy.ValidNote), part of the signed
	// intent.
	Note string
}

// CreateRead is what a create needs from the ledger, from one
// linearizable read (ReadCreate), handed to CreateETHFrom or CreateBTCFrom
// so they do not read again.
type CreateRead struct {
	// Index is the ledger state index the read saw.
	Index uint64
	// Existing is the request already stored under the ID, if any.
	Existing *ledger.Request
	// Wallet is the ledger's record of the wallet (nil: none).
	Wallet *ledger.Wallet
	// Outpoints are the BTC outpoints requests hold (outpoint → request
	// ID), read for a btc wallet only.
	Outpoints map[string]string
}

// ReadCreate reads, linearizably (ledger.Store.ReadLinearizable: a read
// index, no log entry), what a create of request id from wallet needs.
func (c *Orchestrator) ReadCreate(ctx context.Context, id, wallet string) (*CreateRead, error) {
	rd := &CreateRead{}
	err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		rd.Index = st.Index
		if r := st.Requests[id]; r != nil {
			rd.Existing = r.Clone()
			return nil
		}
		lw := st.Wallets[wallet]
		if lw == nil {
			return nil
		}
		rd.Wallet = lw.Clone()
		if lw.Chain == "btc" {
			rd.Outpoints = make(map[string]string, len(st.Outpoints))
			for op, by := range st.Outpoints {
				rd.Outpoints[op] = by
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rd, nil
}

// LockRequest serialises this leader's creates of one request ID: a
// duplicate sent to two nodes at once (both forward to the leader) waits
// for the first, then its read finds the stored request, and never takes a
// nonce or outpoint of its own. Hold it from before ReadCreate until the
// create returned; a waiting caller gives up when ctx ends.
func (c *Orchestrator) LockRequest(ctx context.Context, id string) (unlock func(), err error) {
	unlock, err = c.requests.lock(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("withdraw: waiting for another create of request %q: %w", id, err)
	}
	return unlock, nil
}

// CreateETH reads the ledger (ReadCreate) and creates (CreateETHFrom),
// holding LockRequest.
func (c *Orchestrator) CreateETH(ctx context.Context, w ETHWithdrawal) (*ledger.Request, error) {
	unlock, err := c.LockRequest(ctx, w.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rd, err := c.ReadCreate(ctx, w.ID, w.Wallet)
	if err != nil {
		return nil, err
	}
	return c.CreateETHFrom(ctx, rd, w)
}

// CreateETHFrom builds the unsigned transaction and commits
// request.create, which evaluates policy and allocates the nonce; rd is
// the ledger as a linearizable read before the call found it (ReadCreate),
// made holding LockRequest(w.ID), which the caller holds until this
// returns.
// A request ID already in the ledger (rd.Existing) is returned as stored
// (idempotency) without building anything. A denial returns the recorded
// request and ErrDenied.
//
// The nonce is the lowest one from the chain's pending nonce up that the
// ledger does not hold and no other create of this leader has in flight,
// from the wallet's allocator (nonceAlloc: seeded from the ledger on each
// leadership gain and after a refusal). When the ledger still refuses it
// (ErrAllocated: another leader's allocation), the allocator is seeded
// again and the transaction rebuilt once. The chain ID is read once and
// the fee suggestion is at most FeeMaxAge old. For a token, the call is
// transfer(address,uint256) to its registered contract with the chain's
// gas estimate plus a quarter.
func (c *Orchestrator) CreateETHFrom(ctx context.Context, rd *CreateRead, w ETHWithdrawal) (*ledger.Request, error) {
	if c.cfg.ETH == nil {
		return nil, errors.New("withdraw: this node has no Ethereum node configured")
	}
	if rd.Existing != nil {
		return rd.Existing, decisionErr(rd.Existing)
	}
	info, err := c.wallet(w.Wallet)
	if err != nil {
		return nil, err
	}
	from, err := eth.AddressFromPublicKey(info.PubKey)
	if err != nil {
		return nil, err
	}
	to, err := eth.ParseAddress(w.To)
	if err != nil {
		return nil, err
	}
	if to.Hex() != w.To {
		// The initiator signed the destination as given; the ledger stores
		// the canonical form, so only that can match the signature.
		return nil, fmt.Errorf("%w: destination %s is not in its canonical (EIP-55) form %s", eth.ErrBadIntent, w.To, to.Hex())
	}
	if w.Amount == nil || w.Amount.Sign() <= 0 {
		return nil, fmt.Errorf("%w: amount must be positive", eth.ErrBadIntent)
	}
	amt, err := amount.ParseBase(w.Amount.String())
	if err != nil {
		return nil, err
	}
	// The withdrawal the ledger records is read back from the transaction
	// through the same adapter the members use, so what policy evaluates is
	// what the transaction does (maximum fee included).
	chain, ok := c.cfg.Chains["eth"]
	if !ok {
		return nil, errors.New("withdraw: no eth chain adapter")
	}
	asset := eth.ETH
	if w.Asset != "" && w.Asset != eth.ETH.Symbol {
		reg, ok := chain.(interface {
			Token(network, symbol string) (eth.Token, bool)
		})
		if !ok {
			return nil, fmt.Errorf("%w: the eth adapter has no token registry", eth.ErrBadIntent)
		}
		tok, ok := reg.Token(c.cfg.Network, w.Asset)
		if !ok {
			return nil, fmt.Errorf("%w: asset %q is not a registered token on %s", eth.ErrBadIntent, w.Asset, c.cfg.Network)
		}
		asset = tok.Asset()
	}
	chainID, err := c.chainID(ctx)
	if err != nil {
		return nil, err
	}
	fees, err := c.suggestFees(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		nonce, done, err := c.takeNonce(ctx, w.Wallet, from)
		if err != nil {
			return nil, err
		}
		out, err := c.commitETH(ctx, w, chain, eth.Intent{ChainID: chainID, Nonce: nonce, To: to, Asset: asset, Amount: w.Amount, GasLimit: 21000, Fees: fees}, from, amt)
		o := nonceOutcomeOf(nonce, out, err)
		done(o)
		if o == nonceRefused && attempt == 0 {
			continue // held by another leader's create since the seed: seed again
		}
		if err != nil {
			return nil, err
		}
		return out.Request, decisionErr(out.Request)
	}
}

// commitETH builds the transaction of in and commits its request.create.
// An error before the commit comes with a zero Outcome.
func (c *Orchestrator) commitETH(ctx context.Context, w ETHWithdrawal, chain chains.Chain, in eth.Intent, from common.Address, amt amount.Amount) (ledger.Outcome, error) {
	if in.Asset.Token != nil {
		// A token transfer's gas depends on the contract and its state,
		// which can change before inclusion (a recipient's first tokens
		// cost more): estimate, plus a quarter. Policy caps the resulting
		// maximum fee.
		probe, err := eth.NewUnsigned(in)
		if err != nil {
			return ledger.Outcome{}, err
		}
		gas, err := c.cfg.ETH.EstimateGas(ctx, from, probe)
		if err != nil {
			return ledger.Outcome{}, err
		}
		in.GasLimit = gas + gas/4
	}
	u, err := eth.NewUnsigned(in)
	if err != nil {
		return ledger.Outcome{}, err
	}
	parsed, err := chain.ParseUnsigned(c.cfg.Network, u.Bytes())
	if err != nil {
		return ledger.Outcome{}, err
	}
	tr := parsed.Transfer()
	if tr.Asset != in.Asset.Symbol || tr.To != in.To.Hex() || tr.Amount != amt {
		return ledger.Outcome{}, fmt.Errorf("withdraw: built transaction pays %s %s to %s, asked %s %s to %s", tr.Amount, tr.Asset, tr.To, amt, in.Asset.Symbol, in.To.Hex())
	}
	initiation := w.Initiation
	nonce := in.Nonce
	return c.cfg.Ledger.Submit(ctx, c.cfg.Actor, ledger.RequestCreate{
		ID: w.ID,
		Withdrawal: policy.Withdrawal{Wallet: w.Wallet, Asset: tr.Asset, Chain: chain.Name(), Network: c.cfg.Network,
			To: tr.To, Amount: tr.Amount, MaxFee: tr.MaxFee, Note: w.Note},
		Payload:     u.Bytes(),
		PayloadHash: u.PayloadHash(),
		Nonce:       &nonce,
		ExpiresAt:   w.ExpiresAt,
		Initiation:  &initiation,
	})
}

func decisionErr(r *ledger.Request) error {
	if r.Status == ledger.StatusRejected {
		return fmt.Errorf("%w: %s: %s", ErrDenied, r.Decision.Reason, r.Decision.Detail)
	}
	return nil
}

// Approve records one operator's signed approval or rejection (step 3).
func (c *Orchestrator) Approve(ctx context.Context, requestID string, a quorum.Approval) (*ledger.Request, error) {
	out, err := c.cfg.Ledger.Submit(ctx, c.cfg.Actor, ledger.Approve{RequestID: requestID, Approval: a})
	if err != nil {
		return nil, err
	}
	return out.Request, nil
}

// WaitApproved waits until the request is approved (nil), or terminal or
// ctx ends (error).
func (c *Orchestrator) WaitApproved(ctx context.Context, requestID string) (*ledger.Request, error) {
	poll := c.cfg.PollInterval
	if poll <= 0 {
		poll = 20 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		var r *ledger.Request
		err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
			if x := st.Requests[requestID]; x != nil {
				r = x.Clone()
			}
			return nil
		})
		switch {
		case err != nil:
			return nil, err
		case r == nil:
			return nil, fmt.Errorf("%w: %q", ErrUnknownRequest, requestID)
		case r.Status == ledger.StatusApproved:
			return r, nil
		case r.Status != ledger.StatusAwaitingApprovals:
			return r, fmt.Errorf("withdraw: request %q is %s, not awaiting approvals", requestID, r.Status)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-tick.C:
		}
	}
}

// Claim commits the compare-and-set claim with a fresh 256-bit session ID
// (step 4) and returns what the signers are handed. signers nil picks the
// first t+1 committee members reachable from this orchestrator.
func (c *Orchestrator) Claim(ctx context.Context, requestID string, signers []pki.NodeID) (member.Claim, error) {
	var wallet string
	if err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		r := st.Requests[requestID]
		if r == nil {
			return fmt.Errorf("%w: %q", ErrUnknownRequest, requestID)
		}
		wallet = r.Wallet
		return nil
	}); err != nil {
		return member.Claim{}, err
	}
	signers, err := c.pickSigners(wallet, signers)
	if err != nil {
		return member.Claim{}, err
	}
	// The ledger records the signer set with the claim; members compare.
	r, err := c.cfg.Ledger.Claim(ctx, c.cfg.Actor, requestID, signers)
	if err != nil {
		return member.Claim{}, err
	}
	return c.claimOf(r, signers)
}

// claimOf derives the members' Claim from a request's current ledger claim.
func (c *Orchestrator) claimOf(r *ledger.Request, signers []pki.NodeID) (member.Claim, error) {
	sid, err := tss.ParseSessionID(r.Claim.SessionID)
	if err != nil {
		return member.Claim{}, fmt.Errorf("withdraw: ledger session ID: %w", err)
	}
	chain, ok := c.cfg.Chains[r.Chain]
	if !ok {
		return member.Claim{}, fmt.Errorf("withdraw: no adapter for chain %q", r.Chain)
	}
	u, err := chain.ParseUnsigned(r.Network, r.Payload)
	if err != nil {
		return member.Claim{}, err
	}
	// The members sign every digest, one session each (member.InputSession);
	// the claim carries the one value standing for them all.
	digests := u.Digests()
	if len(digests) == 0 {
		return member.Claim{}, fmt.Errorf("withdraw: the %s adapter computed no signing digest", r.Chain)
	}
	return member.Claim{SessionID: sid, Index: r.Claim.Index, Signers: signers, PayloadHash: r.PayloadHash, Digest: member.ClaimDigest(digests)}, nil
}

// Reclaim re-opens a request whose signing session failed (a peer timed
// out, a session aborted): the ledger grants a new session over the same
// payload and nonce, fenced on the failed session, and re-checks policy and
// approvals. Members' watermarks accept the same message again. signers nil
// picks as in Claim. Then call Collect with the returned Claim.
func (c *Orchestrator) Reclaim(ctx context.Context, requestID string, signers []pki.NodeID) (member.Claim, error) {
	var failed *ledger.Request
	if err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		failed = st.Requests[requestID].Clone()
		return nil
	}); err != nil {
		return member.Claim{}, err
	}
	if failed == nil {
		return member.Claim{}, fmt.Errorf("%w: %q", ErrUnknownRequest, requestID)
	}
	if failed.Status != ledger.StatusFailed || failed.Claim == nil {
		return member.Claim{}, fmt.Errorf("%w: %q is %s, not failed", ledger.ErrWrongStatus, requestID, failed.Status)
	}
	signers, err := c.pickSigners(failed.Wallet, signers)
	if err != nil {
		return member.Claim{}, err
	}
	r, err := c.cfg.Ledger.Reclaim(ctx, c.cfg.Actor, requestID, failed.Claim.SessionID, signers)
	if err != nil {
		return member.Claim{}, err
	}
	return c.claimOf(r, signers)
}

// pickSigners returns signers (or, when nil, the first t+1 committee members
// reachable from here).
func (c *Orchestrator) pickSigners(wallet string, signers []pki.NodeID) ([]pki.NodeID, error) {
	info, err := c.wallet(wallet)
	if err != nil {
		return nil, err
	}
	if signers == nil {
		for _, m := range info.Members {
			if _, ok := c.members[m.Node]; ok && len(signers) < info.Threshold+1 {
				signers = append(signers, m.Node)
			}
		}
	}
	return signers, nil
}

// Collect asks every signer of the claim to sign (concurrently; the first
// refusal cancels the others), requires one agreed signed transaction, and
// commits the result (step 6). When signing fails the failure is committed
// instead (the nonce stays allocated: docs/ledger.md).
func (c *Orchestrator) Collect(ctx context.Context, requestID string, cl member.Claim) (*member.Signed, error) {
	signed, err := c.collect(ctx, requestID, cl)
	res := ledger.RecordResult{RequestID: requestID, SessionID: cl.SessionID.String()}
	if err != nil {
		res.Error = err.Error()
	} else {
		res.Signed, res.TxHash = signed.Raw, signed.TxHash
	}
	if _, perr := c.cfg.Ledger.Submit(context.WithoutCancel(ctx), c.cfg.Actor, res); perr != nil {
		return signed, errors.Join(err, fmt.Errorf("withdraw: commit result: %w", perr))
	}
	return signed, err
}

func (c *Orchestrator) collect(ctx context.Context, requestID string, cl member.Claim) (*member.Signed, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		s   *member.Signed
		err error
	}
	answers := make([]answer, len(cl.Signers))
	var wg sync.WaitGroup
	for i, id := range cl.Signers {
		m, ok := c.members[id]
		if !ok {
			return nil, fmt.Errorf("%w: signer %s is not reachable", ErrSigners, id)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := m.SignClaimed(ctx, requestID, cl)
			if err != nil {
				cancel()
			}
			answers[i] = answer{s, err}
		}()
	}
	wg.Wait()
	var errs []error
	var out *member.Signed
	for i, a := range answers {
		switch {
		case a.err != nil:
			errs = append(errs, a.err)
		case out == nil:
			out = a.s
		case string(out.Raw) != string(a.s.Raw):
			errs = append(errs, fmt.Errorf("%w: %s returned a different transaction", ErrSigners, cl.Signers[i]))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Sign claims and collects in one step.
func (c *Orchestrator) Sign(ctx context.Context, requestID string, signers []pki.NodeID) (*member.Signed, error) {
	cl, err := c.Claim(ctx, requestID, signers)
	if err != nil {
		return nil, err
	}
	return c.Collect(ctx, requestID, cl)
}
