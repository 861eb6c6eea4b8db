package member_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/chains/eth/devtoken"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
	"github.com/custody-dev/custody/signer/watermark"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
	"github.com/custody-dev/custody/withdraw"
)

const (
	clusterID  = "node-test"
	walletID   = "hot-eth"
	network    = "devnet"
	simChainID = 1337
)

// testRules: one hot ETH wallet (ETH, and the token TKN with fees in ETH),
// allowlist required with a real cooling-off, and one hot BTC wallet
// (btc_test.go) without an allowlist and with a fee-rate cap
// (the harness drives ledger time: newHarness adds the destinations, then
// moves the ledger clock past their cooling-off), two approvals from
// approver/admin.
const (
	testCoolingOff = time.Hour
	testRules      = `version: 1
assets:
  ETH: {decimals: 18}
  TKN: {decimals: 6}
  BTC: {decimals: 8}
allowlist:
  cooling_off: 1h
  approvals: 2
  roles: [admin, approver]
lock:
  unlock_delay: 1h
wallets:
  - name: eth-hot
    wallets: [hot-eth]
    asset: ETH
    class: hot
    allowlist_required: true
    limits:
      per_tx: "10"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
  - name: tkn-hot
    wallets: [hot-eth]
    asset: TKN
    fee_asset: ETH
    class: hot
    allowlist_required: true
    limits:
      per_tx: "1000"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
  - name: btc-hot
    wallets: [hot-btc]
    asset: BTC
    class: hot
    allowlist_required: false
    limits:
      per_tx: "100"
      max_fee: "0.001"
      max_fee_rate: 50
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
`
)

// tokenAddr is the harness's ERC-20 (devtoken.TokenRuntime) in the simulated
// chain's genesis; the wallet holds tokenSupply of it, and the members'
// and the orchestrator's adapters register it as TKN (6 decimals).
var (
	tokenAddr   = common.HexToAddress("0x7070707070707070707070707070707070707070")
	tokenSupply = big.NewInt(5_000_000_000) // 5000 TKN
)

func TestMain(m *testing.M) {
	if _, err := tsstest.LoadFixtures(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// A hang is reported with the tests still running at the end of the
	// output (ledgertest.Watchdog), before go test's -timeout (make test:
	// 14m) would print them where a truncated log loses them.
	os.Exit(ledgertest.Run(m, 11*time.Minute))
}

var committee = []pki.NodeID{"n1", "n2", "n3"}

// One keygen for the whole package (tss-lib keygen is the slow part).
var (
	keygenOnce   sync.Once
	keygenShares map[pki.NodeID]*tss.Share
	keygenErr    error
)

func walletShares(t testing.TB) map[pki.NodeID]*tss.Share {
	t.Helper()
	keygenOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), tsstest.Deadline)
		defer cancel()
		net := tss.NewMemNetwork()
		// The engines close with the test that ran the keygen; the shares
		// outlive them.
		c := tsstest.NewCommittee(t, committee, func(id pki.NodeID) tss.Transport { return net.Endpoint(id) }, nil)
		keygenShares, keygenErr = c.Keygen(ctx, walletID, nil, 1, nil)
	})
	if keygenErr != nil {
		t.Fatal(keygenErr)
	}
	return keygenShares
}

// operator is a test operator with one Ed25519 device.
// operator is a ledgertest operator signing for this cluster with a two-hour
// approval validity.
type operator struct{ ledgertest.Operator }

func newOp(id string, kind quorum.OperatorKind, roles ...quorum.Role) operator {
	return operator{ledgertest.NewOperator(id, kind, roles...)}
}

func (o operator) sign(t testing.TB, subject string, payload quorum.Hash, dec quorum.Decision) quorum.Approval {
	t.Helper()
	return o.Sign(t, clusterID, subject, payload, dec, time.Now().Add(2*time.Hour).UTC())
}

