package withdraw_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
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

// blockingETH is the simulated chain whose Nonce for one address waits
// until released (a slow Ethereum node, for that wallet only).
type blockingETH struct {
	*eth.Simulated
	mu      sync.Mutex
	block   common.Address
	entered chan struct{}
	release chan struct{}
}

func (b *blockingETH) Nonce(ctx context.Context, a common.Address) (uint64, error) {
	b.mu.Lock()
	blocked := a == b.block && b.release != nil
	entered, release := b.entered, b.release
	b.mu.Unlock()
	if blocked {
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return b.Simulated.Nonce(ctx, a)
}

// holdNonce makes the next Nonce of a block until the returned release is
// called; entered is closed once it is blocked.
func (b *blockingETH) holdNonce(a common.Address) (entered chan struct{}, release func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.block, b.entered, b.release = a, make(chan struct{}), make(chan struct{})
	rel := b.release
	return b.entered, func() {
		b.mu.Lock()
		b.release = nil
		b.mu.Unlock()
		close(rel)
	}
}

type nonceHarness struct {
	t       testing.TB
	ctx     context.Context
	cluster *ledgertest.Cluster
	chain   *blockingETH
	keys    map[string][]byte // wallet → public key
	dest    string
	// orchs are each node's orchestrator, as each daemon has one.
	orchs map[pki.NodeID]*withdraw.Orchestrator
}

// newNonceHarness starts a real three-node ledger (raft over TLS on
// 127.0.0.1) with the wallets hot and hot2 active on eth/devnet, the
// simulated chain, and an orchestrator on every node.
func newNonceHarness(t testing.TB, refresh time.Duration) *nonceHarness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	ids := []pki.NodeID{"n1", "n2", "n3"}
	g := ledgertest.GenesisFor(ids, walletCluster, 2, walletRules, wAlice, wBob, wBackend)
	h := &nonceHarness{t: t, ctx: ctx, keys: map[string][]byte{}, orchs: map[pki.NodeID]*withdraw.Orchestrator{},
		dest: common.HexToAddress("0x00000000000000000000000000000000000d0d0d").Hex()}
	h.cluster = ledgertest.New(t, len(ids), func(cfg *ledger.Config) { cfg.ApplyTimeout, cfg.Genesis = 30*time.Second, &g })
	h.cluster.Submit(ctx, "ceremony", g)
	for _, w := range []string{"hot", "hot2"} {
		h.cluster.Submit(ctx, "node:n1", ledger.WalletSet{Wallet: ledger.Wallet{ID: w, Chain: "eth", Network: "devnet",
			Committee: ids, Threshold: 1}})
		key, err := btcec.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		h.keys[w] = key.PubKey().SerializeCompressed()
	}
	sim := eth.NewSimulated(types.GenesisAlloc{})
	t.Cleanup(func() { _ = sim.Close() })
	h.chain = &blockingETH{Simulated: sim}
	for _, n := range h.cluster.Nodes {
		h.orchs[n.ID] = h.orchestrator(n.Store, refresh)
	}
	return h
}

// orchestrator is an orchestrator over store knowing both wallets.
func (h *nonceHarness) orchestrator(store *ledger.Store, refresh time.Duration) *withdraw.Orchestrator {
	h.t.Helper()
	o, err := withdraw.New(withdraw.Config{Ledger: store, ETH: h.chain, Network: "devnet", Actor: "node:" + string(store.ID()),
		Chains: map[string]chains.Chain{"eth": eth.NewChain(map[string]uint64{"devnet": 1337})}, NonceRefresh: refresh})
	if err != nil {
		h.t.Fatal(err)
	}
	for w, pub := range h.keys {
		o.AddWallet(tss.WalletInfo{Wallet: w, Threshold: 1, PubKey: pub})
	}
	return o
}

// withdrawal is the backend's signed withdrawal of wei from wallet.
func (h *nonceHarness) withdrawal(id, wallet string, wei int64) withdraw.ETHWithdrawal {
	h.t.Helper()
	return h.withdrawalOf(id, wallet, big.NewInt(wei))
}

func (h *nonceHarness) withdrawalOf(id, wallet string, amt *big.Int) withdraw.ETHWithdrawal {
	h.t.Helper()
	a, _ := amount.FromBig(amt)
	w := policy.Withdrawal{Wallet: wallet, Asset: "ETH", To: h.dest, Amount: a}
	exp := time.Now().Add(time.Hour)
	return withdraw.ETHWithdrawal{ID: id, Wallet: wallet, To: h.dest, Amount: amt, ExpiresAt: exp,
		Initiation: wBackend.Sign(h.t, walletCluster, id, w.IntentHash(id), quorum.Initiate, exp)}
}

