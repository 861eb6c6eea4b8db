package withdraw

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// UTXOSource is what the leader needs from a Bitcoin node to build a
// withdrawal: the spendable outputs paying a wallet's address, confirmed at
// least minConf times (*btc.Client, from btcd's address index).
type UTXOSource interface {
	UTXOs(ctx context.Context, addr btcutil.Address, minConf int64) ([]btc.UTXO, error)
}

var _ UTXOSource = (*btc.Client)(nil)

// BTCConfig configures the leader's Bitcoin withdrawals (CreateBTC). The
// zero value builds none.
type BTCConfig struct {
	// Node lists a wallet's UTXOs (btc.Dial to a btcd running with
	// --txindex --addrindex on the network below).
	Node UTXOSource
	// Network is the ledger's network name of the Bitcoin wallets the leader
	// builds for ("devnet"); the "btc" adapter in Config.Chains maps it to a
	// Bitcoin network (btc.NewChain).
	Network string
	// FeeRate (sat/vB) is used when a withdrawal names none. Policy's
	// max_fee and max_fee_rate cap what is actually paid.
	FeeRate int64
	// MinConf is how many confirmations an output needs to be spent
	// (default 1: nothing from the mempool).
	MinConf int64
}

// BTCWithdrawal is a backend's hot withdrawal of bitcoin from a P2WPKH
// wallet.
type BTCWithdrawal struct {
	// ID is the backend's idempotency key.
	ID     string
	Wallet string
	// To is the destination in its canonical form (bech32 lower case, or
	// base58check) on the wallet's network, as the initiator signed it;
	// any other spelling is refused.
	To string
	// Amount in satoshi (what the destination receives).
	Amount *big.Int
	// FeeRate in sat/vB; 0 takes BTCConfig.FeeRate.
	FeeRate int64
	// Initiation is the initiator's signed creation of this withdrawal
	// (quorum.Initiate over policy.Withdrawal.IntentHash of ID, Wallet,
	// "BTC", the canonical To and Amount).
	Initiation quorum.Approval
	ExpiresAt  time.Time
	// Note is the initiator's note (policy.ValidNote), part of the signed
	// intent.
	Note string
}

// keyLocks are mutexes by key (a wallet, a request ID) that a waiting
// caller can give up on when its context ends (node calls cannot be
// cancelled, so one may hold a lock for long). A key's entry lives while
// someone holds or waits for it.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sem  chan struct{}
	refs int
}

