package member_test

import (
	"math/big"
	"testing"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/signer/member"
)

// TestFeeOverCapNeverSigned (SECURITY 30): the leader's orchestration
// records the transaction's maximum fee in the request, and a leader
// building a small transfer with a huge fee cannot get it signed: a forged
// ledger presenting it as approved and claimed is refused by the member's
// own policy check, with nothing reserved, unsealed or started.
func TestFeeOverCapNeverSigned(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	honest := h.request("wd-fee-template", h.dests[0], ether(1, 0), bob, carol)
	if honest.MaxFee.Sign() == 0 || honest.Status != ledger.StatusApproved {
		t.Fatalf("honest request: max fee %s, status %s", honest.MaxFee, honest.Status)
	}

	// 0.1 ETH with a fee cap of 1,000 gwei x 21,000 gas = 0.021 ETH, over
	// the rule's 0.01 ETH cap.
	u, err := eth.NewUnsigned(eth.Intent{ChainID: big.NewInt(simChainID), Nonce: 40, To: h.dests[0], Asset: eth.Asset{Symbol: "ETH", Decimals: 18},
		Amount: ether(0, 1), GasLimit: 21000, Fees: eth.Fees{GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(1e12)}})
	if err != nil {
		t.Fatal(err)
	}
	f := h.forge("wd-fee", u)
	m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) { f.install(st, honest.ID) }})
	h.refused(n1, m, "wd-fee", 40, f.claim(), member.ErrPolicy, policy.ErrFeeOverCap)
}
