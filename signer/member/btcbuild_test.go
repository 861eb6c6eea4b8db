package member_test

import (
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/btc/btctest"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/withdraw"
)

// startRegtest starts a btcd regtest node mining to the hot BTC wallet's
// address (addBTCWallet) past segwit activation, so the wallet holds about
// 330 mature coinbases (50, 25 and 12.5 BTC), and returns a client and the
// wallet's address.
func (h *harness) startRegtest() (*btc.Client, btcutil.Address) {
	h.t.Helper()
	walletAddr, err := btc.WalletAddress(h.info.PubKey, btcNet)
	if err != nil {
		h.t.Fatal(err)
	}
	n := btctest.StartBtcd(h.t, walletAddr.EncodeAddress())
	node, err := btc.Dial(btc.RPCConfig{Host: n.Host, User: n.User, Pass: n.Pass, Cert: n.Cert}, btcNet)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(node.Close)
	if _, err := node.Generate(h.ctx, btctest.SegwitActiveHeight); err != nil {
		h.t.Fatal(err)
	}
	return node, walletAddr
}

// btcOrchestrator is the harness's leader orchestration with Bitcoin
// withdrawals built from node's UTXOs (10 sat/vB by default).
func (h *harness) btcOrchestrator(node withdraw.UTXOSource) *withdraw.Orchestrator {
	h.t.Helper()
	var signers []withdraw.Member
	for _, id := range committee {
		signers = append(signers, h.members[id].m)
	}
	o, err := withdraw.New(withdraw.Config{Ledger: h.leader(), ETH: h.sim, Chains: testChains(), Network: network, Actor: "node:n1", Members: signers,
		BTC: withdraw.BTCConfig{Node: node, Network: network, FeeRate: 10}})
	if err != nil {
		h.t.Fatal(err)
	}
	info := h.info
	info.Wallet = btcWalletID
	o.AddWallet(info)
	return o
}