// create creates on the orchestrator of the node leading now (retrying
// while leadership moves) and returns the request's nonce.
func (h *nonceHarness) create(w withdraw.ETHWithdrawal) uint64 {
	h.t.Helper()
	var r *ledger.Request
	ledgertest.Poll(h.t, "create "+w.ID, func() error {
		var err error
		r, err = h.orchs[h.cluster.WaitLeader(nil).ID].CreateETH(h.ctx, w)
		if errors.Is(err, ledger.ErrNotLeader) || errors.Is(err, ledger.ErrTimeout) {
			return err
		}
		if err != nil {
			h.t.Fatalf("create %s: %v", w.ID, err)
		}
		return nil
	})
	if r.Nonce == nil || r.Status != ledger.StatusAwaitingApprovals {
		h.t.Fatalf("%s: %+v", w.ID, r)
	}
	return *r.Nonce
}

// lead moves the leadership to n.
func (h *nonceHarness) lead(n *ledgertest.Node) {
	h.t.Helper()
	ledgertest.Poll(h.t, "leadership on "+string(n.ID), func() error {
		l := h.cluster.WaitLeader(nil)
		if l == n {
			return nil
		}
		if err := l.Store.TransferLeadership(h.ctx, n.ID); err != nil {
			return err
		}
		if l := h.cluster.WaitLeader(nil); l != n {
			return fmt.Errorf("%s leads", l.ID)
		}
		return nil
	})
}

// held is the wallet's held nonces in a linearizable read.
func (h *nonceHarness) held(wallet string) []uint64 {
	h.t.Helper()
	var out []uint64
	ledgertest.Poll(h.t, "a linearizable read", func() error {
		return h.cluster.Leader().ReadLinearizable(h.ctx, func(st *ledger.State) error {
			out = st.HeldNonces(wallet)
			return nil
		})
	})
	return out
}

func upTo(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i)
	}
	return out
}

// TestETHNonceAllocator, on a real three-node ledger and the simulated
// chain:
//   - 24 creates of one wallet at once on the leader get the nonces 0..23,
//     no gap, no duplicate, from one seed of the allocator and no refusal;
//   - a create denied by policy gives its nonce back: the next create gets
//     it;
//   - another leader's view (a second orchestrator) takes the next nonce
//     behind the allocator's back: the leader's next create is refused by
//     the ledger (ErrAllocated), the allocator seeds again and the create
//     succeeds with the nonce above, without an error;
//   - after leadership moves to another node, its allocator continues above
//     the ledger's highest held nonce; when leadership comes back, the
//     first node's allocator seeds again for its new term (no refusal);
//   - a nonce the ledger released (a request rejected by an operator) is
//     handed out again by the very next create, before any new one (an
//     ETH nonce above a hole would never be mined);
//   - the same request created twice at once is one request, and the
//     duplicate takes no nonce.
func TestETHNonceAllocator(t *testing.T) {
	h := newNonceHarness(t, time.Hour)
	first := h.cluster.WaitLeader(nil)
	o := h.orchs[first.ID]

	const n = 24
	nonces := make([]uint64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := o.CreateETH(h.ctx, h.withdrawal(fmt.Sprintf("c-%02d", i), "hot", 1e15))
			if err == nil && r.Nonce == nil {
				err = errors.New("no nonce")
			}
			if errs[i] = err; err == nil {
				nonces[i] = *r.Nonce
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create c-%02d: %v", i, err)
		}
	}
	slices.Sort(nonces)
	if !slices.Equal(nonces, upTo(n)) {
		t.Fatalf("%d concurrent creates got nonces %v, want 0..%d", n, nonces, n-1)
	}
	if got := h.held("hot"); !slices.Equal(got, upTo(n)) {
		t.Fatalf("the ledger holds %v", got)
	}
	if s := o.NonceStats("hot"); s.Seeds != 1 || s.Refused != 0 {
		t.Fatalf("allocator: %+v, want one seed and no refusal", s)
	}

	// Denied (over per_tx): recorded, nothing held; its nonce is next again.
	denied, err := o.CreateETH(h.ctx, h.withdrawalOf("denied", "hot", new(big.Int).Mul(big.NewInt(11), big.NewInt(1e18))))
	if !errors.Is(err, withdraw.ErrDenied) || denied == nil || denied.Nonce == nil || *denied.Nonce != n {
		t.Fatalf("over the limit: %+v, %v; want ErrDenied with nonce %d", denied, err, n)
	}
	if got := h.create(h.withdrawal("after-denied", "hot", 1e15)); got != n {
		t.Fatalf("after a denial: nonce %d, want %d again", got, n)
	}

	// Another leader's allocation since the seed: refused once, seeded
	// again, created above it.
	other := h.orchestrator(first.Store, time.Hour)
	stolen, err := other.CreateETH(h.ctx, h.withdrawal("other-leader", "hot", 1e15))
	if err != nil || *stolen.Nonce != n+1 {
		t.Fatalf("the other view's create: %+v, %v; want nonce %d", stolen, err, n+1)
	}
	if got := h.create(h.withdrawal("after-refusal", "hot", 1e15)); got != n+2 {
		t.Fatalf("after the other view's allocation: nonce %d, want %d", got, n+2)
	}
	afterRefusal := o.NonceStats("hot")
	if afterRefusal.Seeds < 2 || afterRefusal.Refused != 1 {
		t.Fatalf("allocator after a refusal: %+v, want a second seed and 1 refusal", afterRefusal)
	}

	// Leadership moves: the new leader continues above the highest held.
	second := h.cluster.Others(first)[0]
	h.lead(second)
	if got := h.create(h.withdrawal("on-second", "hot", 1e15)); got != n+3 {
		t.Fatalf("on the new leader: nonce %d, want %d (above the held %v)", got, n+3, h.held("hot"))
	}
	if s := h.orchs[second.ID].NonceStats("hot"); s.Seeds < 1 || s.Refused != 0 {
		t.Fatalf("the new leader's allocator: %+v, want a seed and no refusal", s)
	}
	// And back: the first node seeds again for its new term.
	h.lead(first)
	if got := h.create(h.withdrawal("back-on-first", "hot", 1e15)); got != n+4 {
		t.Fatalf("back on the first leader: nonce %d, want %d", got, n+4)
	}
	if s := o.NonceStats("hot"); s.Seeds <= afterRefusal.Seeds || s.Refused != 1 {
		t.Fatalf("the first leader's allocator after its new term: %+v, want another seed (was %d), still 1 refusal", s, afterRefusal.Seeds)
	}
	if got := h.held("hot"); !slices.Equal(got, upTo(n+5)) {
		t.Fatalf("the ledger holds %v, want 0..%d", got, n+4)
	}

	// A nonce the ledger releases is handed out again by the very next
	// create (no periodic refresh here), before any new one.
	var rej *ledger.Request
	ledgertest.Poll(t, "the request holding nonce 3", func() error {
		return h.cluster.Leader().ReadLinearizable(h.ctx, func(st *ledger.State) error {
			rej = st.Requests[st.NonceHolder("hot", 3)].Clone()
			return nil
		})
	})
	if _, err := o.Approve(h.ctx, rej.ID, wAlice.Sign(t, walletCluster, rej.ID, rej.PayloadHash, quorum.Reject, time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got := h.create(h.withdrawal("fills-3", "hot", 1e15)); got != 3 {
		t.Fatalf("after nonce 3 was released: nonce %d, want 3", got)
	}
	if got := h.create(h.withdrawal("after-fill", "hot", 1e15)); got != n+5 {
		t.Fatalf("then: nonce %d, want %d", got, n+5)
	}
	if got := h.held("hot"); !slices.Equal(got, upTo(n+6)) {
		t.Fatalf("the ledger holds %v, want 0..%d", got, n+5)
	}

	// The same request twice at once (a duplicate sent to two nodes): one
	// request, and the duplicate takes no nonce of its own.
	lo := h.orchs[h.cluster.WaitLeader(nil).ID]
	dup := h.withdrawal("dup", "hot", 1e15)
	var dups [2]*ledger.Request
	for i := range dups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := lo.CreateETH(h.ctx, dup)
			if err != nil {
				t.Errorf("duplicate create %d: %v", i, err)
			}
			dups[i] = r
		}()
	}
	wg.Wait()
	if t.Failed() || dups[0].PayloadHash != dups[1].PayloadHash || *dups[0].Nonce != n+6 {
		t.Fatalf("duplicates answered %+v and %+v; want one request with nonce %d", dups[0], dups[1], n+6)
	}
	if got := h.create(h.withdrawal("after-dup", "hot", 1e15)); got != n+7 {
		t.Fatalf("after the duplicate: nonce %d, want %d", got, n+7)
	}
}

