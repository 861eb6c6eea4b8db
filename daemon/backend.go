package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/withdraw"
)

// apiTimeout bounds one backend API request's work (a create forwarded to
// the leader included); past it the answer is 503, outcome unknown.
const apiTimeout = 20 * time.Second

// serveAPI serves the backend API on listen.api (after the node RPC, whose
// client forwards its writes).
func (n *Node) serveAPI() error {
	srv, err := rest.NewServer(n.id, rest.Config{Service: backendService{n}, Operators: backendService{n}, Now: n.now, Genesis: n.genesis.Encode(),
		Logger: n.log.With("component", "backend-api"), Timeout: apiTimeout,
		RateLimit:      rest.RateLimit{PerMinute: n.cfg.API.RateLimit.PerMinute, Burst: n.cfg.API.RateLimit.Burst},
		BalanceTimeout: time.Duration(n.cfg.API.BalanceTimeout)})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", n.cfg.Listen.API)
	if err != nil {
		return err
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("backend api stopped", "err", err)
		}
	}()
	n.onClose(func() error { return srv.Close() })
	return nil
}

// backendService is the node as the backend API sees it: writes go to the
// leader (forwarded over the node RPC from a follower), reads come from
// this node's replica.
type backendService struct{ n *Node }

var (
	_ rest.Service         = backendService{}
	_ rest.OperatorService = backendService{}
	_ noderpc.Creator      = (*Node)(nil)
)

func (b backendService) CreateWithdrawal(ctx context.Context, principal string, w rest.Withdrawal) (*ledger.Request, bool, error) {
	c := b.n.peers.client.Load()
	if c == nil {
		return nil, false, rest.ErrUnavailable
	}
	r, existing, err := c.CreateWithdrawal(ctx, principal, noderpc.Withdrawal{ID: w.ID, Wallet: w.Wallet, Asset: w.Asset,
		To: w.To, Amount: w.Amount, ExpiresAt: w.ExpiresAt, Initiation: w.Initiation, Note: w.Note})
	switch {
	case err == nil:
		return r, existing, nil
	case errors.Is(err, noderpc.ErrCreateRefused):
		return nil, false, fmt.Errorf("%w: %w", rest.ErrRefused, err)
	case errors.Is(err, noderpc.ErrUnreachable), errors.Is(err, noderpc.ErrNoLeader), errors.Is(err, noderpc.ErrUnavailable):
		return nil, false, fmt.Errorf("%w: %w", rest.ErrUnavailable, err)
	}
	return nil, false, err
}

func (b backendService) Read(ctx context.Context, atLeast uint64, fn func(*ledger.State) error) error {
	if atLeast == 0 {
		return b.n.store.ReadLocal(fn)
	}
	return b.n.store.ReadAtLeast(ctx, atLeast, fn)
}

// Submit commits an operator's signed command on the leader (forwarded
// from a follower with its signatures unchanged).
func (b backendService) Submit(ctx context.Context, actor string, cmd ledger.Command) (ledger.Outcome, error) {
	out, err := b.n.Submit(ctx, actor, cmd)
	if errors.Is(err, noderpc.ErrUnreachable) || errors.Is(err, noderpc.ErrNoLeader) || errors.Is(err, noderpc.ErrUnavailable) {
		err = fmt.Errorf("%w: %w", rest.ErrUnavailable, err)
	}
	return out, err
}

func (b backendService) ReadIndex(ctx context.Context) (uint64, error) {
	return b.n.peers.readIndex(ctx)
}

func (b backendService) WalletKey(_ context.Context, walletID string) []byte {
	b.n.mu.Lock()
	defer b.n.mu.Unlock()
	return slices.Clone(b.n.walletKeys[walletID])
}

