package eth

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/rpc"
)

// ErrNotMined is returned by Chain.Receipt while a transaction has no receipt
// (yet): not mined, or mined but not yet indexed by the node. Callers poll.
var ErrNotMined = errors.New("eth: transaction not mined")

// WaitMined polls c every interval until hash has a receipt, ctx ends, or
// the chain answers with an error other than ErrNotMined.
func WaitMined(ctx context.Context, c RPC, hash common.Hash, interval time.Duration) (*Receipt, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r, err := c.Receipt(ctx, hash)
		if !errors.Is(err, ErrNotMined) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited until %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// txIndexingData is the JSON-RPC error data go-ethereum nodes (and the
// simulated backend) return for a transaction they cannot find while their
// transaction indexer is still catching up.
const txIndexingData = "transaction indexing is in progress"

// txIndexing reports whether err is that "not found, still indexing" answer.
func txIndexing(err error) bool {
	var de rpc.DataError
	return errors.As(err, &de) && de.ErrorData() == txIndexingData
}

// RPC is what the custody service needs from an Ethereum node. It reads
// and broadcasts; building and checking transactions is done offline by
// this package's other functions.
type RPC interface {
	// ChainID returns the node's chain ID (compare it with the wallet's).
	ChainID(ctx context.Context) (*big.Int, error)
	// Nonce returns the next nonce of addr including pending transactions.
	Nonce(ctx context.Context, addr common.Address) (uint64, error)
	// Balance returns addr's balance in base units of the asset (token nil
	// means ETH) at the latest block.
	Balance(ctx context.Context, addr common.Address, token *common.Address) (*big.Int, error)
	// SuggestFees proposes EIP-1559 fees (max fee = 2 x base fee + tip) and
	// a legacy gas price.
	SuggestFees(ctx context.Context) (Fees, error)
	// EstimateGas estimates the gas limit of u sent from from.
	EstimateGas(ctx context.Context, from common.Address, u *Unsigned) (uint64, error)
	// Broadcast submits a signed transaction and returns its hash.
	Broadcast(ctx context.Context, s *Signed) (common.Hash, error)
	// Receipt returns the receipt, or ErrNotMined.
	Receipt(ctx context.Context, hash common.Hash) (*Receipt, error)
}

// Receipt is the outcome of a mined transaction.
type Receipt struct {
	Success           bool
	BlockNumber       uint64
	GasUsed           uint64
	EffectiveGasPrice *big.Int
}

// Backend is the subset of go-ethereum's client methods the adapter calls;
// both *ethclient.Client and simulated.Client satisfy it.
type Backend interface {
	ethereum.ChainIDReader
	ethereum.PendingStateReader
	ethereum.ChainStateReader
	ethereum.ContractCaller
	ethereum.GasPricer
	ethereum.GasPricer1559
	ethereum.GasEstimator
	ethereum.TransactionSender
	ethereum.TransactionReader
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
}

var (
	_ Backend = (*ethclient.Client)(nil)
	_ Backend = (simulated.Client)(nil)
	_ RPC     = (*Client)(nil)
)

// Client implements RPC over a go-ethereum Backend.
type Client struct{ b Backend }

// NewClient wraps a Backend.
func NewClient(b Backend) *Client { return &Client{b: b} }

// Dial connects to any Ethereum JSON-RPC endpoint (http, ws or ipc path).
func Dial(ctx context.Context, url string) (*Client, error) {
	c, err := ethclient.DialContext(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("eth: dial %s: %w", url, err)
	}
	return NewClient(c), nil
}

// Simulated is the embedded chain: go-ethereum's simulated backend (a real
// EVM and state, chain ID 1337, blocks made only by Commit).
type Simulated struct {
	*Client
	backend *simulated.Backend
}

// SimulatedChainID is the chain ID of the simulated backend.
var SimulatedChainID = big.NewInt(1337)

// NewSimulated starts an in-process chain with the given starting balances.
func NewSimulated(alloc types.GenesisAlloc) *Simulated {
	b := simulated.NewBackend(alloc)
	return &Simulated{Client: NewClient(b.Client()), backend: b}
}

// Commit mines the pending transactions into a block.
func (s *Simulated) Commit() common.Hash { return s.backend.Commit() }

// Close stops the chain.
func (s *Simulated) Close() error { return s.backend.Close() }

// ChainID implements RPC.
func (c *Client) ChainID(ctx context.Context) (*big.Int, error) {
	id, err := c.b.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("eth: chain id: %w", err)
	}
	return id, nil
}

