package withdraw_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"

	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
	"github.com/custody-dev/custody/signer/watermark"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
	"github.com/custody-dev/custody/withdraw"
)

const walletCluster = "wallet-test"

const walletRules = `version: 1
assets:
  ETH: {decimals: 18}
allowlist:
  cooling_off: 1h
  approvals: 2
  roles: [admin]
lock:
  unlock_delay: 1h
wallets:
  - name: eth-hot
    wallets: [hot, hot2]
    asset: ETH
    class: hot
    allowlist_required: false
    limits:
      per_tx: "10"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [admin]}
`

var (
	wAlice   = ledgertest.NewOperator("alice", quorum.KindHuman, quorum.RoleAdmin)
	wBob     = ledgertest.NewOperator("bob", quorum.KindHuman, quorum.RoleAdmin)
	wBackend = ledgertest.NewOperator("backend", quorum.KindBackend, quorum.RoleInitiator)
)

// countingKeygen counts the keygens and test signatures a member's engine
// ran (the member's refusals must run none).
type countingKeygen struct {
	member.Engine
	keygens, signs, reshares atomic.Int32
}

func (c *countingKeygen) Reshare(ctx context.Context, p tss.ReshareParams, old *tss.Share, pre *keygen.LocalPreParams) (*tss.Share, error) {
	c.reshares.Add(1)
	return c.Engine.Reshare(ctx, p, old, pre)
}

func (c *countingKeygen) Keygen(ctx context.Context, p tss.KeygenParams, pre *keygen.LocalPreParams) (*tss.Share, error) {
	c.keygens.Add(1)
	return c.Engine.Keygen(ctx, p, pre)
}

func (c *countingKeygen) Sign(ctx context.Context, s *tss.Share, p tss.SignParams) (*tss.Signature, error) {
	c.signs.Add(1)
	return c.Engine.Sign(ctx, s, p)
}

// sessionOf forwards to a member and records the keygen session the
// leader picked (to ask the member again for the same one).
type sessionOf struct {
	withdraw.ReshareMember
	session atomic.Pointer[tss.SessionID]
}

func (s *sessionOf) Keygen(ctx context.Context, w string, session tss.SessionID) (*member.KeygenResult, error) {
	s.session.Store(&session)
	return s.ReshareMember.Keygen(ctx, w, session)
}

type walletNode struct {
	id     pki.NodeID
	m      *member.Member
	engine *countingKeygen
	shares *shares.Store
}

type walletHarness struct {
	t       *testing.T
	ctx     context.Context
	cluster *ledgertest.Cluster
	nodes   map[pki.NodeID]*walletNode
	members []withdraw.KeygenMember
	rec     *sessionOf // n1's member, recording the session
}

// newWalletHarness starts a real three-node ledger (genesis with admins
// alice and bob, admin quorum 2), and on each node a member with its own
// tss engine (one in-memory tss network), SoftHSM token, sealed share
// store, pre-params pool (the committed fixtures) and node key.
func newWalletHarness(t *testing.T) *walletHarness {
	t.Helper()
	return newWalletHarnessN(t, 3)
}