// createBTCWithdrawal has the leader build and create a withdrawal of amt
// satoshi to dest, initiated by the backend, and records the approvals of
// ops.
func (h *harness) createBTCWithdrawal(o *withdraw.Orchestrator, id, dest string, amt int64, ops ...operator) *ledger.Request {
	h.t.Helper()
	a := amount.FromUint64(uint64(amt))
	r, err := o.CreateBTC(h.ctx, withdraw.BTCWithdrawal{ID: id, Wallet: btcWalletID, To: dest, Amount: a.Big(),
		Initiation: h.initiateAsset(id, btcWalletID, "BTC", dest, a.Big()), ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		h.t.Fatalf("create %s: %v", id, err)
	}
	for _, op := range ops {
		if r, err = o.Approve(h.ctx, id, op.sign(h.t, id, r.PayloadHash, quorum.Approve)); err != nil {
			h.t.Fatalf("approve %s by %s: %v", id, op.ID, err)
		}
	}
	return r
}

// TestBTCCreateSignBroadcast: the leader builds Bitcoin withdrawals itself
// (withdraw.CreateBTC), end to end against a real btcd regtest node whose
// coinbases pay the hot wallet (the committee's tss key). 60 BTC needs two
// of the 50 BTC coinbases: the leader lists the wallet's UTXOs through the
// node's address index, builds a two-input spend with change back to the
// wallet's address and creates it in the ledger, which reserves both
// outpoints. A second withdrawal created while the first is unsigned
// spends two other coinbases. Both are approved, signed by 2-of-3 signer
// sets (one tss session per input), accepted by btcd and mined: each
// destination holds exactly its amount, each change output pays the
// wallet's address inputs − amount − the fee the ledger recorded.
func TestBTCCreateSignBroadcast(t *testing.T) {
	h := newHarness(t)
	h.addBTCWallet()
	node, walletAddr := h.startRegtest()
	o := h.btcOrchestrator(node)

	const coin = 100_000_000
	spends := []struct {
		id      string
		dest    string
		amt     int64
		signers []pki.NodeID
	}{
		{"wd-btc-built-1", btcDest(t), 60 * coin, []pki.NodeID{"n1", "n3"}},
		{"wd-btc-built-2", btcDest(t), 70 * coin, []pki.NodeID{"n2", "n3"}},
	}
	reqs := make([]*ledger.Request, len(spends))
	for i, s := range spends {
		reqs[i] = h.createBTCWithdrawal(o, s.id, s.dest, s.amt, bob, carol)
		if reqs[i].Status != ledger.StatusApproved || len(reqs[i].Outpoints) != 2 {
			t.Fatalf("%s: %s, outpoints %v", s.id, reqs[i].Status, reqs[i].Outpoints)
		}
	}
	var held map[string]string
	h.cluster.OnLeader(func(l *ledger.Store) error {
		return l.ReadLinearizable(h.ctx, func(st *ledger.State) error {
			held = map[string]string{}
			for op, by := range st.Outpoints {
				held[op] = by
			}
			return nil
		})
	})
	for _, r := range reqs {
		for _, op := range r.Outpoints {
			if held[op] != r.ID {
				t.Fatalf("outpoint %s held by %q, want %s (the two spends overlap or are not reserved)", op, held[op], r.ID)
			}
		}
	}

	for i, s := range spends {
		r := reqs[i]
		u, err := btc.ParseUnsigned(r.Payload, h.info.PubKey)
		if err != nil {
			t.Fatal(err)
		}
		d := u.Description()
		if len(d.Outputs) != 2 || d.Outputs[0].Address != s.dest || d.Outputs[0].Value != s.amt ||
			!d.Outputs[1].Change || d.Outputs[1].Address != walletAddr.EncodeAddress() || r.MaxFee != amount.FromUint64(uint64(d.Fee)) {
			t.Fatalf("%s: built %+v, ledger max fee %s", s.id, d, r.MaxFee)
		}
		signed, err := o.Sign(h.ctx, s.id, s.signers)
		if err != nil {
			t.Fatalf("%s: sign: %v", s.id, err)
		}
		if len(signed.Signature) != 65*2 {
			t.Fatalf("%s: %d signature bytes, want one signature per input", s.id, len(signed.Signature))
		}
		tx, err := u.VerifySigned(signed.Raw)
		if err != nil {
			t.Fatalf("%s: %v", s.id, err)
		}
		txid, err := node.Broadcast(h.ctx, tx)
		if err != nil {
			t.Fatalf("%s: btcd refused the signed spend: %v", s.id, err)
		}
		blocks, err := node.Generate(h.ctx, 1)
		if err != nil || len(blocks) != 1 {
			t.Fatal(blocks, err)
		}
		if in, err := node.BlockContains(h.ctx, blocks[0], txid); err != nil || !in {
			t.Fatalf("%s: tx not in block %s: %v", s.id, blocks[0], err)
		}
		if st := h.read(s.id); st.Status != ledger.StatusSigned || st.Result.TxHash != txid.String() {
			t.Fatalf("%s: ledger %s, tx hash %q, mined %s", s.id, st.Status, st.Result.TxHash, txid)
		}
		destAddr, err := btc.ParseAddress(s.dest, btcNet)
		if err != nil {
			t.Fatal(err)
		}
		got, err := node.UTXOs(h.ctx, destAddr, 1)
		if err != nil || len(got) != 1 || got[0].Value != s.amt || got[0].OutPoint != (wire.OutPoint{Hash: txid, Index: 0}) {
			t.Fatalf("%s: destination utxos %+v %v", s.id, got, err)
		}
		change := changeOf(t, node, walletAddr, wire.OutPoint{Hash: txid, Index: 1})
		if spent := d.Inputs[0].Value + d.Inputs[1].Value; change != spent-s.amt-d.Fee {
			t.Fatalf("%s: change %d sat, want inputs %d − amount %d − fee %d", s.id, change, spent, s.amt, d.Fee)
		}
	}
}

// changeOf is the value of the wallet's confirmed output op (fails t when
// the wallet has no such output).
func changeOf(t *testing.T, node *btc.Client, wallet btcutil.Address, op wire.OutPoint) int64 {
	t.Helper()
	us, err := node.UTXOs(t.Context(), wallet, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.OutPoint == op {
			return u.Value
		}
	}
	t.Fatalf("the wallet has no output %s", op)
	return 0
}
