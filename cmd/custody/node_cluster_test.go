package main

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// procWallet is the cluster's hot ETH wallet (the default rules' eth-hot-1).
const procWallet = "eth-hot-1"

// createWallet has alice and bob approve a 2-of-4 wallet over every node;
// the leader's loop runs the keygen. It returns the wallet's address once
// every node records it active with one key.
func (c *procCluster) createWallet() common.Address {
	c.t.Helper()
	spec := ledger.WalletSpec{ID: "create-" + procWallet, Wallet: procWallet, Chain: "eth", Network: "devnet", Committee: procNodes, Threshold: 1}
	c.submit("alice", ledger.WalletCreate{Change: spec, Approvals: []quorum.Approval{
		c.sign("alice", spec.ID, spec.PayloadHash(), quorum.Approve), c.sign("bob", spec.ID, spec.PayloadHash(), quorum.Approve)}})
	var pub []byte
	for _, id := range procNodes {
		// A 4-party keygen under -race on a busy machine: bound by the
		// nodes' keygen timeout, not the usual poll bound.
		ledgertest.PollFor(c.t, 5*time.Minute, "wallet active on "+string(id), func() error {
			v, err := c.rpc.Wallet(c.ctx, id, procWallet)
			if err != nil {
				return err
			}
			if !v.Wallet.Active() || len(v.Wallet.PubKey) != 33 {
				return fmt.Errorf("wallet %s", v.Wallet.Status)
			}
			if pub == nil {
				pub = v.Wallet.PubKey
			} else if string(pub) != string(v.Wallet.PubKey) {
				return fmt.Errorf("%s records another key", id)
			}
			return nil
		})
	}
	addr, err := eth.AddressFromPublicKey(pub)
	if err != nil {
		c.t.Fatal(err)
	}
	return addr
}

// walletRegistered waits until every running node's member registered the
// wallet since the node last started, as on a cluster that just made it: a
// node started again applies the ledger first, and until its member
// registers the wallet it refuses to sign with it.
func (c *procCluster) walletRegistered() {
	c.t.Helper()
	for _, id := range procNodes {
		if p := c.procs[id]; p == nil || exited(p) {
			continue
		}
		c.poll(string(id)+"'s member registering "+procWallet, func() error {
			if !c.logHas(id, "wallet registered") {
				return errors.New("no \"wallet registered\" line since it started")
			}
			return nil
		})
	}
}

// newWalletCluster starts the four nodes, creates the 2-of-4 wallet and
// funds it with 10 ETH.
func newWalletCluster(t *testing.T) (*procCluster, common.Address) {
	t.Helper()
	c := newProcCluster(t)
	start := time.Now()
	for _, id := range procNodes {
		c.start(id)
	}
	wallet := c.createWallet()
	// Most of a process test's time; it varies with the machine's load
	// (a leader change under load can make the nodes run the keygen again).
	t.Logf("the nodes started and made %s in %s", procWallet, time.Since(start).Round(100*time.Millisecond))
	c.fund(wallet, ether(10))
	return c, wallet
}