// newWalletHarnessN is newWalletHarness with n nodes (n1..nn, all in the
// genesis node set). Node i's pre-params pool hands out fixtures i, i+n,
// ...: every tss-lib party of a keygen and a later reshare has its own.
func newWalletHarnessN(t *testing.T, size int) *walletHarness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	var ids []pki.NodeID
	for i := 1; i <= size; i++ {
		ids = append(ids, pki.NodeID(fmt.Sprintf("n%d", i)))
	}
	g := ledgertest.GenesisFor(ids, walletCluster, 2, walletRules, wAlice, wBob, wBackend)
	h := &walletHarness{t: t, ctx: ctx, nodes: map[pki.NodeID]*walletNode{}}
	h.cluster = ledgertest.New(t, size, func(cfg *ledger.Config) {
		cfg.ApplyTimeout, cfg.Genesis = 30*time.Second, &g
		// No test here stops a node; keygens and signatures under the race
		// detector on a loaded two-core machine starve heartbeats, and a
		// leader change fails the harness's orchestrator, bound to the
		// first leader (seen: TestBroadcastAndTrack, "not the leader").
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 3*time.Second, 3*time.Second, 1500*time.Millisecond
	})
	h.cluster.Submit(ctx, "ceremony", g)
	stores := h.cluster.Stores()
	net := tss.NewMemNetwork()
	for i, n := range h.cluster.Nodes {
		e, err := tss.NewEngine(tss.Config{Self: n.ID, Transport: net.Endpoint(n.ID)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		tok, err := hsm.Open(softhsmtest.NewToken(t, "node-"+string(n.ID)))
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
		// A fresh copy of fixture k from the file for each call: a keygen
		// or reshare consumes (wipes) its pre-params, and
		// tsstest.LoadFixtures hands every test of the binary the same
		// ones; node i takes fixtures i, i+size, ... so no two parties
		// and no two calls share one.
		var taken atomic.Int32
		pool := preparams.NewPool(ctx, 1, func(context.Context) (*keygen.LocalPreParams, error) {
			k := i + size*int(taken.Add(1)-1)
			fx, err := preparams.LoadFixtures(tsstest.FixturePath())
			if err != nil {
				return nil, err
			}
			if k >= len(fx) {
				return nil, errors.New("no fixture left for this node")
			}
			return fx[k], nil
		})
		eng := &countingKeygen{Engine: e}
		m, err := member.New(member.Config{Engine: eng, Shares: ss, Watermark: wm, Seen: seen,
			Ledger:    &member.LocalLedger{Store: stores[i], ReadIndex: member.LeaderReadIndex(stores...)},
			Chains:    map[string]chains.Chain{"eth": eth.NewChain(map[string]uint64{"devnet": 1337})},
			PreParams: pool, NodeKey: ledgertest.NodeKey(n.ID)})
		if err != nil {
			t.Fatal(err)
		}
		h.nodes[n.ID] = &walletNode{id: n.ID, m: m, engine: eng, shares: ss}
		if n.ID == "n1" {
			h.rec = &sessionOf{ReshareMember: m}
			h.members = append(h.members, h.rec)
		} else {
			h.members = append(h.members, m)
		}
	}
	return h
}

// approve commits the admins' WalletCreate of wallet.
func (h *walletHarness) approve(changeID, wallet string, committee []pki.NodeID, threshold int) {
	h.t.Helper()
	spec := ledger.WalletSpec{ID: changeID, Wallet: wallet, Chain: "eth", Network: "devnet", Committee: committee, Threshold: threshold}
	exp := time.Now().Add(time.Hour)
	h.cluster.Submit(h.ctx, "alice", ledger.WalletCreate{Change: spec, Approvals: []quorum.Approval{
		wAlice.Sign(h.t, walletCluster, changeID, spec.PayloadHash(), quorum.Approve, exp),
		wBob.Sign(h.t, walletCluster, changeID, spec.PayloadHash(), quorum.Approve, exp)}})
}

func (h *walletHarness) creator() *withdraw.WalletCreator {
	h.t.Helper()
	c, err := withdraw.NewWalletCreator(withdraw.WalletConfig{Ledger: leaderLedger{h.cluster}, Actor: "node:" + string(h.cluster.Leader().ID()), Members: h.members})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// ledgerWallet is the wallet as node's own replica holds it.
func (h *walletHarness) ledgerWallet(node int, id string) *ledger.Wallet {
	h.t.Helper()
	var w *ledger.Wallet
	_ = h.cluster.Nodes[node].Store.ReadLocal(func(st *ledger.State) error {
		if lw := st.Wallets[id]; lw != nil {
			c := *lw
			w = &c
		}
		return nil
	})
	return w
}

// TestCreateWalletEndToEnd: admins approve a 2-of-3 wallet; the leader's
// CreateWallet runs the keygen on every member, test-signs with two
// different t+1 subsets and records WalletKeyed; every node's ledger shows
// the wallet active with the key every member holds a sealed share of and
// registered. Asked again, a member returns the same key without a second
// keygen; CreateWallet of the active wallet returns its key.
func TestCreateWalletEndToEnd(t *testing.T) {
	h := newWalletHarness(t)
	committee := []pki.NodeID{"n1", "n2", "n3"}
	h.approve("create-w1", "w1", committee, 1)
	c := h.creator()
	if p, err := c.Pending(h.ctx); err != nil || !slices.Equal(p, []string{"w1"}) {
		t.Fatalf("pending: %v %v", p, err)
	}

	pub, err := c.CreateWallet(h.ctx, "w1")
	if err != nil {
		t.Fatal(err)
	}
	if len(pub) != 33 {
		t.Fatalf("pubkey %x", pub)
	}
	for i := range h.cluster.Nodes {
		ledgertest.Poll(t, "wallet active on every node", func() error {
			w := h.ledgerWallet(i, "w1")
			if w == nil || w.Status != ledger.WalletActive || !bytes.Equal(w.PubKey, pub) {
				return errors.New("not yet")
			}
			return nil
		})
	}
	for _, n := range h.nodes {
		if got := n.engine.keygens.Load(); got != 1 {
			t.Errorf("%s ran %d keygens", n.id, got)
		}
		// Two subsets of two: n1 and n3 sign once, n2 twice.
		if got, want := n.engine.signs.Load(), map[pki.NodeID]int32{"n1": 1, "n2": 2, "n3": 1}[n.id]; got != want {
			t.Errorf("%s ran %d test signatures, want %d", n.id, got, want)
		}
		refs, err := n.shares.List()
		if err != nil || len(refs) != 1 || refs[0].Wallet != "w1" {
			t.Fatalf("%s stores %v (%v)", n.id, refs, err)
		}
		s, err := n.shares.Get(refs[0].Wallet, refs[0].Party, refs[0].ShareID)
		if err != nil || !bytes.Equal(s.PubKey, pub) {
			t.Fatalf("%s's sealed share: %v", n.id, err)
		}
		s.Wipe()
		// Registered: a test signature of the key is refused now only
		// because the wallet is active, not because the member lacks it.
		if _, err := n.m.TestSign(h.ctx, "w1", pub, tss.NewSessionID(), []pki.NodeID{"n1", "n2"}); !errors.Is(err, member.ErrKeygen) {
			t.Errorf("%s test-signs an active wallet: %v", n.id, err)
		}
	}
	// Idempotent: the same session again gives the same key and a valid
	// attestation, without a keygen; a new session for the active wallet,
	// and CreateWallet of it, run nothing.
	n1 := h.nodes["n1"]
	session := *h.rec.session.Load()
	res, err := n1.m.Keygen(h.ctx, "w1", session)
	if err != nil || !bytes.Equal(res.PubKey, pub) {
		t.Fatalf("the same session again: %v", err)
	}
	if err := h.cluster.Leader().ReadLocal(func(st *ledger.State) error {
		return ledger.VerifyWalletKey(ledger.WalletKeyHeadOf(st, st.Wallets["w1"], res.Session.String(), pub), res.Attestation, st.Nodes)
	}); err != nil {
		t.Fatalf("repeated attestation: %v", err)
	}
	if _, err := n1.m.Keygen(h.ctx, "w1", tss.NewSessionID()); !errors.Is(err, member.ErrKeygen) {
		t.Fatalf("a new session for the active wallet: %v", err)
	}
	pub2, err := c.CreateWallet(h.ctx, "w1")
	if err != nil || !bytes.Equal(pub2, pub) {
		t.Fatalf("CreateWallet of the active wallet: %x %v", pub2, err)
	}
	for _, n := range h.nodes {
		if got := n.engine.keygens.Load(); got != 1 {
			t.Errorf("%s ran %d keygens after the repeats", n.id, got)
		}
	}
}

// TestMemberKeygenRefusals: a member runs a keygen only for a wallet its
// OWN ledger holds in keygen with it in the committee, and test-signs only
// a wallet in keygen with the key its own keygen produced. Each refusal is
// a member.ErrKeygen RefusalError and runs no keygen and no signature.
// CreateWallet of a wallet not in keygen is refused before any member is
// asked.
func TestMemberKeygenRefusals(t *testing.T) {
	h := newWalletHarness(t)
	h.approve("create-pair", "pair", []pki.NodeID{"n1", "n2"}, 1)
	h.cluster.Submit(h.ctx, "node:n1", ledger.WalletSet{Wallet: ledger.Wallet{ID: "legacy", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1", "n2", "n3"}, Threshold: 1}})
	n3 := h.nodes["n3"]
	refused := func(what string, err error) {
		t.Helper()
		var re *member.RefusalError
		if !errors.Is(err, member.ErrKeygen) || !errors.As(err, &re) || re.Member != n3.id {
			t.Fatalf("%s: %v, want a member.ErrKeygen refusal by n3", what, err)
		}
	}
	refused("unknown wallet", func() error { _, err := n3.m.Keygen(h.ctx, "nope", tss.NewSessionID()); return err }())
	refused("wallet.set wallet", func() error { _, err := n3.m.Keygen(h.ctx, "legacy", tss.NewSessionID()); return err }())
	refused("not in the committee", func() error { _, err := n3.m.Keygen(h.ctx, "pair", tss.NewSessionID()); return err }())

	// A compromised leader whose ledger says "ghost" was approved with
	// the whole committee: every member's own ledger lacks it, so the
	// keygen is refused everywhere and nothing runs.
	ghost := doctoredLedger{WalletLedger: h.cluster.Leader(), edit: func(st *ledger.State) {
		st.Wallets["ghost"] = &ledger.Wallet{ID: "ghost", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1", "n2", "n3"}, Threshold: 1, Status: ledger.WalletKeygen}
	}}
	forged, err := withdraw.NewWalletCreator(withdraw.WalletConfig{Ledger: ghost, Actor: "node:n1", Members: h.members})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := forged.CreateWallet(h.ctx, "ghost"); !errors.Is(err, withdraw.ErrKeygen) || !errors.Is(err, member.ErrKeygen) {
		t.Fatalf("keygen of a wallet only the leader's ledger holds: %v", err)
	}

	// Test signatures: a key this member's keygen did not produce, and a
	// wallet no longer in keygen.
	key := make([]byte, 33)
	key[0] = 2
	key[32] = 1
	refused("test-sign with a key n3 never made", func() error {
		_, err := n3.m.TestSign(h.ctx, "pair", key, tss.NewSessionID(), []pki.NodeID{"n1", "n3"})
		return err
	}())
	refused("test-sign of a wallet.set wallet", func() error {
		_, err := n3.m.TestSign(h.ctx, "legacy", key, tss.NewSessionID(), []pki.NodeID{"n2", "n3"})
		return err
	}())
	if _, err := h.creator().CreateWallet(h.ctx, "legacy"); !errors.Is(err, withdraw.ErrWalletStatus) {
		t.Fatalf("CreateWallet of a wallet.set wallet: %v", err)
	}
	for _, n := range h.nodes {
		if k, s := n.engine.keygens.Load(), n.engine.signs.Load(); k != 0 || s != 0 {
			t.Fatalf("%s ran %d keygens and %d signatures on refusals", n.id, k, s)
		}
		if refs, err := n.shares.List(); err != nil || len(refs) != 0 {
			t.Fatalf("%s stores %v (%v)", n.id, refs, err)
		}
	}
}

// TestKeygenSessionBinding (docs/trust.md Open 1): a stray keygen session
// of a wallet (a failed attempt, or one a compromised leader ran beside the
// real one) completes on every member before the creator's session does.
// wallet.keyed names the creator's session (Wallet.KeySession), the stray
// key is never the wallet's, and every member then keeps exactly that
// session's share and retires the stray session's (still sealed).
func TestKeygenSessionBinding(t *testing.T) {
	h := newWalletHarness(t)
	h.approve("wc-bind", "wb", []pki.NodeID{"n1", "n2", "n3"}, 1)
	stray := tss.NewSessionID()
	var wg sync.WaitGroup
	strayKeys := make([][]byte, len(h.members))
	errs := make([]error, len(h.members))
	for i, n := range []pki.NodeID{"n1", "n2", "n3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := h.nodes[n].m.Keygen(h.ctx, "wb", stray)
			if err == nil {
				strayKeys[i] = res.PubKey
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("stray keygen on member %d: %v", i, err)
		}
	}
	pub, err := h.creator().CreateWallet(h.ctx, "wb")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(pub, strayKeys[0]) {
		t.Fatal("the recorded key is the stray session's")
	}
	// Every node's replica records the session once it applied
	// wallet.keyed (a follower may not have yet).
	var w *ledger.Wallet
	for i := range h.cluster.Nodes {
		ledgertest.Poll(t, "wallet.keyed applied on every node", func() error {
			if w = h.ledgerWallet(i, "wb"); w == nil || w.KeySession == "" {
				return errors.New("not keyed yet")
			}
			return nil
		})
	}
	session := *h.rec.session.Load()
	if w.KeySession != session.String() || w.KeySession == stray.String() {
		t.Fatalf("ledger key session %q, want the creator's %s (stray %s)", w.KeySession, session, stray)
	}
	for _, id := range []pki.NodeID{"n1", "n2", "n3"} {
		n := h.nodes[id]
		retired, err := n.m.RetireOld(h.ctx, "wb")
		if err != nil || !retired {
			t.Fatalf("%s: RetireOld after keyed: %v %v, want the stray share retired", id, retired, err)
		}
		refs, err := n.shares.List()
		if err != nil {
			t.Fatal(err)
		}
		var held [][]byte
		for _, r := range refs {
			if r.Wallet == "wb" {
				held = append(held, r.ShareID)
			}
		}
		if len(held) != 1 || !bytes.Equal(held[0], tss.KeygenShareID("wb", session, id)) {
			t.Fatalf("%s holds %d shares of wb after retiring, want only the recorded session's", id, len(held))
		}
		if again, err := n.m.RetireOld(h.ctx, "wb"); err != nil || again {
			t.Fatalf("%s: RetireOld again: %v %v, want nothing to retire", id, again, err)
		}
	}
}