// CreateWithdrawal builds and records a backend's withdrawal as the
// leader (noderpc.Creator; the node RPC's POST /node/v1/withdrawals and
// this node's own backend API when it leads): CreateETH or CreateBTC by the
// wallet's chain in the ledger. A request ID already in the ledger is
// returned as stored (existing); a policy denial is the recorded request.
// What the chain adapters refuse (the destination, the amount, a token
// this node does not know, not enough funds) wraps
// noderpc.ErrCreateRefused: nothing was recorded.
//
// Creates run concurrently, so raft commits them in batches: one
// linearizable read (a read index, no log entry) finds an existing request
// and the wallet and is handed to the builder; the only serialised step is
// the allocation in the orchestrator (an ETH wallet's nonce allocator, a
// BTC wallet's lock), per wallet. Creates of one request ID wait for each
// other (Orchestrator.LockRequest): a duplicate sent to two nodes at once
// finds the first one's request (existing) and allocates nothing. Should
// two leaders still build one ID, the FSM decides: the second finds the ID
// taken with another payload (ledger.ErrConflict) and the API compares
// what it asked for with the stored request (200 when the same, 409
// naming the difference).
func (n *Node) CreateWithdrawal(ctx context.Context, principal string, w noderpc.Withdrawal) (*ledger.Request, bool, error) {
	if !n.store.IsLeader() {
		id, addr := n.store.Leader()
		return nil, false, &ledger.NotLeaderError{LeaderID: id, LeaderAddr: addr}
	}
	unlock, err := n.orch.LockRequest(ctx, w.ID)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	rd, err := n.orch.ReadCreate(ctx, w.ID, w.Wallet)
	if err != nil {
		return nil, false, err
	}
	if rd.Existing != nil {
		return rd.Existing, true, nil
	}
	wallet := rd.Wallet
	if wallet == nil || !wallet.Active() {
		return nil, false, fmt.Errorf("%w: no active wallet %q", noderpc.ErrCreateRefused, w.Wallet)
	}
	n.mu.Lock()
	_, registered := n.registered[w.Wallet]
	n.mu.Unlock()
	if !registered {
		// The observe loop registers the ledger's wallets within a second
		// of seeing them: retry.
		return nil, false, fmt.Errorf("%w: wallet %q is not registered on the leader yet", ledger.ErrNotCaughtUp, w.Wallet)
	}
	n.log.InfoContext(ctx, "backend withdrawal", "request", w.ID, "principal", principal, "wallet", w.Wallet)
	var r *ledger.Request
	switch wallet.Chain {
	case "eth":
		if n.eth == nil {
			return nil, false, fmt.Errorf("%w: this cluster's leader has no Ethereum node", noderpc.ErrCreateRefused)
		}
		r, err = n.orch.CreateETHFrom(ctx, rd, withdraw.ETHWithdrawal{ID: w.ID, Wallet: w.Wallet, Asset: w.Asset, To: w.To,
			Amount: w.Amount.Big(), Initiation: w.Initiation, ExpiresAt: w.ExpiresAt, Note: w.Note})
	case "btc":
		if n.btc == nil {
			return nil, false, fmt.Errorf("%w: this cluster's leader has no Bitcoin node", noderpc.ErrCreateRefused)
		}
		if w.Asset != "BTC" {
			return nil, false, fmt.Errorf("%w: a btc wallet pays BTC, not %q", noderpc.ErrCreateRefused, w.Asset)
		}
		r, err = n.orch.CreateBTCFrom(ctx, rd, withdraw.BTCWithdrawal{ID: w.ID, Wallet: w.Wallet, To: w.To,
			Amount: w.Amount.Big(), Initiation: w.Initiation, ExpiresAt: w.ExpiresAt, Note: w.Note})
	default:
		return nil, false, fmt.Errorf("%w: wallet %q is on chain %q, which this node does not build", noderpc.ErrCreateRefused, w.Wallet, wallet.Chain)
	}
	switch {
	case errors.Is(err, withdraw.ErrDenied) && r != nil:
		return r, false, nil // recorded: the denial is the answer
	case err == nil:
		return r, false, nil
	case errors.Is(err, eth.ErrBadIntent), errors.Is(err, eth.ErrBadAddress), errors.Is(err, btc.ErrBadIntent),
		errors.Is(err, btc.ErrBadAddress), errors.Is(err, btc.ErrInsufficientFunds):
		return nil, false, fmt.Errorf("%w: %w", noderpc.ErrCreateRefused, err)
	}
	return nil, false, err
}