// fund sends value from the chain's funded account to addr (mined on send).
func (c *procCluster) fund(addr common.Address, value *big.Int) {
	c.t.Helper()
	k, _ := crypto.ToECDSA(c.funder)
	nonce, err := c.chain.Nonce(c.ctx, crypto.PubkeyToAddress(k.PublicKey))
	if err != nil {
		c.t.Fatal(err)
	}
	fees, err := c.chain.SuggestFees(c.ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	tx, err := types.SignNewTx(k, types.LatestSignerForChainID(eth.SimulatedChainID), &types.DynamicFeeTx{
		ChainID: eth.SimulatedChainID, Nonce: nonce, GasTipCap: fees.GasTipCap, GasFeeCap: fees.GasFeeCap, Gas: 21000, To: &addr, Value: value})
	if err != nil {
		c.t.Fatal(err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		c.t.Fatal(err)
	}
	s, err := eth.ParseSigned(raw)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.chain.Broadcast(c.ctx, s); err != nil {
		c.t.Fatal(err)
	}
	c.chain.Commit()
}

// withdrawal builds the hot withdrawal of amt wei from the wallet to dest
// (the chain's nonce and fees, the backend's initiation) and submits
// request.create through the node RPC.
func (c *procCluster) withdrawal(id string, from, dest common.Address, amt *big.Int) ledger.RequestCreate {
	c.t.Helper()
	nonce, err := c.chain.Nonce(c.ctx, from)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.withdrawalAt(id, nonce, dest, amt)
}

// withdrawalAt is withdrawal with the nonce given (a second pending
// withdrawal of one wallet).
func (c *procCluster) withdrawalAt(id string, nonce uint64, dest common.Address, amt *big.Int) ledger.RequestCreate {
	c.t.Helper()
	fees, err := c.chain.SuggestFees(c.ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	u, err := eth.NewUnsigned(eth.Intent{ChainID: eth.SimulatedChainID, Nonce: nonce, To: dest, Asset: eth.ETH, Amount: amt, GasLimit: 21000, Fees: fees})
	if err != nil {
		c.t.Fatal(err)
	}
	chain, err := eth.New(eth.Config{Networks: map[string]uint64{"devnet": 1337}})
	if err != nil {
		c.t.Fatal(err)
	}
	parsed, err := chain.ParseUnsigned("devnet", u.Bytes())
	if err != nil {
		c.t.Fatal(err)
	}
	tr := parsed.Transfer()
	a, err := amount.FromBig(amt)
	if err != nil {
		c.t.Fatal(err)
	}
	intent := policy.Withdrawal{Wallet: procWallet, Asset: "ETH", To: dest.Hex(), Amount: a}
	init := c.sign("exchange", id, intent.IntentHash(id), quorum.Initiate)
	rc := ledger.RequestCreate{ID: id,
		Withdrawal: policy.Withdrawal{Wallet: procWallet, Asset: tr.Asset, Chain: "eth", Network: "devnet", To: tr.To, Amount: tr.Amount, MaxFee: tr.MaxFee},
		Payload:    u.Bytes(), PayloadHash: u.PayloadHash(), Nonce: &nonce, ExpiresAt: time.Now().Add(time.Hour), Initiation: &init}
	out := c.submit("exchange", rc)
	if out.Request == nil || out.Request.Status != ledger.StatusAwaitingApprovals {
		c.t.Fatalf("created %+v", out.Request)
	}
	return rc
}

func (c *procCluster) approve(rc ledger.RequestCreate, op string) {
	c.t.Helper()
	c.submit(op, ledger.Approve{RequestID: rc.ID, Approval: c.sign(op, rc.ID, rc.PayloadHash, quorum.Approve)})
}

// signedOn waits until every listed node's replica holds the request
// signed, all with the same transaction, and returns one view.
func (c *procCluster) signedOn(req string, nodes ...pki.NodeID) noderpc.RequestView {
	c.t.Helper()
	var first noderpc.RequestView
	for _, id := range nodes {
		c.poll(req+" signed on "+string(id), func() error {
			v, err := c.rpc.Request(c.ctx, id, req)
			if err != nil {
				return err
			}
			if !v.Request.Status.Signed() { // signed, or broadcast and later
				return fmt.Errorf("%s", v.Request.Status)
			}
			if first.Request == nil {
				first = v
			} else if string(first.Request.Result.Signed) != string(v.Request.Result.Signed) {
				c.t.Fatalf("%s holds another signed transaction", id)
			}
			return nil
		})
	}
	return first
}

// mined checks the signed transaction pays dest from the wallet, waits for
// the leader to broadcast it (mined on send) and to record it confirmed
// (the test mines blocks on top until it is deep enough), and checks the
// receipt.
func (c *procCluster) mined(v noderpc.RequestView, from, dest common.Address) {
	c.t.Helper()
	tx, err := eth.ParseSigned(v.Request.Result.Signed)
	if err != nil {
		c.t.Fatal(err)
	}
	if tx.From() != from || *tx.Transaction().To() != dest {
		c.t.Fatalf("signed tx from %s to %s", tx.From(), tx.Transaction().To())
	}
	id := v.Request.ID
	c.poll(id+" confirmed", func() error {
		for _, n := range procNodes {
			got, err := c.rpc.Request(c.ctx, n, id)
			if err == nil && got.Request.Status == ledger.StatusConfirmed {
				return nil
			}
		}
		c.chain.Commit()
		return fmt.Errorf("%s not confirmed yet", id)
	})
	if rc, err := eth.WaitMined(c.ctx, c.chain, tx.Hash(), 50*time.Millisecond); err != nil || !rc.Success {
		c.t.Fatalf("receipt %+v, %v", rc, err)
	}
}

// TestNodeProcessCluster: four `node run` processes bootstrap from the
// genesis cluster init wrote; a wallet approved by two admins gets its key
// by the leader's keygen; a withdrawal approved by two operators is signed
// (the same transaction on every node) and mined on the served chain.
// Then the leader is killed (-9) right after a second withdrawal's
// approvals: the new leader completes it, with one result; finally every
// node is stopped with SIGTERM and started again and no request is lost.
//
// Then its subtests run on the same cluster, one after another (one
// cluster and one keygen for all; each leaves every node running): the
// failure tests MemberKilled and LeaderStopped (node_failure_test.go),
// then OperatorCLI, the operator CLI's scripts (testdata/*.txtar), last:
// it locks the wallet and suspends an approver. A subtest that fails may
// leave the cluster in any state, so the ones after it do not run.
func TestNodeProcessCluster(t *testing.T) {
	c, wallet := newWalletCluster(t)
	dest := common.HexToAddress("0x00000000000000000000000000000000000000d1")

	rc := c.withdrawal("wd-1", wallet, dest, ether(1))
	c.approve(rc, "bob")
	c.approve(rc, "carol")
	v := c.signedOn("wd-1", procNodes...)
	if len(v.Sessions) != 1 || v.Request.Result.SessionID != v.Sessions[0] {
		t.Fatalf("wd-1: sessions %v, result of %s", v.Sessions, v.Request.Result.SessionID)
	}
	c.mined(v, wallet, dest)

	// The real binary's metrics listener: every node ready and alive, the
	// signed session counted by the node that led it, one leader.
	signed, leaders := 0, 0
	for _, id := range procNodes {
		c.poll(string(id)+" /readyz 200", func() error {
			st, body, err := c.metricsGet(id, daemon.PathReadyz)
			if err != nil || st != 200 || !strings.Contains(body, `"ready":true`) {
				return fmt.Errorf("%d %s %v", st, body, err)
			}
			return nil
		})
		if st, body, err := c.metricsGet(id, daemon.PathHealthz); err != nil || st != 200 {
			t.Errorf("%s /healthz: %d %s %v", id, st, body, err)
		}
		st, body, err := c.metricsGet(id, daemon.PathMetrics)
		if err != nil || st != 200 {
			t.Fatalf("%s /metrics: %d %v", id, st, err)
		}
		if strings.Contains(body, "custody_signing_sessions_total{outcome=\"signed\"} 1\n") {
			signed++
		}
		if strings.Contains(body, "custody_raft_state{state=\"leader\"} 1\n") {
			leaders++
		}
	}
	if signed != 1 || leaders != 1 {
		t.Errorf("/metrics: %d nodes count one signed session, %d report leading; want 1 and 1", signed, leaders)
	}

	// kill -9 of the leader right after the approvals.
	rc2 := c.withdrawal("wd-2", wallet, dest, ether(1))
	c.approve(rc2, "bob")
	old := c.leader()
	c.approve(rc2, "carol")
	if err := c.procs[old].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c.wait(old, 30*time.Second)
	var alive []pki.NodeID
	for _, id := range procNodes {
		if id != old {
			alive = append(alive, id)
		}
	}
	v2 := c.signedOn("wd-2", alive...)
	if n := len(v2.Sessions); n < 1 || n > 2 || v2.Request.Result.SessionID != v2.Sessions[slices.Index(v2.Sessions, v2.Request.Result.SessionID)] {
		t.Fatalf("wd-2: sessions %v, result of %s", v2.Sessions, v2.Request.Result.SessionID)
	}
	c.mined(v2, wallet, dest)
	c.start(old)
	c.signedOn("wd-2", old)

	// Restart every node: nothing is lost.
	before := map[string]noderpc.RequestView{}
	for _, req := range []string{"wd-1", "wd-2"} {
		v, err := c.rpc.Request(c.ctx, "n1", req)
		if err != nil {
			t.Fatal(err)
		}
		before[req] = v
	}
	for _, id := range procNodes {
		c.signal(id, syscall.SIGTERM)
	}
	for _, id := range procNodes {
		if code := c.wait(id, time.Minute); code != 0 {
			t.Fatalf("%s: exit %d after SIGTERM", id, code)
		}
	}
	for _, id := range procNodes {
		c.start(id)
	}
	c.leader()
	for req, b := range before {
		for _, id := range procNodes {
			c.poll(req+" back on "+string(id), func() error {
				v, err := c.rpc.Request(c.ctx, id, req)
				if err != nil {
					return err
				}
				if v.Request.Status != b.Request.Status || string(v.Request.Result.Signed) != string(b.Request.Result.Signed) || !slices.Equal(v.Sessions, b.Sessions) {
					return errors.New("differs from before the restart")
				}
				return nil
			})
		}
	}

	for _, st := range []struct {
		name string
		run  func(t *testing.T, wallet common.Address)
	}{
		{"MemberKilled", c.memberKilled},
		{"LeaderStopped", c.leaderStopped},
		{"OperatorCLI", c.operatorScripts},
	} {
		c.walletRegistered()
		if !c.sub(st.name, func(t *testing.T) { st.run(t, wallet) }) {
			t.Fatalf("%s failed: the cluster's later subtests did not run", st.name)
		}
	}
}
