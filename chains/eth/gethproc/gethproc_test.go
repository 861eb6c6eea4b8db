package gethproc_test

import (
	"context"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/custody-dev/custody/chains/eth/gethproc"
	"github.com/custody-dev/custody/chains/eth/gethtest"
)

// TestFundAndMine: a real geth --dev (the pinned release) answers chain ID
// 1337, funds an address from its developer account, and Mine adds exactly
// one block.
func TestFundAndMine(t *testing.T) {
	bin := gethtest.Find(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := gethproc.Start(ctx, gethproc.Config{Bin: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	if !strings.HasPrefix(n.Version, "Geth/v"+gethproc.Version+"-") {
		t.Errorf("geth answers %q, want the pinned v%s (make tools-geth)", n.Version, gethproc.Version)
	}
	c, err := ethclient.DialContext(ctx, n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := common.HexToAddress("0x00000000000000000000000000000000c0ffee01")
	wei := big.NewInt(1e18)
	if _, err := n.Fund(ctx, to, wei); err != nil {
		t.Fatal(err)
	}
	if got, err := c.BalanceAt(ctx, to, nil); err != nil || got.Cmp(wei) != 0 {
		t.Fatalf("balance %v (%v), want %v", got, err, wei)
	}
	before, err := c.BlockNumber(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Mine(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := c.BlockNumber(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Fatalf("Mine: block %d → %d, want one block", before, after)
	}
}
