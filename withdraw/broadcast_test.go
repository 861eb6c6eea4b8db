package withdraw_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/withdraw"
)

// faultyETH is the simulated chain with faults injected per transaction
// hash: a broadcast swallowed (the node never sees it: dropped), a receipt
// reported failed (reverted), the wallet's mined nonce reported past a
// value (another transaction used it: replaced).
type faultyETH struct {
	*eth.Simulated
	mu         sync.Mutex
	swallow    map[common.Hash]bool
	revert     map[common.Hash]bool
	nonceFloor uint64
	sends      map[common.Hash]int
}

func (f *faultyETH) Broadcast(ctx context.Context, s *eth.Signed) (common.Hash, error) {
	f.mu.Lock()
	f.sends[s.Hash()]++
	swallow := f.swallow[s.Hash()]
	f.mu.Unlock()
	if swallow {
		return s.Hash(), nil
	}
	return f.Simulated.Broadcast(ctx, s)
}

func (f *faultyETH) Receipt(ctx context.Context, h common.Hash) (*eth.Receipt, error) {
	r, err := f.Simulated.Receipt(ctx, h)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && f.revert[h] {
		c := *r
		c.Success = false
		return &c, nil
	}
	return r, err
}

func (f *faultyETH) NonceAt(ctx context.Context, a common.Address, block uint64) (uint64, error) {
	n, err := f.Simulated.NonceAt(ctx, a, block)
	f.mu.Lock()
	defer f.mu.Unlock()
	return max(n, f.nonceFloor), err
}

func (f *faultyETH) sent(h common.Hash) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sends[h]
}

var _ withdraw.ETHTracker = (*faultyETH)(nil)

type broadcastHarness struct {
	*walletHarness
	node *faultyETH
	orch *withdraw.Orchestrator
	dest common.Address
}

// newBroadcastHarness creates the 2-of-3 wallet "hot" by keygen on the
// harness's members, funds it on the simulated chain and returns the
// leader's orchestrator over the fault-injecting node.
func newBroadcastHarness(t *testing.T) *broadcastHarness {
	h := &broadcastHarness{walletHarness: newWalletHarness(t), dest: common.HexToAddress("0x00000000000000000000000000000000000b0b0b")}
	h.approve("create-hot", "hot", []pki.NodeID{"n1", "n2", "n3"}, 1)
	// A leader change under load fails the keygen of the creator bound to
	// the old leader; a fresh one on the new leader runs a new session.
	var pub []byte
	ledgertest.Poll(t, "wallet hot keyed", func() error {
		var err error
		pub, err = h.creator().CreateWallet(h.ctx, "hot")
		return err
	})
	// A retried keygen (a leader change under load) leaves n1 a share of
	// each session; the wallet's is the one of the key the ledger recorded.
	refs, err := h.nodes["n1"].shares.List()
	if err != nil || len(refs) == 0 {
		t.Fatalf("n1's shares: %v %v", refs, err)
	}
	var info tss.WalletInfo
	for _, r := range refs {
		sh, err := h.nodes["n1"].shares.Get(r.Wallet, r.Party, r.ShareID)
		if err != nil {
			t.Fatal(err)
		}
		if i := sh.Info(); bytes.Equal(i.PubKey, pub) {
			info = i
		}
		sh.Wipe()
	}
	if info.PubKey == nil {
		t.Fatalf("n1 holds no share of the keyed wallet's key among %d", len(refs))
	}
	from, err := eth.AddressFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sim := eth.NewSimulated(types.GenesisAlloc{from: {Balance: new(big.Int).Mul(big.NewInt(100), big.NewInt(1e18))}})
	t.Cleanup(func() { _ = sim.Close() })
	h.node = &faultyETH{Simulated: sim, swallow: map[common.Hash]bool{}, revert: map[common.Hash]bool{}, sends: map[common.Hash]int{}}
	var signers []withdraw.Member
	for _, id := range []pki.NodeID{"n1", "n2", "n3"} {
		signers = append(signers, h.nodes[id].m)
	}
	leader := h.cluster.Leader()
	h.orch, err = withdraw.New(withdraw.Config{Ledger: leader, ETH: h.node, Network: "devnet", Actor: "node:" + string(leader.ID()),
		Chains: map[string]chains.Chain{"eth": eth.NewChain(map[string]uint64{"devnet": 1337})}, Members: signers})
	if err != nil {
		t.Fatal(err)
	}
	h.orch.AddWallet(info)
	return h
}