var (
	alice   = newOp("alice", quorum.KindHuman, quorum.RoleAdmin)
	bob     = newOp("bob", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	carol   = newOp("carol", quorum.KindHuman, quorum.RoleApprover)
	backend = newOp("backend", quorum.KindBackend, quorum.RoleInitiator)
	allOps  = []operator{alice, bob, carol, backend}
)

// countingEngine and countingShares record whether a session was started or
// a share unsealed: the refusal tests assert neither happened.
// failNext, when set, makes the next session fail at once as a peer timing
// out would (fault injection for the re-claim test); failAt does the same
// for the session that brings signs to its value (a later input of a
// Bitcoin spend). sessions are the session IDs asked for, in order.
type countingEngine struct {
	member.Engine
	signs    atomic.Int32
	failNext atomic.Bool
	failAt   atomic.Int32

	mu       sync.Mutex
	sessions []tss.SessionID
}

var errInjectedTimeout = errors.New("injected: tss peer timed out")

func (c *countingEngine) Sign(ctx context.Context, s *tss.Share, p tss.SignParams) (*tss.Signature, error) {
	n := c.signs.Add(1)
	c.mu.Lock()
	c.sessions = append(c.sessions, p.Session)
	c.mu.Unlock()
	if c.failNext.CompareAndSwap(true, false) || c.failAt.CompareAndSwap(n, 0) {
		return nil, errInjectedTimeout
	}
	return c.Engine.Sign(ctx, s, p)
}

// sessionsFrom returns the session IDs asked for from the i-th on.
func (c *countingEngine) sessionsFrom(i int) []tss.SessionID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sessions[i:])
}

type countingShares struct {
	member.ShareStore
	gets atomic.Int32
	last atomic.Pointer[tss.Share] // the last share unsealed (wipe_test.go)
}

func (c *countingShares) Get(wallet string, party pki.NodeID, id []byte) (*tss.Share, error) {
	c.gets.Add(1)
	s, err := c.ShareStore.Get(wallet, party, id)
	if err == nil {
		c.last.Store(s)
	}
	return s, err
}

// doctoredLedger is a fault injector: it hands the member a deep copy of the
// real linearizable state edited by edit (a rolled-back or rewritten ledger,
// or a compromised leader's FSM).
type doctoredLedger struct {
	inner member.Ledger
	edit  func(*ledger.State)
}

func (d *doctoredLedger) ReadLinearizable(ctx context.Context, fn func(*ledger.State) error) error {
	return d.inner.ReadLinearizable(ctx, func(st *ledger.State) error {
		cp, err := st.Clone()
		if err != nil {
			return err
		}
		d.edit(cp)
		return fn(cp)
	})
}

type testNode struct {
	id     pki.NodeID
	m      *member.Member
	engine *countingEngine
	shares *countingShares
	wm     *watermark.Store
	seen   *member.Seen
	ledger member.Ledger
}

type harness struct {
	t       testing.TB
	ctx     context.Context
	cluster *ledgertest.Cluster
	stores  []*ledger.Store
	members map[pki.NodeID]*testNode
	orch    *withdraw.Orchestrator
	sim     *eth.Simulated
	info    tss.WalletInfo
	wallet  common.Address
	dests   []common.Address
	// clock is what every ledger node stamps on the commands it proposes: it
	// starts three hours before the wall clock, so approvals and request
	// expiries (taken from the wall clock) stay valid while tests move it
	// forward by the cooling-off period.
	clock *ledgertest.Clock
}

func poll(t testing.TB, what string, fn func() error) { t.Helper(); ledgertest.Poll(t, what, fn) }

func ether(n int64, frac int64) *big.Int {
	// n + frac/10 ETH in wei
	w := new(big.Int).Mul(big.NewInt(n*10+frac), big.NewInt(1e17))
	return w
}