// TestETHCreatesOfTwoWalletsOverlap: while a create of wallet hot is held
// inside its allocation (its seed waits for the chain's pending nonce),
// creates of wallet hot2 on the same leader complete; the held create
// completes once the chain answers, with its own nonce.
func TestETHCreatesOfTwoWalletsOverlap(t *testing.T) {
	h := newNonceHarness(t, time.Hour)
	l := h.cluster.WaitLeader(nil)
	o := h.orchs[l.ID]
	from, err := eth.AddressFromPublicKey(h.keys["hot"])
	if err != nil {
		t.Fatal(err)
	}
	entered, release := h.chain.holdNonce(from)
	type result struct {
		r   *ledger.Request
		err error
	}
	held := make(chan result, 1)
	go func() {
		r, err := o.CreateETH(h.ctx, h.withdrawal("hot-held", "hot", 1e15))
		held <- result{r, err}
	}()
	<-entered
	for i := range 3 {
		r, err := o.CreateETH(h.ctx, h.withdrawal(fmt.Sprint("hot2-", i), "hot2", 1e15))
		if err != nil || *r.Nonce != uint64(i) {
			t.Fatalf("hot2 create %d while hot's is held: %+v, %v", i, r, err)
		}
	}
	select {
	case res := <-held:
		t.Fatalf("hot's create returned while the chain held it: %+v, %v", res.r, res.err)
	default:
	}
	release()
	res := <-held
	if res.err != nil || *res.r.Nonce != 0 {
		t.Fatalf("hot's create after the chain answered: %+v, %v", res.r, res.err)
	}
}
