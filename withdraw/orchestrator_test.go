package withdraw_test

import (
	"context"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/withdraw"
)

// TestCreateETHRefusesBadInput: an incomplete configuration is refused, and
// a withdrawal naming an unknown wallet, a malformed or non-canonical
// destination, a non-positive amount or an asset that is neither ETH nor a
// token of the eth adapter's registry is refused with a clear error
// before anything reaches the ledger. (The orchestrator's happy path and its
// claims run end to end in signer/member's tests.)
func TestCreateETHRefusesBadInput(t *testing.T) {
	if _, err := withdraw.New(withdraw.Config{}); err == nil {
		t.Fatal("an empty configuration was accepted")
	}
	c := ledgertest.New(t, 1, nil)
	sim := eth.NewSimulated(types.GenesisAlloc{})
	t.Cleanup(func() { _ = sim.Close() })
	o, err := withdraw.New(withdraw.Config{Ledger: c.Leader(), ETH: sim, Network: "devnet", Actor: "node:n1",
		Chains: map[string]chains.Chain{"eth": eth.NewChain(map[string]uint64{"devnet": 1337})}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	o.AddWallet(tss.WalletInfo{Wallet: "hot", Threshold: 1, PubKey: key.PubKey().SerializeCompressed()})
	dest := "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
	before := c.Leader().StateIndex()
	for name, w := range map[string]withdraw.ETHWithdrawal{
		"unknown wallet":         {ID: "w1", Wallet: "cold", To: dest, Amount: big.NewInt(1)},
		"malformed destination":  {ID: "w2", Wallet: "hot", To: "0x1234", Amount: big.NewInt(1)},
		"non-canonical spelling": {ID: "w3", Wallet: "hot", To: strings.ToLower(dest), Amount: big.NewInt(1)},
		"zero amount":            {ID: "w4", Wallet: "hot", To: dest, Amount: big.NewInt(0)},
		"no amount":              {ID: "w5", Wallet: "hot", To: dest},
		"negative amount":        {ID: "w6", Wallet: "hot", To: dest, Amount: big.NewInt(-1)},
		"unregistered token":     {ID: "w7", Wallet: "hot", Asset: "USDC", To: dest, Amount: big.NewInt(1)},
	} {
		w.ExpiresAt = time.Now().Add(time.Hour)
		_, err := o.CreateETH(context.Background(), w)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if name != "unknown wallet" && name != "malformed destination" && !errors.Is(err, eth.ErrBadIntent) {
			t.Errorf("%s: %v, want eth.ErrBadIntent", name, err)
		}
	}
	if got := c.Leader().StateIndex(); got != before {
		t.Fatalf("refused withdrawals changed the ledger: state index %d, was %d", got, before)
	}
	_ = c.Leader().ReadLocal(func(st *ledger.State) error {
		if len(st.Requests) != 0 {
			t.Fatalf("requests in the ledger: %d", len(st.Requests))
		}
		return nil
	})
}