// newHarness starts 3 ledger nodes, 3 members with their own SoftHSM tokens,
// the simulated chain with the wallet funded, genesis, the wallet record and
// two allowlisted destinations. tune, if given, adjusts each node's ledger
// config after the harness's own settings (a node with its own clock).
func newHarness(t *testing.T, tune ...func(*ledger.Config)) *harness {
	t.Helper()
	ksh := walletShares(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, members: map[pki.NodeID]*testNode{}, info: ksh["n1"].Info(),
		clock: ledgertest.NewClock(time.Now().UTC().Truncate(time.Second).Add(-3 * time.Hour))}
	var err error
	if h.wallet, err = eth.AddressFromPublicKey(h.info.PubKey); err != nil {
		t.Fatal(err)
	}

	// Ledger: three raft nodes over mutual TLS on 127.0.0.1, stamping the
	// harness's ledger clock.
	var ops []ledgertest.Operator
	for _, o := range allOps {
		ops = append(ops, o.Operator)
	}
	g := ledgertest.Genesis(clusterID, 1, testRules, ops...)
	h.cluster = ledgertest.New(t, len(committee), func(cfg *ledger.Config) {
		cfg.ApplyTimeout, cfg.Clock, cfg.Genesis = 30*time.Second, h.clock.Now, &g
		// No test here stops a node; signatures under the race detector on
		// a loaded two-core machine starve heartbeats, and a leader change
		// fails an orchestrator bound to the first leader (seen:
		// TestBTCCreateSignBroadcast, "leadership lost while committing").
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 3*time.Second, 3*time.Second, 1500*time.Millisecond
		for _, f := range tune {
			f(cfg)
		}
	})
	h.stores = h.cluster.Stores()
	h.propose("ceremony", g)
	h.propose("node:n1", ledger.WalletSet{Wallet: ledger.Wallet{ID: walletID, Chain: "eth", Network: network, Committee: committee, Threshold: 1}})
	// Chain: the simulated chain with the wallet funded in ETH and TKN.
	h.sim = eth.NewSimulated(types.GenesisAlloc{h.wallet: {Balance: ether(100, 0)},
		tokenAddr: devtoken.TokenAccount(map[common.Address]*big.Int{h.wallet: tokenSupply})})
	t.Cleanup(func() { _ = h.sim.Close() })

	// Members: tss engines on one in-memory network, one SoftHSM token each.
	net := tss.NewMemNetwork()
	for i, id := range committee {
		e, err := tss.NewEngine(tss.Config{Self: id, Transport: net.Endpoint(id)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		tok, err := hsm.Open(softhsmtest.NewToken(t, "node-"+string(id)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tok.Close() })
		kek, err := tok.CreateKEK("custody-kek")
		if err != nil {
			t.Fatal(err)
		}
		ss, err := shares.NewStore(t.TempDir(), kek)
		if err != nil {
			t.Fatal(err)
		}
		if err := ss.Put(ksh[id]); err != nil {
			t.Fatal(err)
		}
		wm, err := watermark.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = wm.Close() })
		seen, err := member.OpenSeen(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = seen.Close() })
		mb := &testNode{id: id, engine: &countingEngine{Engine: e}, shares: &countingShares{ShareStore: ss}, wm: wm, seen: seen,
			ledger: &member.LocalLedger{Store: h.stores[i], ReadIndex: member.LeaderReadIndex(h.stores...)}}
		mb.m = h.newMember(mb, mb.ledger)
		h.members[id] = mb
	}
	h.orch = h.orchestrator(h.leader(), "node:n1")

	// Two destinations, usable once their cooling-off has passed: on the
	// ledger's clock and on the members' own (the same harness clock here;
	// members record when they first saw each addition).
	for i := range 2 {
		h.dests = append(h.dests, h.allowlist(fmt.Sprintf("allow-%d", i)))
	}
	h.clock.Advance(testCoolingOff + time.Minute)
	return h
}

// allowlist adds a destination derived from name to the wallet's allowlist
// (two approvals) and lets every member observe it; it is usable after the
// cooling-off.
func (h *harness) allowlist(name string) common.Address {
	h.t.Helper()
	seed := sha256.Sum256([]byte("node-test-dest/" + name))
	dest := common.BytesToAddress(seed[:20])
	ch := policy.Change{ID: name, Kind: policy.ChangeAllowlistAdd, Wallet: walletID, Chain: "eth", Network: network, Address: dest.Hex(), Label: "exchange cold"}
	h.propose("alice", ledger.PolicyChange{Change: ch, Approvals: []quorum.Approval{
		alice.sign(h.t, ch.ID, ch.PayloadHash(), quorum.Approve), carol.sign(h.t, ch.ID, ch.PayloadHash(), quorum.Approve)}})
	h.observe()
	return dest
}

// observe has every member record the governance changes it now sees.
func (h *harness) observe() {
	h.t.Helper()
	for _, mb := range h.members {
		if err := mb.m.Observe(h.ctx); err != nil {
			h.t.Fatal(err)
		}
	}
}

// orchestrator is the leader's orchestration on store, proposing as actor
// and reaching every member.
func (h *harness) orchestrator(store *ledger.Store, actor string) *withdraw.Orchestrator {
	h.t.Helper()
	var signers []withdraw.Member
	for _, id := range committee {
		signers = append(signers, h.members[id].m)
	}
	o, err := withdraw.New(withdraw.Config{Ledger: store, ETH: h.sim, Chains: testChains(), Network: network, Actor: actor, Members: signers})
	if err != nil {
		h.t.Fatal(err)
	}
	o.AddWallet(h.info)
	return o
}