// Nonce implements RPC.
func (c *Client) Nonce(ctx context.Context, addr common.Address) (uint64, error) {
	n, err := c.b.PendingNonceAt(ctx, addr)
	if err != nil {
		return 0, fmt.Errorf("eth: nonce of %s: %w", addr.Hex(), err)
	}
	return n, nil
}

// balanceOfSelector is balanceOf(address).
var balanceOfSelector = []byte{0x70, 0xa0, 0x82, 0x31}

// Balance implements RPC.
func (c *Client) Balance(ctx context.Context, addr common.Address, token *common.Address) (*big.Int, error) {
	if token == nil {
		v, err := c.b.BalanceAt(ctx, addr, nil)
		if err != nil {
			return nil, fmt.Errorf("eth: balance of %s: %w", addr.Hex(), err)
		}
		return v, nil
	}
	data := make([]byte, 36)
	copy(data, balanceOfSelector)
	copy(data[16:], addr[:])
	out, err := c.b.CallContract(ctx, ethereum.CallMsg{To: token, Data: data}, nil)
	if err != nil {
		return nil, fmt.Errorf("eth: token %s balanceOf %s: %w", token.Hex(), addr.Hex(), err)
	}
	if len(out) != 32 {
		return nil, fmt.Errorf("eth: token %s balanceOf returned %d bytes, want 32", token.Hex(), len(out))
	}
	return new(big.Int).SetBytes(out), nil
}

// SuggestFees implements RPC.
func (c *Client) SuggestFees(ctx context.Context) (Fees, error) {
	tip, err := c.b.SuggestGasTipCap(ctx)
	if err != nil {
		return Fees{}, fmt.Errorf("eth: suggest tip: %w", err)
	}
	head, err := c.b.HeaderByNumber(ctx, nil)
	if err != nil {
		return Fees{}, fmt.Errorf("eth: latest header: %w", err)
	}
	price, err := c.b.SuggestGasPrice(ctx)
	if err != nil {
		return Fees{}, fmt.Errorf("eth: suggest gas price: %w", err)
	}
	base := head.BaseFee
	if base == nil {
		base = new(big.Int)
	}
	feeCap := new(big.Int).Add(new(big.Int).Mul(base, big.NewInt(2)), tip)
	return Fees{GasPrice: price, GasTipCap: tip, GasFeeCap: feeCap}, nil
}

// EstimateGas implements RPC.
func (c *Client) EstimateGas(ctx context.Context, from common.Address, u *Unsigned) (uint64, error) {
	tx := u.tx
	msg := ethereum.CallMsg{From: from, To: tx.To(), Value: tx.Value(), Data: tx.Data()}
	if tx.Type() == types.LegacyTxType {
		msg.GasPrice = tx.GasPrice()
	} else {
		msg.GasTipCap, msg.GasFeeCap = tx.GasTipCap(), tx.GasFeeCap()
	}
	g, err := c.b.EstimateGas(ctx, msg)
	if err != nil {
		return 0, fmt.Errorf("eth: estimate gas: %w", err)
	}
	return g, nil
}

// Broadcast implements RPC.
func (c *Client) Broadcast(ctx context.Context, s *Signed) (common.Hash, error) {
	if err := c.b.SendTransaction(ctx, s.tx); err != nil {
		return common.Hash{}, fmt.Errorf("eth: broadcast %s: %w", s.Hash().Hex(), err)
	}
	return s.Hash(), nil
}

// Receipt implements RPC.
func (c *Client) Receipt(ctx context.Context, hash common.Hash) (*Receipt, error) {
	r, err := c.b.TransactionReceipt(ctx, hash)
	if errors.Is(err, ethereum.NotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotMined, hash.Hex())
	}
	if txIndexing(err) {
		return nil, fmt.Errorf("%w: %s (node still indexing transactions)", ErrNotMined, hash.Hex())
	}
	if err != nil {
		return nil, fmt.Errorf("eth: receipt %s: %w", hash.Hex(), err)
	}
	out := &Receipt{Success: r.Status == types.ReceiptStatusSuccessful, GasUsed: r.GasUsed, EffectiveGasPrice: r.EffectiveGasPrice}
	if r.BlockNumber != nil {
		out.BlockNumber = r.BlockNumber.Uint64()
	}
	return out, nil
}