// signed creates, approves (alice, bob) and signs a withdrawal of wei.
func (h *broadcastHarness) signed(id string, wei int64) *ledger.Request {
	h.t.Helper()
	amt := big.NewInt(wei)
	a, _ := amount.FromBig(amt)
	w := policy.Withdrawal{Wallet: "hot", Asset: "ETH", To: h.dest.Hex(), Amount: a}
	init := wBackend.Sign(h.t, walletCluster, id, w.IntentHash(id), quorum.Initiate, time.Now().Add(time.Hour))
	r, err := h.orch.CreateETH(h.ctx, withdraw.ETHWithdrawal{ID: id, Wallet: "hot", To: h.dest.Hex(), Amount: amt, Initiation: init, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		h.t.Fatalf("create %s: %v", id, err)
	}
	for _, op := range []struct {
		id string
		o  func() quorum.Approval
	}{{"alice", func() quorum.Approval {
		return wAlice.Sign(h.t, walletCluster, id, r.PayloadHash, quorum.Approve, time.Now().Add(time.Hour))
	}}, {"bob", func() quorum.Approval {
		return wBob.Sign(h.t, walletCluster, id, r.PayloadHash, quorum.Approve, time.Now().Add(time.Hour))
	}}} {
		if _, err := h.orch.Approve(h.ctx, id, op.o()); err != nil {
			h.t.Fatalf("approve %s by %s: %v", id, op.id, err)
		}
	}
	if _, err := h.orch.Sign(h.ctx, id, nil); err != nil {
		h.t.Fatalf("sign %s: %v", id, err)
	}
	return h.req(id)
}

// req is the request from a linearizable read on the leader.
func (h *broadcastHarness) req(id string) *ledger.Request {
	h.t.Helper()
	var r *ledger.Request
	if err := h.cluster.Leader().ReadLinearizable(h.ctx, func(st *ledger.State) error {
		r = st.Requests[id].Clone()
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	if r == nil {
		h.t.Fatalf("no request %q", id)
	}
	return r
}

// track runs Track and requires the status it recorded (or kept).
func (h *broadcastHarness) track(id string, minConf uint64, want ledger.Status) *ledger.Request {
	h.t.Helper()
	r, err := h.orch.Track(h.ctx, id, minConf)
	if err != nil {
		h.t.Fatalf("track %s: %v", id, err)
	}
	if r.Status != want {
		h.t.Fatalf("track %s: %s, want %s", id, r.Status, want)
	}
	if got := h.req(id); got.Status != want {
		h.t.Fatalf("%s recorded %s, Track returned %s", id, got.Status, want)
	}
	return r
}

// signatures is how many tss signing sessions every member's engine ran.
func (h *broadcastHarness) signatures() int32 {
	var n int32
	for _, nd := range h.nodes {
		n += nd.engine.signs.Load()
	}
	return n
}

// TestBroadcastAndTrack: on a real 3-node ledger with a 2-of-3 wallet from
// keygen and the simulated chain, a signed withdrawal is broadcast (not
// under another hash), idempotently, mined, and recorded confirmed only
// after minConf blocks; a reverted receipt is recorded reverted; a
// transaction the node never got is recorded dropped, then replaced when
// the wallet's nonce moves past it — its nonce stays held and nothing is
// signed again.
func TestBroadcastAndTrack(t *testing.T) {
	h := newBroadcastHarness(t)
	leader := h.cluster.Leader()

	// 1. Confirmed after three blocks.
	r := h.signed("wd-1", 1e15)
	if r.Status != ledger.StatusSigned || r.Result.TxHash == "" {
		t.Fatalf("wd-1: %s", r.Status)
	}
	if send, track := withdraw.ChainWork(mustState(t, leader), nil); !slices.Equal(send, []string{"wd-1"}) || len(track) != 0 {
		t.Fatalf("work: send %v track %v", send, track)
	}
	if send, _ := withdraw.ChainWork(mustState(t, leader), func(w string) bool { return w != "hot" }); len(send) != 0 {
		t.Fatalf("a wallet not broadcast is sent: %v", send)
	}
	// The leader cannot record another transaction as the request's.
	before := h.req("wd-1")
	other := common.HexToHash("0x01").Hex()
	if _, err := leader.Submit(h.ctx, "node:n1", ledger.RecordBroadcast{RequestID: "wd-1", TxHash: other}); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("broadcast under another hash: %v, want ErrConflict", err)
	}
	if after := h.req("wd-1"); after.Status != ledger.StatusSigned || after.UpdatedIdx != before.UpdatedIdx || after.OnChain != nil {
		t.Fatalf("a refused broadcast changed the request: %s %+v", after.Status, after.OnChain)
	}
	hash := common.HexToHash(r.Result.TxHash)
	b1, err := h.orch.Broadcast(h.ctx, "wd-1")
	if err != nil {
		t.Fatal(err)
	}
	if b1.Status != ledger.StatusBroadcast || b1.OnChain.TxHash != r.Result.TxHash || b1.OnChain.BroadcastIndex == 0 {
		t.Fatalf("after broadcast: %s %+v", b1.Status, b1.OnChain)
	}
	// Again while pending: the node already knows it; nothing recorded.
	b2, err := h.orch.Broadcast(h.ctx, "wd-1")
	if err != nil {
		t.Fatalf("second broadcast: %v", err)
	}
	if b2.UpdatedIdx != b1.UpdatedIdx || h.node.sent(hash) != 2 {
		t.Fatalf("second broadcast: index %d → %d, %d sends", b1.UpdatedIdx, b2.UpdatedIdx, h.node.sent(hash))
	}
	h.track("wd-1", 3, ledger.StatusBroadcast) // in the pool
	h.node.Commit()
	h.track("wd-1", 3, ledger.StatusBroadcast) // one confirmation
	// Once mined the node answers "nonce too low": still success.
	if b3, err := h.orch.Broadcast(h.ctx, "wd-1"); err != nil || b3.UpdatedIdx != b1.UpdatedIdx {
		t.Fatalf("broadcast of a mined tx: %v", err)
	}
	h.node.Commit()
	h.node.Commit()
	c := h.track("wd-1", 3, ledger.StatusConfirmed)
	rc, err := h.node.Receipt(h.ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if c.OnChain.Block != rc.BlockNumber || c.OnChain.Confirmations != 3 || c.OnChain.TxHash != hash.Hex() {
		t.Fatalf("confirmed: %+v, receipt block %d", c.OnChain, rc.BlockNumber)
	}
	if bal, _ := h.node.Balance(h.ctx, h.dest, nil); bal.Cmp(big.NewInt(1e15)) != 0 {
		t.Fatalf("destination holds %s wei", bal)
	}
	h.track("wd-1", 3, ledger.StatusConfirmed) // idempotent
	if again, err := h.orch.Broadcast(h.ctx, "wd-1"); err != nil || again.Status != ledger.StatusConfirmed || h.node.sent(hash) != 3 {
		t.Fatalf("broadcast of a confirmed request: %v %s, %d sends", err, again.Status, h.node.sent(hash))
	}

	// 2. Reverted: mined with a failed receipt.
	v := h.signed("wd-2", 2e15)
	vh := common.HexToHash(v.Result.TxHash)
	h.node.mu.Lock()
	h.node.revert[vh] = true
	h.node.mu.Unlock()
	if _, err := h.orch.Broadcast(h.ctx, "wd-2"); err != nil {
		t.Fatal(err)
	}
	h.node.Commit()
	if got := h.track("wd-2", 1, ledger.StatusReverted); got.OnChain.Confirmations != 1 || got.OnChain.Block == 0 {
		t.Fatalf("reverted: %+v", got.OnChain)
	}

	// 3. Dropped, then replaced: never re-signed, the nonce kept.
	d := h.signed("wd-3", 3e15)
	dh := common.HexToHash(d.Result.TxHash)
	h.node.mu.Lock()
	h.node.swallow[dh] = true
	h.node.mu.Unlock()
	if _, err := h.orch.Broadcast(h.ctx, "wd-3"); err != nil {
		t.Fatal(err)
	}
	sigs := h.signatures()
	h.node.Commit()
	if got := h.track("wd-3", 2, ledger.StatusDropped); got.OnChain.Detail == "" {
		t.Fatal("dropped without a detail")
	}
	if _, track := withdraw.ChainWork(mustState(t, leader), nil); !slices.Equal(track, []string{"wd-3"}) {
		t.Fatalf("a dropped request is not tracked: %v", track)
	}
	h.track("wd-3", 2, ledger.StatusDropped) // nothing new
	// Another transaction of the wallet took nonce d.Nonce: reported as
	// soon as it is minConf deep.
	h.node.mu.Lock()
	h.node.nonceFloor = *d.Nonce + 1
	h.node.mu.Unlock()
	got := h.track("wd-3", 2, ledger.StatusReplaced)
	if !bytes.Equal(got.Result.Signed, d.Result.Signed) || got.Claim.SessionID != d.Claim.SessionID || got.OnChain.TxHash != dh.Hex() {
		t.Fatalf("replaced changed the result or claim: %+v", got.Result)
	}
	if _, err := h.orch.Reclaim(h.ctx, "wd-3", nil); !errors.Is(err, ledger.ErrWrongStatus) {
		t.Fatalf("reclaim of a replaced request: %v, want ErrWrongStatus", err)
	}
	held := mustState(t, leader).HeldNonces("hot")
	if !slices.Contains(held, *d.Nonce) {
		t.Fatalf("nonce %d released after replaced: held %v", *d.Nonce, held)
	}
	next := h.signed("wd-4", 4e15)
	if *next.Nonce == *d.Nonce {
		t.Fatalf("a new request took the replaced request's nonce %d", *d.Nonce)
	}
	if n := h.signatures(); n != sigs+2 { // wd-4 only: one session on each of its two signers
		t.Fatalf("%d signing sessions since wd-3 was signed, want 2 (wd-4's)", n-sigs)
	}
	if h.node.sent(dh) != 1 {
		t.Fatalf("the dropped transaction was sent %d times", h.node.sent(dh))
	}
}

// mustState is a copy of the leader's state from a linearizable read.
func mustState(t *testing.T, s *ledger.Store) *ledger.State {
	t.Helper()
	var out *ledger.State
	if err := s.ReadLinearizable(context.Background(), func(st *ledger.State) error {
		var err error
		out, err = st.Clone()
		return err
	}); err != nil {
		t.Fatal(fmt.Errorf("read: %w", err))
	}
	return out
}