// newMember builds a Member over mb's components reading led.
func (h *harness) newMember(mb *testNode, led member.Ledger) *member.Member {
	h.t.Helper()
	m, err := member.New(member.Config{Engine: mb.engine, Shares: mb.shares, Watermark: mb.wm, Seen: mb.seen, Ledger: led,
		Chains: testChains(), Now: h.clock.Now, AttestWait: 10 * time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := m.AddWallet(h.info); err != nil {
		h.t.Fatal(err)
	}
	return m
}

func (h *harness) leader() *ledger.Store {
	h.t.Helper()
	return h.cluster.Leader()
}

func (h *harness) propose(actor string, cmd ledger.Command) ledger.Outcome {
	h.t.Helper()
	return h.cluster.Submit(h.ctx, actor, cmd)
}

// approved creates a withdrawal to dest and records the approvals of ops.
func (h *harness) request(id string, dest common.Address, amount *big.Int, ops ...operator) *ledger.Request {
	h.t.Helper()
	r, err := h.orch.CreateETH(h.ctx, withdraw.ETHWithdrawal{ID: id, Wallet: walletID, To: dest.Hex(), Amount: amount,
		Initiation: h.initiate(id, dest, amount), ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		h.t.Fatalf("create %s: %v", id, err)
	}
	for _, o := range ops {
		if r, err = h.orch.Approve(h.ctx, id, o.sign(h.t, id, r.PayloadHash, quorum.Approve)); err != nil {
			h.t.Fatalf("approve %s by %s: %v", id, o.ID, err)
		}
	}
	return r
}

// initiate is the backend's signed creation of a withdrawal of amt wei to
// dest from the harness wallet.
func (h *harness) initiate(id string, dest common.Address, amt *big.Int) quorum.Approval {
	h.t.Helper()
	return h.initiateAsset(id, walletID, "ETH", dest.Hex(), amt)
}

// initiateAsset is initiate for amt base units of asset from wallet to the
// destination to (in its canonical form).
func (h *harness) initiateAsset(id, wallet, asset, to string, amt *big.Int) quorum.Approval {
	h.t.Helper()
	a, err := amount.FromBig(amt)
	if err != nil {
		h.t.Fatal(err)
	}
	w := policy.Withdrawal{Wallet: wallet, Asset: asset, To: to, Amount: a}
	return backend.Sign(h.t, clusterID, id, w.IntentHash(id), quorum.Initiate, time.Now().Add(time.Hour))
}

func ptr[T any](v T) *T { return &v }

// read returns a copy of a request from a linearizable read.
func (h *harness) read(id string) *ledger.Request {
	h.t.Helper()
	var r ledger.Request
	h.cluster.OnLeader(func(l *ledger.Store) error {
		return l.ReadLinearizable(h.ctx, func(st *ledger.State) error {
			x := st.Requests[id]
			if x == nil {
				return fmt.Errorf("no request %q", id)
			}
			r = *x.Clone()
			return nil
		})
	})
	return &r
}

// untouched asserts a member neither reserved nor started anything for a
// request and its nonce.
func (h *harness) untouched(mb *testNode, requestID string, nonce uint64, signs, gets int32) {
	h.t.Helper()
	if _, ok := mb.wm.Lookup(requestID); ok {
		h.t.Errorf("%s: watermark holds a reservation for %s", mb.id, requestID)
	}
	if owner, ok := mb.wm.Owner(watermark.ETHNonceKey(walletID, simChainID, nonce)); ok && owner == requestID {
		h.t.Errorf("%s: nonce %d reserved by %s", mb.id, nonce, requestID)
	}
	if got := mb.engine.signs.Load(); got != signs {
		h.t.Errorf("%s: %d tss sessions started, want %d", mb.id, got, signs)
	}
	if got := mb.shares.gets.Load(); got != gets {
		h.t.Errorf("%s: %d shares unsealed, want %d", mb.id, got, gets)
	}
}

// unsigned builds an ETH transfer from the wallet on the simulated chain.
func (h *harness) unsigned(nonce uint64, dest common.Address, amount *big.Int) *eth.Unsigned {
	h.t.Helper()
	fees, err := h.sim.SuggestFees(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	u, err := eth.NewUnsigned(eth.Intent{ChainID: big.NewInt(simChainID), Nonce: nonce, To: dest, Asset: eth.Asset{Symbol: "ETH", Decimals: 18},
		Amount: amount, GasLimit: 21000, Fees: fees})
	if err != nil {
		h.t.Fatal(err)
	}
	return u
}

// forged is a claimed request as a rewritten ledger would show it: u as its
// payload, approved by bob and carol over u's payload hash, claimed under
// session at index 1.
type forged struct {
	id      string
	u       *eth.Unsigned
	session tss.SessionID
	apps    []quorum.Approval
	init    quorum.Approval
}

func (h *harness) forge(id string, u *eth.Unsigned) forged {
	ph := quorum.Hash(u.PayloadHash())
	d := u.Description()
	return forged{id: id, u: u, session: tss.NewSessionID(), init: h.initiate(id, d.To, d.Amount),
		apps: []quorum.Approval{bob.sign(h.t, id, ph, quorum.Approve), carol.sign(h.t, id, ph, quorum.Approve)}}
}

// install writes f into a state copy, based on the request template. The
// forged claim carries attestations by every node of the node set (their
// test keys are derivable): these tests show what the member's other
// checks and its watermark catch when even the attestation is forged.
func (f forged) install(st *ledger.State, template string) {
	base := *st.Requests[template]
	d := f.u.Description()
	amt, _ := amount.ParseBase(d.Amount.String())
	nonce := d.Nonce
	base.ID, base.Payload, base.PayloadHash = f.id, f.u.Bytes(), quorum.Hash(f.u.PayloadHash())
	base.To, base.Amount, base.Nonce, base.Approvals = d.To.Hex(), amt, &nonce, f.apps
	base.MaxFee, _ = amount.FromBig(d.MaxFee())
	base.Initiation, base.Initiator = &f.init, backend.ID
	base.Status, base.Result = ledger.StatusClaimed, nil
	base.Claim = &ledger.Claim{SessionID: f.session.String(), Signers: []pki.NodeID{"n1", "n2"}, Index: 1, Term: 1, By: "node:evil", At: st.Clock,
		AuditSeq: 1, AuditHead: ledger.GenesisHash, Attested: true}
	head := base.ClaimHead(st.Registry.ClusterID, st.GenesisHash)
	for id := range st.Nodes {
		sig, err := ledger.SignCheckpoint(head, id, ledgertest.NodeKey(id))
		if err != nil {
			panic(err)
		}
		base.Claim.Attestations = append(base.Claim.Attestations, sig)
	}
	st.Requests[f.id] = &base
}

func (f forged) claim() member.Claim {
	return member.Claim{SessionID: f.session, Index: 1, Signers: []pki.NodeID{"n1", "n2"},
		PayloadHash: quorum.Hash(f.u.PayloadHash()), Digest: f.u.SigningHash()}
}

// refused calls SignClaimed on m (a Member over mb's components) and checks
// the refusal wraps every error in want, and that nothing was reserved,
// unsealed or started for requestID.
func (h *harness) refused(mb *testNode, m *member.Member, requestID string, nonce uint64, c member.Claim, want ...error) {
	h.t.Helper()
	signs, gets := mb.engine.signs.Load(), mb.shares.gets.Load()
	_, hadRecord := mb.wm.Lookup(requestID)
	s, err := m.SignClaimed(h.ctx, requestID, c)
	if err == nil {
		h.t.Fatalf("%s signed %s: %x", mb.id, requestID, s.Raw)
	}
	var re *member.RefusalError
	if !errors.As(err, &re) {
		h.t.Errorf("%s: error is not a *RefusalError: %v", mb.id, err)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			h.t.Errorf("%s: %v; want it to match %v", mb.id, err, w)
		}
	}
	if !hadRecord {
		h.untouched(mb, requestID, nonce, signs, gets)
	} else if mb.engine.signs.Load() != signs || mb.shares.gets.Load() != gets {
		h.t.Errorf("%s: a session was started or a share unsealed", mb.id)
	}
}

// mine broadcasts tx on the simulated chain, mines a block and waits (until
// the harness's deadline) for its receipt, which must be a success.
func (h *harness) mine(tx *eth.Signed) {
	h.t.Helper()
	if _, err := h.sim.Broadcast(h.ctx, tx); err != nil {
		h.t.Fatal(err)
	}
	h.sim.Commit()
	rcpt, err := eth.WaitMined(h.ctx, h.sim, tx.Hash(), 10*time.Millisecond)
	if err != nil || !rcpt.Success {
		h.t.Fatalf("receipt %+v, %v", rcpt, err)
	}
}

// testChains is the chain adapter set of the harness: ETH on the simulated
// chain's network only, with TKN registered, and Bitcoin with the harness's
// network as regtest.
func testChains() map[string]chains.Chain {
	c, err := eth.New(eth.Config{Networks: map[string]uint64{network: simChainID},
		Tokens: map[string][]eth.Token{network: {{Symbol: "TKN", Address: tokenAddr, Decimals: 6}}}})
	if err != nil {
		panic(err)
	}
	b, err := btc.NewChain(map[string]string{network: "regtest"})
	if err != nil {
		panic(err)
	}
	return map[string]chains.Chain{"eth": c, "btc": b}
}