func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	k := l.m[key]
	if k == nil {
		k = &keyLock{sem: make(chan struct{}, 1)}
		l.m[key] = k
	}
	k.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if k.refs--; k.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	unlock = func() { <-k.sem; release() }
	select {
	case k.sem <- struct{}{}: // free: taken even when ctx has ended
		return unlock, nil
	default:
	}
	select {
	case k.sem <- struct{}{}:
		return unlock, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// btcLocks serialises CreateBTC per wallet, so that two concurrent creates
// by this leader never select the same UTXOs. committed is, per wallet,
// the ledger index of the last create this leader committed: a ledger read
// older than it misses that create's outpoints and is read again.
type btcLocks struct {
	keys      keyLocks
	mu        sync.Mutex
	committed map[string]uint64
}

func (l *btcLocks) lock(ctx context.Context, wallet string) (unlock func(), err error) {
	unlock, err = l.keys.lock(ctx, wallet)
	if err != nil {
		return nil, fmt.Errorf("withdraw: waiting for another create of wallet %s: %w", wallet, err)
	}
	return unlock, nil
}

// lastCommit and setCommit read and record committed[wallet] (the caller
// holds the wallet's lock).
func (l *btcLocks) lastCommit(wallet string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.committed[wallet]
}

func (l *btcLocks) setCommit(wallet string, idx uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.committed == nil {
		l.committed = map[string]uint64{}
	}
	l.committed[wallet] = max(l.committed[wallet], idx)
}

// CreateBTC builds a P2WPKH spend of the wallet's UTXOs and commits
// request.create, which evaluates policy and reserves the spent outpoints.
//
// The UTXOs come from the node (BTCConfig.Node), minus every outpoint the
// ledger holds for another request (State.Outpoints: requests awaiting
// approvals, approved, claimed, signed or failed; a rejected, cancelled or
// expired request's outpoints are free again). btc.Build selects coins
// (largest first) at the fee rate, with change back to the wallet's own
// address unless it would be dust. The withdrawal the ledger evaluates is
// read back from the built transaction through the "btc" adapter, as the
// members read it: destination, amount, maximum fee (inputs − outputs) and
// the virtual size for the fee-rate cap.
//
// Creates for one wallet are serialised in this orchestrator; when the
// ledger still refuses an outpoint (ledger.ErrAllocated: another leader
// reserved it since the read) the ledger is read again, the UTXOs are
// listed again and the spend rebuilt once.
//
// A request ID already in the ledger is returned as stored (idempotency)
// without building anything. A denial returns the recorded request and
// ErrDenied. Bad input (unknown wallet, a destination of another network
// or not in canonical form, a dust amount, a fee rate out of range:
// btc.ErrBadAddress, btc.ErrBadIntent, btc.ErrDust) and insufficient funds
// (btc.ErrInsufficientFunds, counting only unreserved UTXOs) change nothing.
func (c *Orchestrator) CreateBTC(ctx context.Context, w BTCWithdrawal) (*ledger.Request, error) {
	unlock, err := c.LockRequest(ctx, w.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return c.CreateBTCFrom(ctx, nil, w)
}

// CreateBTCFrom is CreateBTC from what a linearizable read before the call
// found (ReadCreate; nil: read now), for a caller holding LockRequest(w.ID)
// since before that read. The read is used when it is not older than this
// leader's last create of the wallet, otherwise read again under the
// wallet's lock.
func (c *Orchestrator) CreateBTCFrom(ctx context.Context, rd *CreateRead, w BTCWithdrawal) (*ledger.Request, error) {
	cfg := c.cfg.BTC
	if cfg.Node == nil || cfg.Network == "" {
		return nil, errors.New("withdraw: no bitcoin node or network configured")
	}
	if rd != nil && rd.Existing != nil {
		return rd.Existing, decisionErr(rd.Existing)
	}
	unlock, err := c.btcLocks.lock(ctx, w.Wallet)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for attempt := 0; ; attempt++ {
		if rd == nil || rd.Index < c.btcLocks.lastCommit(w.Wallet) {
			if rd, err = c.ReadCreate(ctx, w.ID, w.Wallet); err != nil {
				return nil, err
			}
		}
		r, err := c.createBTC(ctx, rd, w)
		if errors.Is(err, ledger.ErrAllocated) && attempt == 0 {
			rd = nil // reserved elsewhere since our read: read and list again
			continue
		}
		return r, err
	}
}

func (c *Orchestrator) createBTC(ctx context.Context, rd *CreateRead, w BTCWithdrawal) (*ledger.Request, error) {
	cfg := c.cfg.BTC
	if rd.Existing != nil {
		return rd.Existing, decisionErr(rd.Existing)
	}
	switch lw := rd.Wallet; {
	case lw == nil:
		return nil, fmt.Errorf("withdraw: wallet %q is not in the ledger", w.Wallet)
	case lw.Chain != "btc" || lw.Network != cfg.Network:
		return nil, fmt.Errorf("withdraw: wallet %q is on %s/%s, this leader builds btc/%s", w.Wallet, lw.Chain, lw.Network, cfg.Network)
	}
	reserved := rd.Outpoints
	info, err := c.wallet(w.Wallet)
	if err != nil {
		return nil, err
	}
	chain, ok := c.cfg.Chains["btc"].(*btc.Chain)
	if !ok {
		return nil, errors.New("withdraw: no btc chain adapter (btc.NewChain) in Config.Chains")
	}
	net, err := chain.Params(cfg.Network)
	if err != nil {
		return nil, err
	}
	to, err := btc.ParseAddress(w.To, net)
	if err != nil {
		return nil, err
	}
	if to.EncodeAddress() != w.To {
		// The initiator signed the destination as given; the ledger stores
		// the canonical form, so only that can match the signature.
		return nil, fmt.Errorf("%w: destination %s is not in its canonical form %s", btc.ErrBadAddress, w.To, to.EncodeAddress())
	}
	if w.Amount == nil || w.Amount.Sign() <= 0 || !w.Amount.IsInt64() || w.Amount.Int64() > btcutil.MaxSatoshi {
		return nil, fmt.Errorf("%w: amount must be 1..%d satoshi", btc.ErrBadIntent, int64(btcutil.MaxSatoshi))
	}
	amt, err := amount.FromBig(w.Amount)
	if err != nil {
		return nil, err
	}
	rate := w.FeeRate
	if rate == 0 {
		rate = cfg.FeeRate
	}
	walletAddr, err := btc.WalletAddress(info.PubKey, net)
	if err != nil {
		return nil, err
	}
	minConf := cfg.MinConf
	if minConf <= 0 {
		minConf = 1
	}
	all, err := cfg.Node.UTXOs(ctx, walletAddr, minConf)
	if err != nil {
		return nil, fmt.Errorf("withdraw: utxos of %s: %w", w.Wallet, err)
	}
	free := make([]btc.UTXO, 0, len(all))
	for _, u := range all {
		if reserved[u.OutPoint.String()] == "" {
			free = append(free, u)
		}
	}
	u, err := btc.Build(btc.Intent{Net: net, WalletPubKey: info.PubKey, To: w.To, Amount: w.Amount.Int64(), FeeRate: rate, UTXOs: free})
	if err != nil {
		if errors.Is(err, btc.ErrInsufficientFunds) {
			return nil, fmt.Errorf("withdraw: wallet %s (%d unreserved of %d UTXOs): %w", w.Wallet, len(free), len(all), err)
		}
		return nil, err
	}
	parsed, err := chain.ParseUnsigned(cfg.Network, u.Bytes())
	if err != nil {
		return nil, err
	}
	tr := parsed.Transfer()
	spent := make([]string, 0, len(u.Spent()))
	for _, op := range u.Spent() {
		spent = append(spent, op.String())
	}
	if tr.Asset != "BTC" || tr.To != w.To || tr.Amount != amt || !slices.Equal(tr.Outpoints, spent) {
		return nil, fmt.Errorf("withdraw: built transaction pays %s %s to %s from %v, asked %s BTC to %s from %v", tr.Amount, tr.Asset, tr.To, tr.Outpoints, amt, w.To, spent)
	}
	initiation := w.Initiation
	out, err := c.cfg.Ledger.Submit(ctx, c.cfg.Actor, ledger.RequestCreate{
		ID: w.ID,
		Withdrawal: policy.Withdrawal{Wallet: w.Wallet, Asset: tr.Asset, Chain: chain.Name(), Network: cfg.Network,
			To: tr.To, Amount: tr.Amount, MaxFee: tr.MaxFee, Note: w.Note},
		Payload:     u.Bytes(),
		PayloadHash: u.PayloadHash(),
		Outpoints:   tr.Outpoints,
		VSize:       tr.VSize,
		ExpiresAt:   w.ExpiresAt,
		Initiation:  &initiation,
	})
	if out.Index != 0 {
		// Decided by the FSM (refusals included): later reads must see it.
		c.btcLocks.setCommit(w.Wallet, out.Index)
	}
	if err != nil {
		return nil, err
	}
	return out.Request, decisionErr(out.Request)
}
