package member_test

import (
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/withdraw"
)

// TestERC20Withdrawal: a TKN withdrawal is built by the orchestrator (a
// transfer(address,uint256) call to the registered contract, gas
// estimated), approved, claimed, signed by 2 of 3 members and mined: the
// destination holds exactly the tokens. Before that, members refuse the
// claim when the ledger's request differs from the calldata (another
// recipient, another amount, ETH instead of the token) or when the stored
// transaction is a transfer on an unregistered contract, each without
// reserving, unsealing or starting anything.
func TestERC20Withdrawal(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	signers := []pki.NodeID{"n1", "n2"}
	dest := h.dests[0]
	amt := big.NewInt(250_500_000) // 250.5 TKN
	r, err := h.orch.CreateETH(h.ctx, withdraw.ETHWithdrawal{ID: "wd-tkn", Wallet: walletID, Asset: "TKN", To: dest.Hex(), Amount: amt,
		Initiation: h.initiateAsset("wd-tkn", walletID, "TKN", dest.Hex(), amt), ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Asset != "TKN" || r.To != dest.Hex() || r.Amount != amount.FromUint64(250_500_000) || r.Status != ledger.StatusAwaitingApprovals {
		t.Fatalf("request %s: %s %s to %s", r.Status, r.Amount, r.Asset, r.To)
	}
	for _, o := range []operator{bob, carol} {
		if _, err := h.orch.Approve(h.ctx, "wd-tkn", o.sign(t, "wd-tkn", r.PayloadHash, quorum.Approve)); err != nil {
			t.Fatal(err)
		}
	}
	claim, err := h.orch.Claim(h.ctx, "wd-tkn", signers)
	if err != nil {
		t.Fatal(err)
	}

	for name, edit := range map[string]func(*ledger.Request){
		"calldata pays another recipient than the request": func(r *ledger.Request) { r.To = h.dests[1].Hex() },
		"calldata moves another amount than the request":   func(r *ledger.Request) { r.Amount = amount.FromUint64(250_500_001) },
		"the request names ETH, the tx moves TKN":          func(r *ledger.Request) { r.Asset = "ETH" },
	} {
		t.Run(name, func(t *testing.T) {
			m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) { edit(st.Requests["wd-tkn"]) }})
			h.refused(n1, m, "wd-tkn", *r.Nonce, claim, member.ErrPayload)
		})
	}
	t.Run("stored tx is a transfer on an unregistered contract", func(t *testing.T) {
		fees, err := h.sim.SuggestFees(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		other := common.HexToAddress("0x3333333333333333333333333333333333333333")
		u, err := eth.NewUnsigned(eth.Intent{ChainID: big.NewInt(simChainID), Nonce: *r.Nonce, To: dest, Asset: eth.ERC20("TKN", 6, other),
			Amount: amt, GasLimit: 60000, Fees: fees})
		if err != nil {
			t.Fatal(err)
		}
		m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) {
			st.Requests["wd-tkn"].Payload, st.Requests["wd-tkn"].PayloadHash = u.Bytes(), u.PayloadHash()
		}})
		c := claim
		c.PayloadHash, c.Digest = u.PayloadHash(), u.SigningHash()
		h.refused(n1, m, "wd-tkn", *r.Nonce, c, member.ErrPayload, eth.ErrNotSignedOnline)
	})

	signed, err := h.orch.Collect(h.ctx, "wd-tkn", claim)
	if err != nil {
		t.Fatalf("genuine claim after the refusals: %v", err)
	}
	tx, err := eth.ParseSigned(signed.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Verify(r.PayloadHash, h.wallet); err != nil {
		t.Fatal(err)
	}
	if d := tx.Description(); d.Token == nil || *d.Token != tokenAddr || d.To != dest || d.Amount.Cmp(amt) != 0 {
		t.Fatalf("signed transaction %+v", d)
	}
	h.mine(tx)
	if got, err := h.sim.Balance(h.ctx, dest, &tokenAddr); err != nil || got.Cmp(amt) != 0 {
		t.Fatalf("destination holds %v TKN units (%v), want %s", got, err, amt)
	}
	if got, _ := h.sim.Balance(h.ctx, h.wallet, &tokenAddr); got.Cmp(new(big.Int).Sub(tokenSupply, amt)) != 0 {
		t.Fatalf("wallet holds %s TKN units", got)
	}
}
