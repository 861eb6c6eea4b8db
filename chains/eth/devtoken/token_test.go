package devtoken_test

import (
	"context"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/chains/eth/devtoken"
)

// TestTokenAccountBalances: a token placed in the simulated chain's genesis
// answers balanceOf with the balances it was given (deployment and
// transfers are tested in chains/eth).
func TestTokenAccountBalances(t *testing.T) {
	token := common.HexToAddress("0x7070707070707070707070707070707070707070")
	holder := common.HexToAddress("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
	sim := eth.NewSimulated(types.GenesisAlloc{token: devtoken.TokenAccount(map[common.Address]*big.Int{holder: big.NewInt(42)})})
	t.Cleanup(func() { _ = sim.Close() })
	for addr, want := range map[common.Address]int64{holder: 42, token: 0} {
		got, err := sim.Balance(context.Background(), addr, &token)
		if err != nil || got.Cmp(big.NewInt(want)) != 0 {
			t.Fatalf("balanceOf(%s) = %v, %v; want %d", addr.Hex(), got, err, want)
		}
	}
}
