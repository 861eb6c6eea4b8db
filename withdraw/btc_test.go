package withdraw_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/btc/btctest"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/withdraw"
)

const btcCluster = "btc-build-test"

// btcRules: one hot BTC wallet, no allowlist, a maximum fee of 0.001 BTC
// and at most 50 sat/vB.
const btcRules = `version: 1
assets:
  BTC: {decimals: 8}
allowlist:
  cooling_off: 1h
  approvals: 1
  roles: [admin]
lock:
  unlock_delay: 1h
wallets:
  - name: btc-hot
    wallets: [hot-btc]
    asset: BTC
    class: hot
    allowlist_required: false
    limits:
      per_tx: "1000"
      max_fee: "0.001"
      max_fee_rate: 50
    approvals:
      - {min: "0", required: 1, roles: [admin]}
`

var (
	bAdmin   = ledgertest.NewOperator("alice", quorum.KindHuman, quorum.RoleAdmin)
	bBackend = ledgertest.NewOperator("backend", quorum.KindBackend, quorum.RoleInitiator)
	regtest  = &chaincfg.RegressionNetParams
)

// faultyNode is the real btcd client with a hook run after each listing,
// before CreateBTC sees it (fault injection: another leader reserving
// outputs between the ledger read and the create).
type faultyNode struct {
	*btc.Client
	calls atomic.Int32
	after func(call int32)
}

func (f *faultyNode) UTXOs(ctx context.Context, addr btcutil.Address, minConf int64) ([]btc.UTXO, error) {
	us, err := f.Client.UTXOs(ctx, addr, minConf)
	n := f.calls.Add(1)
	if err == nil && f.after != nil {
		f.after(n)
	}
	return us, err
}

type btcHarness struct {
	t      *testing.T
	ctx    context.Context
	led    *ledgertest.Cluster
	node   *btc.Client
	pub    []byte
	wallet btcutil.Address
	sim    *eth.Simulated
}

// newBTCHarness starts a real btcd regtest node mining to the wallet's
// P2WPKH address past segwit activation (so there are about 330 mature
// coinbase outputs: 50, 25 and 12.5 BTC), and a real one-node ledger with
// the rules above and the wallet hot-btc recorded on btc/devnet.
func newBTCHarness(t *testing.T) *btcHarness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	h := &btcHarness{t: t, ctx: ctx, pub: key.PubKey().SerializeCompressed()}
	a, err := btc.WalletAddress(h.pub, regtest)
	if err != nil {
		t.Fatal(err)
	}
	h.wallet = a
	n := btctest.StartBtcd(t, a.EncodeAddress())
	h.node, err = btc.Dial(btc.RPCConfig{Host: n.Host, User: n.User, Pass: n.Pass, Cert: n.Cert}, regtest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.node.Close)
	if _, err := h.node.Generate(ctx, btctest.SegwitActiveHeight); err != nil {
		t.Fatal(err)
	}
	g := ledgertest.Genesis(btcCluster, 1, btcRules, bAdmin, bBackend)
	h.led = ledgertest.New(t, 1, func(cfg *ledger.Config) { cfg.Genesis = &g })
	h.led.Submit(ctx, "ceremony", g)
	h.led.Submit(ctx, "node:n1", ledger.WalletSet{Wallet: ledger.Wallet{ID: "hot-btc", Chain: "btc", Network: "devnet",
		Committee: ledgertest.GenesisNodes, Threshold: 1}})
	h.sim = eth.NewSimulated(types.GenesisAlloc{})
	t.Cleanup(func() { _ = h.sim.Close() })
	return h
}

func (h *btcHarness) orchestrator(node withdraw.UTXOSource) *withdraw.Orchestrator {
	h.t.Helper()
	b, err := btc.NewChain(map[string]string{"devnet": "regtest"})
	if err != nil {
		h.t.Fatal(err)
	}
	o, err := withdraw.New(withdraw.Config{Ledger: h.led.Leader(), ETH: h.sim, Network: "devnet", Actor: "node:n1",
		Chains: map[string]chains.Chain{"btc": b},
		BTC:    withdraw.BTCConfig{Node: node, Network: "devnet", FeeRate: 10}})
	if err != nil {
		h.t.Fatal(err)
	}
	o.AddWallet(tss.WalletInfo{Wallet: "hot-btc", Threshold: 1, PubKey: h.pub})
	return o
}

