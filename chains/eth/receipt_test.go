package eth

import (
	"context"
	"errors"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// receiptFault is a Backend whose TransactionReceipt returns err; any other
// call panics through the nil embedded interface.
type receiptFault struct {
	Backend
	err error
}

func (f receiptFault) TransactionReceipt(context.Context, common.Hash) (*types.Receipt, error) {
	return nil, f.err
}

// indexingError is what a go-ethereum node answers over JSON-RPC for a
// transaction it cannot find while its indexer catches up.
type indexingError struct{}

func (indexingError) Error() string          { return "transaction indexing is in progress" }
func (indexingError) ErrorCode() int         { return -32000 }
func (indexingError) ErrorData() interface{} { return "transaction indexing is in progress" }

// A node still indexing transactions means "no receipt yet", as not-found
// does: callers poll. Other errors stay errors.
func TestReceiptWhileIndexingIsNotMined(t *testing.T) {
	ctx := context.Background()
	c := NewClient(receiptFault{err: indexingError{}})
	if _, err := c.Receipt(ctx, common.Hash{1}); !errors.Is(err, ErrNotMined) {
		t.Fatalf("indexing in progress: got %v, want ErrNotMined", err)
	}
	boom := errors.New("connection refused")
	c = NewClient(receiptFault{err: boom})
	if _, err := c.Receipt(ctx, common.Hash{1}); errors.Is(err, ErrNotMined) || !errors.Is(err, boom) {
		t.Fatalf("other error: got %v, want it wrapped and not ErrNotMined", err)
	}
}
