package eth

import (
	"context"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
)

// What the leader needs to follow a broadcast transaction beyond RPC:
// the chain's head, an account's nonce at a mined block (to see its nonce
// used by another transaction) and whether the node still knows a
// transaction. withdraw.ETHTracker names them.

// BlockNumber returns the number of the node's latest block.
func (c *Client) BlockNumber(ctx context.Context) (uint64, error) {
	h, err := c.b.HeaderByNumber(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("eth: latest header: %w", err)
	}
	return h.Number.Uint64(), nil
}

// NonceAt returns addr's nonce after block: how many of its transactions
// were mined up to and including that block (pending ones do not count,
// unlike Nonce).
func (c *Client) NonceAt(ctx context.Context, addr common.Address, block uint64) (uint64, error) {
	n, err := c.b.NonceAt(ctx, addr, new(big.Int).SetUint64(block))
	if err != nil {
		return 0, fmt.Errorf("eth: nonce of %s at block %d: %w", addr.Hex(), block, err)
	}
	return n, nil
}

// Known reports whether the node has the transaction, in its pool or mined.
func (c *Client) Known(ctx context.Context, hash common.Hash) (bool, error) {
	_, _, err := c.b.TransactionByHash(ctx, hash)
	switch {
	case errors.Is(err, ethereum.NotFound):
		return false, nil
	case txIndexing(err):
		// Not an answer: the node may yet find it.
		return false, fmt.Errorf("eth: transaction %s: node still indexing transactions", hash.Hex())
	case err != nil:
		return false, fmt.Errorf("eth: transaction %s: %w", hash.Hex(), err)
	}
	return true, nil
}