// withdrawal is the backend's signed withdrawal of sat satoshi to to.
func (h *btcHarness) withdrawal(id, to string, sat int64) withdraw.BTCWithdrawal {
	h.t.Helper()
	w := policy.Withdrawal{Wallet: "hot-btc", Asset: "BTC", To: to, Amount: amount.FromUint64(uint64(sat))}
	exp := time.Now().Add(time.Hour)
	return withdraw.BTCWithdrawal{ID: id, Wallet: "hot-btc", To: to, Amount: big.NewInt(sat), ExpiresAt: exp,
		Initiation: bBackend.Sign(h.t, btcCluster, id, w.IntentHash(id), quorum.Initiate, exp)}
}

// state returns a copy of the ledger's requests and reserved outpoints.
func (h *btcHarness) state() (map[string]*ledger.Request, map[string]string) {
	h.t.Helper()
	reqs, ops := map[string]*ledger.Request{}, map[string]string{}
	if err := h.led.Leader().ReadLinearizable(h.ctx, func(st *ledger.State) error {
		for id, r := range st.Requests {
			reqs[id] = r.Clone()
		}
		for op, by := range st.Outpoints {
			ops[op] = by
		}
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return reqs, ops
}

// reservedBy asserts the ledger reserves exactly r's outpoints for r.
func (h *btcHarness) reservedBy(r *ledger.Request) {
	h.t.Helper()
	_, ops := h.state()
	for _, op := range r.Outpoints {
		if ops[op] != r.ID {
			h.t.Errorf("%s: outpoint %s held by %q", r.ID, op, ops[op])
		}
	}
}

// disjoint fails t when a and b spend a common outpoint.
func disjoint(t *testing.T, a, b *ledger.Request) {
	t.Helper()
	for _, op := range b.Outpoints {
		if slices.Contains(a.Outpoints, op) {
			t.Fatalf("%s and %s both spend %s", a.ID, b.ID, op)
		}
	}
}

func destAddr(t *testing.T, net *chaincfg.Params) string {
	t.Helper()
	k, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := btc.WalletAddress(k.PubKey().SerializeCompressed(), net)
	if err != nil {
		t.Fatal(err)
	}
	return a.EncodeAddress()
}

const coin = 100_000_000

// TestCreateBTC: against a real btcd regtest node and a real ledger.
//
//   - 60 BTC (more than one 50 BTC coinbase) is built from the two largest
//     mature coinbases with change back to the wallet's address; the ledger
//     records chain btc, the payload and its hash, the outpoints (reserved
//     for the request), the maximum fee = inputs − outputs and the virtual
//     size, and the request awaits approvals. The same ID again returns the
//     stored request and commits nothing.
//   - A second withdrawal while the first is unsigned spends other UTXOs.
//   - Two orchestrators (two leaders' views) creating at once never share an
//     outpoint; the loser of the race is refused by the ledger
//     (ErrAllocated) and rebuilds once from fresh UTXOs. One orchestrator
//     serialises creates per wallet (each lists once); a create waiting
//     behind another gives up when its context ends. An injected
//     reservation right after the listing costs one retry; a second one is
//     returned as ErrAllocated with nothing recorded.
//   - A rejected request's outpoints are free again and are picked next.
//   - Refusals that change nothing: insufficient funds, a destination of
//     another network, a non-canonical spelling, a dust amount, a fee rate
//     outside btc.Build's range, a wallet on no btc network.
//   - Fee caps: above max_fee_rate (50 sat/vB), and above max_fee, the
//     request is denied by policy with the reason recorded and reserves
//     nothing.
func TestCreateBTC(t *testing.T) {
	h := newBTCHarness(t)
	o := h.orchestrator(h.node)
	dest := destAddr(t, regtest)

	all, err := h.node.UTXOs(h.ctx, h.wallet, 1)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, u := range all {
		total += u.Value
	}

	// 60 BTC: two 50 BTC inputs, change back to the wallet.
	w1 := h.withdrawal("wd-1", dest, 60*coin)
	r1, err := o.CreateBTC(h.ctx, w1)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Status != ledger.StatusAwaitingApprovals || r1.Chain != "btc" || r1.Network != "devnet" || r1.Asset != "BTC" || r1.To != dest || r1.Amount != amount.FromUint64(60*coin) {
		t.Fatalf("created %+v", r1)
	}
	u1, err := btc.ParseUnsigned(r1.Payload, h.pub)
	if err != nil {
		t.Fatal(err)
	}
	if u1.PayloadHash() != r1.PayloadHash {
		t.Fatal("payload hash is not the payload's")
	}
	d1 := u1.Description()
	if len(d1.Inputs) != 2 || len(d1.Outputs) != 2 || d1.Outputs[0].Address != dest || d1.Outputs[0].Value != 60*coin ||
		!d1.Outputs[1].Change || d1.Outputs[1].Address != h.wallet.EncodeAddress() {
		t.Fatalf("built %+v", d1)
	}
	var in int64
	for i, x := range d1.Inputs {
		in += x.Value
		if x.Value != 50*coin || r1.Outpoints[i] != x.OutPoint {
			t.Errorf("input %d: %s %d sat, ledger outpoint %s", i, x.OutPoint, x.Value, r1.Outpoints[i])
		}
	}
	fee := in - 60*coin - d1.Outputs[1].Value
	if r1.MaxFee != amount.FromUint64(uint64(fee)) || fee < 10*r1.VSize || r1.VSize != d1.VSize {
		t.Errorf("max fee %s, vsize %d; the transaction pays %d sat", r1.MaxFee, r1.VSize, fee)
	}
	h.reservedBy(r1)

	before := h.led.Leader().StateIndex()
	again, err := o.CreateBTC(h.ctx, w1)
	if err != nil || again.PayloadHash != r1.PayloadHash || h.led.Leader().StateIndex() != before {
		t.Fatalf("same ID again: %v, payload %x (was %x), state index %d → %d", err, again.PayloadHash, r1.PayloadHash, before, h.led.Leader().StateIndex())
	}

	// A second withdrawal while the first is unsigned: other UTXOs.
	r2, err := o.CreateBTC(h.ctx, h.withdrawal("wd-2", dest, 60*coin))
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Outpoints) != 2 {
		t.Fatalf("second spend: %v", r2.Outpoints)
	}
	disjoint(t, r1, r2)
	h.reservedBy(r2)
	h.reservedBy(r1)

	t.Run("concurrent leaders", func(t *testing.T) {
		// Two orchestrators (as if two leaders' views), one create each at
		// once: both see the same free UTXOs; the ledger refuses the loser,
		// which lists again and picks others.
		n1 := &faultyNode{Client: h.node}
		n2 := &faultyNode{Client: h.node}
		oa, ob := h.orchestrator(n1), h.orchestrator(n2)
		var wg sync.WaitGroup
		var ra, rb *ledger.Request
		var ea, eb error
		wg.Add(2)
		go func() { defer wg.Done(); ra, ea = oa.CreateBTC(h.ctx, h.withdrawal("wd-ca", dest, 60*coin)) }()
		go func() { defer wg.Done(); rb, eb = ob.CreateBTC(h.ctx, h.withdrawal("wd-cb", dest, 60*coin)) }()
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatalf("concurrent creates: %v / %v", ea, eb)
		}
		disjoint(t, ra, rb)
		h.reservedBy(ra)
		h.reservedBy(rb)
	})

	t.Run("one leader serialises per wallet", func(t *testing.T) {
		// Two creates at once on one orchestrator: one after the other,
		// each listing once (no refusal by the ledger, no retry).
		fn := &faultyNode{Client: h.node}
		ol := h.orchestrator(fn)
		var wg sync.WaitGroup
		rs := make([]*ledger.Request, 2)
		errs := make([]error, 2)
		for i := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rs[i], errs[i] = ol.CreateBTC(h.ctx, h.withdrawal(fmt.Sprint("wd-serial-", i), dest, 60*coin))
			}()
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("creates: %v / %v", errs[0], errs[1])
		}
		disjoint(t, rs[0], rs[1])
		if fn.calls.Load() != 2 {
			t.Fatalf("listed %d times for two creates, want 2", fn.calls.Load())
		}

		// While a create of the wallet holds it (blocked in its listing),
		// another whose context has ended gives up, names the wait and
		// records nothing.
		release, listed := make(chan struct{}), make(chan struct{})
		fb := &faultyNode{Client: h.node, after: func(int32) { close(listed); <-release }}
		ob := h.orchestrator(fb)
		done := make(chan error, 1)
		go func() {
			_, err := ob.CreateBTC(h.ctx, h.withdrawal("wd-holder", dest, coin))
			done <- err
		}()
		<-listed
		ended, cancel := context.WithCancel(h.ctx)
		cancel()
		if _, err := ob.CreateBTC(ended, h.withdrawal("wd-waiter", dest, coin)); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for another create") {
			t.Errorf("a create with an ended context behind another: %v", err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if reqs, _ := h.state(); reqs["wd-waiter"] != nil || reqs["wd-holder"] == nil {
			t.Fatal("the waiter was recorded, or the holder was not")
		}
	})

	t.Run("outputs reserved since the read", func(t *testing.T) {
		// Fault: right after this orchestrator listed the UTXOs (and read
		// the ledger), another leader reserves the ones it will pick. The
		// ledger refuses the first create with ErrAllocated; the second
		// listing sees the reservation and builds from other outputs.
		other := h.orchestrator(h.node)
		var stolen *ledger.Request
		fn := &faultyNode{Client: h.node}
		fn.after = func(call int32) {
			if call != 1 {
				return
			}
			var err error
			if stolen, err = other.CreateBTC(h.ctx, h.withdrawal("wd-steal", dest, 60*coin)); err != nil {
				t.Errorf("the other leader's create: %v", err)
			}
		}
		r, err := h.orchestrator(fn).CreateBTC(h.ctx, h.withdrawal("wd-retry", dest, 60*coin))
		if err != nil {
			t.Fatal(err)
		}
		if fn.calls.Load() != 2 || stolen == nil {
			t.Fatalf("listed %d times, want 2 (one retry)", fn.calls.Load())
		}
		disjoint(t, stolen, r)
		h.reservedBy(stolen)
		h.reservedBy(r)

		// Listed only once per attempt: a second loss is an error, not a loop.
		fn2 := &faultyNode{Client: h.node}
		fn2.after = func(call int32) {
			if _, err := other.CreateBTC(h.ctx, h.withdrawal(fmt.Sprint("wd-steal-", call), dest, 60*coin)); err != nil {
				t.Errorf("the other leader's create %d: %v", call, err)
			}
		}
		if _, err := h.orchestrator(fn2).CreateBTC(h.ctx, h.withdrawal("wd-lost", dest, 60*coin)); !errors.Is(err, ledger.ErrAllocated) || fn2.calls.Load() != 2 {
			t.Fatalf("lost twice: %v after %d listings; want ErrAllocated after 2", err, fn2.calls.Load())
		}
		if reqs, _ := h.state(); reqs["wd-lost"] != nil {
			t.Fatal("a refused create is in the ledger")
		}
	})

	t.Run("rejected request frees its outputs", func(t *testing.T) {
		// The largest free coins now; a request on them, rejected by an
		// operator, releases them and the next request picks them again.
		r, err := o.CreateBTC(h.ctx, h.withdrawal("wd-rej", dest, 60*coin))
		if err != nil {
			t.Fatal(err)
		}
		rej := bAdmin.Sign(t, btcCluster, r.ID, r.PayloadHash, quorum.Reject, time.Now().Add(time.Hour))
		if got, err := o.Approve(h.ctx, r.ID, rej); err != nil || got.Status != ledger.StatusRejected {
			t.Fatalf("reject: %v", err)
		}
		_, ops := h.state()
		for _, op := range r.Outpoints {
			if ops[op] != "" {
				t.Fatalf("%s still held by %q after the rejection", op, ops[op])
			}
		}
		next, err := o.CreateBTC(h.ctx, h.withdrawal("wd-after-rej", dest, 60*coin))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(next.Outpoints, r.Outpoints) {
			t.Fatalf("after the rejection: %v, want the freed %v", next.Outpoints, r.Outpoints)
		}
		h.reservedBy(next)
	})

	t.Run("refusals change nothing", func(t *testing.T) {
		upper := strings.ToUpper(dest)
		// One character changed: the bech32 checksum fails.
		last := byte('q')
		if dest[len(dest)-1] == last {
			last = 'p'
		}
		broken := dest[:len(dest)-1] + string(last)
		for _, tc := range []struct {
			name string
			w    withdraw.BTCWithdrawal
			want error
			says string
		}{
			{"insufficient funds", h.withdrawal("wd-poor", dest, total+coin), btc.ErrInsufficientFunds, "unreserved"},
			{"another network", h.withdrawal("wd-testnet", destAddr(t, &chaincfg.TestNet3Params), coin), btc.ErrBadAddress, "testnet3"},
			{"mainnet", h.withdrawal("wd-mainnet", destAddr(t, &chaincfg.MainNetParams), coin), btc.ErrBadAddress, "mainnet"},
			{"non-canonical spelling", h.withdrawal("wd-upper", upper, coin), btc.ErrBadAddress, "canonical"},
			{"malformed destination", h.withdrawal("wd-bad", broken, coin), btc.ErrBadAddress, "checksum"},
			{"dust", h.withdrawal("wd-dust", dest, 293), btc.ErrDust, "293"},
			{"zero amount", h.withdrawal("wd-zero", dest, 0), btc.ErrBadIntent, ""},
			{"fee rate beyond btc.MaxFeeRate", func() withdraw.BTCWithdrawal {
				w := h.withdrawal("wd-absurd", dest, coin)
				w.FeeRate = btc.MaxFeeRate + 1
				return w
			}(), btc.ErrBadIntent, "fee rate"},
		} {
			reqs, ops := h.state()
			before := h.led.Leader().StateIndex()
			r, err := o.CreateBTC(h.ctx, tc.w)
			if !errors.Is(err, tc.want) || r != nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%s: %v, %v; want %v saying %q", tc.name, r, err, tc.want, tc.says)
			}
			reqs2, ops2 := h.state()
			if h.led.Leader().StateIndex() != before || len(reqs2) != len(reqs) || len(ops2) != len(ops) {
				t.Errorf("%s changed the ledger", tc.name)
			}
		}
		// A wallet the ledger has not on btc/devnet.
		o.AddWallet(tss.WalletInfo{Wallet: "ghost", Threshold: 1, PubKey: h.pub})
		w := h.withdrawal("wd-ghost", dest, coin)
		w.Wallet = "ghost"
		if _, err := o.CreateBTC(h.ctx, w); err == nil || !strings.Contains(err.Error(), "not in the ledger") {
			t.Errorf("unknown wallet: %v", err)
		}
	})

	t.Run("fee caps denied by policy", func(t *testing.T) {
		for _, tc := range []struct {
			id     string
			rate   int64
			reason policy.Reason
		}{
			// 60 sat/vB × ~209 vB ≈ 0.000125 BTC: under max_fee, over the rate.
			{"wd-rate", 60, policy.ReasonFeeRateOverCap},
			// 1000 sat/vB: over the absolute max_fee (0.001 BTC) first.
			{"wd-fee", 1000, policy.ReasonFeeOverCap},
		} {
			w := h.withdrawal(tc.id, dest, 60*coin)
			w.FeeRate = tc.rate
			_, before := h.state()
			r, err := o.CreateBTC(h.ctx, w)
			if !errors.Is(err, withdraw.ErrDenied) || r == nil {
				t.Fatalf("%s: %v, %v; want ErrDenied and the recorded request", tc.id, r, err)
			}
			reqs, after := h.state()
			stored := reqs[tc.id]
			if stored == nil || stored.Status != ledger.StatusRejected || stored.Decision.Reason != tc.reason || stored.VSize <= 0 {
				t.Fatalf("%s: recorded %+v", tc.id, stored)
			}
			if len(after) != len(before) {
				t.Errorf("%s: a denied request reserved outpoints", tc.id)
			}
			for _, op := range stored.Outpoints {
				if after[op] != "" {
					t.Errorf("%s: %s held by %q", tc.id, op, after[op])
				}
			}
		}
		// At the cap exactly: allowed.
		w := h.withdrawal("wd-at-cap", dest, 60*coin)
		w.FeeRate = 50
		if r, err := o.CreateBTC(h.ctx, w); err != nil || r.Status != ledger.StatusAwaitingApprovals {
			t.Fatalf("50 sat/vB: %v", err)
		}
	})
}
