package daemon

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/api/requestid"
	"github.com/custody-dev/custody/api/webhook"
	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/transport"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/watermark"
	"github.com/custody-dev/custody/withdraw"
)

// KEKLabel is the label of the key-encryption key in a node's token
// (`custody hsm init-kek` creates it).
const KEKLabel = "custody-kek"

// DefaultPreParamsPool is how many tss-lib pre-params a node keeps ready.
const DefaultPreParamsPool = 2

// Options are what a node takes from its caller besides the config.
type Options struct {
	// Logger receives the node's events (JSON in `node run`); nil discards.
	Logger *slog.Logger
	// ETH is the Ethereum backend when chains.eth.rpc is "embedded": the
	// devnet's simulated chain (or a test's). A node whose config says
	// embedded and that is given none refuses to start.
	ETH eth.RPC
	// PreParams generates tss-lib pre-params in the background (default:
	// tss-lib's generator, about 30 s each here).
	PreParams preparams.Generator
	// Now is the node's own clock (the member's and the ledger's); nil
	// means time.Now.
	Now func() time.Time
	// Tune, if set, adjusts the ledger config after the node built it
	// (tests: timings, checkpoint interval).
	Tune func(*ledger.Config)
}

// Node is one running signer node: ledger, tss engine and transport,
// sealed shares, watermark, member, the leader's orchestration and the
// node RPC. Start builds it; Shutdown drains and stops it.
type Node struct {
	cfg  *Config
	opts Options
	log  *slog.Logger
	now  func() time.Time

	genesis *genesis.Genesis
	tok     *hsm.Token
	kek     *hsm.Sealer
	id      pki.Identity
	gate    *ledger.NodeGate
	store   *ledger.Store
	trans   *transport.Transport
	engine  *tss.Engine
	budget  *budgetStore
	shares  *shares.Store
	wm      *watermark.Store
	seen    *member.Seen
	member  *member.Member
	// memberReady is member once it runs (the ledger's export check reads
	// it from the checkpoint loop).
	memberReady atomic.Pointer[member.Member]
	chains      map[string]chains.Chain
	eth         eth.RPC
	btc         *btc.Client
	pool        *preparams.Pool
	orch        *withdraw.Orchestrator
	peers       *rpcPeers
	metrics     *nodeMetrics

	ctx       context.Context // the node's lifetime (background loops)
	cancel    context.CancelFunc
	loops     sync.WaitGroup
	drain     chan struct{} // closed by Shutdown: no new sessions
	drained   sync.Once
	fatal     chan error // Fatal
	fatalOnce sync.Once
	closers   []func() error // in reverse order of opening

	wallets *withdraw.WalletCreator
	signer  crypto.Signer // the node key (its certificate's)

	mu       sync.Mutex
	sessions map[string]bool // running work: signing sessions, keygens, RPC calls (track)
	// registered are the wallets the member signs for, with their keys.
	registered map[string]string // wallet ID → walletMark of what is registered
	// walletKeys are the registered wallets' keys (the backend API's
	// addresses of legacy wallets, whose key the ledger does not record).
	walletKeys map[string][]byte
	// hookCounters are the webhook dispatcher's totals (webhooks.go).
	hookCounters *webhook.Counters
}

// StartError is a node that refused to start: Step names what it was doing
// ("genesis", "hsm", "data dir", ...), Err why.
type StartError struct {
	Step string
	Err  error
}

func (e *StartError) Error() string { return "daemon: cannot start: " + e.Step + ": " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Start opens everything the config names, in an order that refuses a bad
// node before it touches shared state: the genesis against its pin, the
// HSM token and its KEK, the data dir's stamp, the TLS identity; then the
// ledger (bootstrapping a new cluster from the genesis node set), the tss
// transport and engine, shares, watermark, member, the node RPC and the
// background loops. Any failure closes what was opened and returns a
// *StartError with one line.
func Start(cfg *Config, opts Options) (_ *Node, err error) {
	n := &Node{cfg: cfg, opts: opts, log: opts.Logger, now: opts.Now, drain: make(chan struct{}), fatal: make(chan error, 1),
		sessions: map[string]bool{}, registered: map[string]string{}, walletKeys: map[string][]byte{}, hookCounters: new(webhook.Counters)}
	n.metrics = newNodeMetrics(n.hookCounters)
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	// Every line logged with a request's context names its request ID.
	n.log = slog.New(requestid.Handler(n.log.Handler())).With("node", string(cfg.NodeID))
	if n.now == nil {
		n.now = time.Now
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.closeAll()
		}
	}()
	step := func(name string, e error) error {
		if e == nil {
			return nil
		}
		return &StartError{Step: name, Err: e}
	}

	if n.genesis, err = cfg.LoadGenesis(); err != nil {
		return nil, step("genesis", err)
	}
	gcmd := ledger.GenesisCommand(n.genesis)
	if err := ledger.VerifyGenesisCommand(gcmd, cfg.Genesis.Hash); err != nil {
		return nil, step("genesis", err)
	}
	hooks, err := n.loadWebhooks()
	if err != nil {
		return nil, step("webhooks", err)
	}
	if err := n.openHSM(); err != nil {
		return nil, step("hsm", err)
	}
	// Everything that can refuse the config comes before the data dir is
	// stamped: a refused start leaves no new data dir behind.
	if err := n.openChains(); err != nil {
		return nil, step("chains", err)
	}
	if err := ClaimDataDir(cfg.DataDir, Stamp{NodeID: cfg.NodeID, TokenSerial: n.tok.Info().Serial, Format: DataDirFormat}); err != nil {
		return nil, step("data dir", err)
	}
	if n.id, err = n.identity(); err != nil {
		return nil, step("tls", err)
	}
	var ok bool
	if n.signer, ok = n.id.Cert.PrivateKey.(crypto.Signer); !ok {
		return nil, step("tls", errors.New("the node key cannot sign"))
	}
	if cfg.TLS.KeyLabel != "" {
		n.signer = countingSigner{Signer: n.signer, m: n.metrics}
	}
	n.peers = newRPCPeers(n)
	if err := n.openLedger(&gcmd, n.signer); err != nil {
		return nil, step("ledger", err)
	}
	if err := n.startRPCClient(); err != nil {
		return nil, step("node rpc", err)
	}
	if err := n.startPreParams(); err != nil {
		return nil, step("tss.preparams_cache", err)
	}
	if err := n.openSigner(); err != nil {
		return nil, step("signer", err)
	}
	if err := n.serveRPC(); err != nil {
		return nil, step("node rpc", err)
	}
	if err := n.serveAPI(); err != nil {
		return nil, step("backend api", err)
	}
	if err := n.startWebhooks(hooks); err != nil {
		return nil, step("webhooks", err)
	}
	if err := n.serveMetrics(); err != nil {
		return nil, step("metrics", err)
	}
	n.goLoop("leader", n.leaderLoop)
	n.goLoop("token", n.declareToken)
	n.goLoop("observe", n.observeLoop)
	n.goLoop("witness", n.witnessLoop)
	n.log.Info("node started", "raft", cfg.Listen.Raft, "tss", cfg.Listen.TSS, "rpc", cfg.Listen.RPC, "api", cfg.Listen.API,
		"metrics", cfg.Listen.Metrics, "genesis", cfg.Genesis.Hash, "token_serial", n.tok.Info().Serial)
	return n, nil
}

// onClose registers a closer, run in reverse order by closeAll.
func (n *Node) onClose(f func() error) { n.closers = append(n.closers, f) }

func (n *Node) closeAll() {
	n.cancel()
	n.loops.Wait()
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil {
			n.log.Warn("close", "err", err)
		}
	}
	n.closers = nil
}

func (n *Node) goLoop(name string, f func(ctx context.Context)) {
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		f(n.ctx)
		n.log.Debug("loop stopped", "loop", name)
	}()
}

func (n *Node) openHSM() error {
	if n.cfg.HSM.Module == "" {
		return errors.New("hsm.module is empty: name the PKCS#11 library (custody node run fills in SoftHSM2's when it is installed)")
	}
	pin, err := hsm.LoadPIN("", n.cfg.HSM.PINFile)
	if err != nil {
		return fmt.Errorf("hsm.pin_file: %w", err)
	}
	n.tok, err = hsm.Open(hsm.Config{Module: n.cfg.HSM.Module, TokenLabel: n.cfg.HSM.TokenLabel, TokenSerial: n.cfg.HSM.TokenSerial, PIN: pin})
	if err != nil {
		return err
	}
	n.onClose(n.tok.Close)
	if n.kek, err = n.tok.KEK(KEKLabel); err != nil {
		return fmt.Errorf("token %q has no usable key-encryption key %q (create it once with `custody hsm init-kek`): %w",
			n.tok.Info().Label, KEKLabel, err)
	}
	return nil
}

// identity is the node's TLS identity: its key file, or its key in the
// HSM token (tls.key_label: a P-256 key whose public key is the
// certificate's).
func (n *Node) identity() (pki.Identity, error) {
	if n.cfg.TLS.KeyLabel == "" {
		return n.cfg.Identity()
	}
	k, err := n.tok.ECKey(n.cfg.TLS.KeyLabel)
	if err != nil {
		return pki.Identity{}, fmt.Errorf("tls.key_label: %w", err)
	}
	if k.Curve() != hsm.P256 {
		return pki.Identity{}, fmt.Errorf("tls.key_label: key %q is %s; a node key is P-256", n.cfg.TLS.KeyLabel, k.Curve())
	}
	return n.cfg.IdentityWith(k)
}

func (n *Node) openChains() error {
	n.chains = map[string]chains.Chain{}
	if e := n.cfg.Chains.ETH; e != nil {
		tokens := map[string][]eth.Token{}
		for _, t := range e.Tokens {
			tokens[e.Network] = append(tokens[e.Network], eth.Token{Symbol: t.Symbol, Address: common.HexToAddress(t.Contract), Decimals: uint8(t.Decimals)})
		}
		c, err := eth.New(eth.Config{Networks: map[string]uint64{e.Network: uint64(e.ChainID)}, Tokens: tokens})
		if err != nil {
			return fmt.Errorf("chains.eth: %w", err)
		}
		n.chains["eth"] = c
		if e.RPC == EmbeddedETH {
			if n.opts.ETH == nil {
				return errors.New(`chains.eth.rpc is "embedded": only custody devnet runs the embedded chain; give a JSON-RPC URL`)
			}
			n.eth = n.opts.ETH
		} else {
			ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
			defer cancel()
			cl, err := eth.Dial(ctx, e.RPC)
			if err != nil {
				return fmt.Errorf("chains.eth.rpc: %w", err)
			}
			n.eth = cl
		}
	}
	if b := n.cfg.Chains.BTC; b != nil {
		c, err := btc.NewChain(map[string]string{b.Network: b.Network})
		if err != nil {
			return fmt.Errorf("chains.btc: %w", err)
		}
		n.chains["btc"] = c
		params, err := btc.Network(b.Network)
		if err != nil {
			return fmt.Errorf("chains.btc.network: %w", err)
		}
		pass, err := readSecret(b.PasswordFile)
		if err != nil {
			return fmt.Errorf("chains.btc.password_file: %w", err)
		}
		rc := btc.RPCConfig{Host: b.RPC, User: b.User, Pass: pass, DisableTLS: b.NoTLS}
		if !b.NoTLS {
			if rc.Cert, err = readBounded(b.CertFile, 1<<20); err != nil {
				return fmt.Errorf("chains.btc.cert_file: %w", err)
			}
		}
		if n.btc, err = btc.Dial(rc, params); err != nil {
			return fmt.Errorf("chains.btc.rpc: %w", err)
		}
		n.onClose(func() error { n.btc.Close(); return nil })
	}
	return nil
}

// readSecret reads a one-line secret file (one trailing newline trimmed);
// its content never goes into an error.
func readSecret(path string) (string, error) {
	b, err := readBounded(path, 4096)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// voters are the raft addresses of the genesis node set, from the config.
func (n *Node) voters() (map[pki.NodeID]string, error) {
	addr := map[pki.NodeID]string{n.cfg.NodeID: n.cfg.Listen.Raft}
	for _, p := range n.cfg.Peers {
		addr[p.ID] = p.Raft
	}
	out := map[pki.NodeID]string{}
	for _, g := range n.genesis.Nodes {
		a, ok := addr[g.ID]
		if !ok {
			return nil, fmt.Errorf("the genesis node set names %q but the config has no peer %q", g.ID, g.ID)
		}
		out[g.ID] = a
	}
	return out, nil
}

func (n *Node) openLedger(g *ledger.Genesis, signer crypto.Signer) error {
	voters, err := n.voters()
	if err != nil {
		return err
	}
	n.gate = ledger.NewNodeGate()
	stream, err := ledger.ListenStream(n.cfg.Listen.Raft, n.id, n.gate.Authorize)
	if err != nil {
		return err
	}
	lc := ledger.Config{
		NodeID: n.cfg.NodeID, Dir: filepath.Join(n.cfg.DataDir, "ledger"), LogStore: n.cfg.Ledger.LogStore,
		Stream: stream, Gate: n.gate, Logger: n.log.With("component", "ledger"), RaftLog: lineLog{n.log.With("component", "raft")},
		HeartbeatTimeout: time.Duration(n.cfg.Ledger.HeartbeatTimeout), ElectionTimeout: time.Duration(n.cfg.Ledger.ElectionTimeout),
		LeaderLeaseTimeout: time.Duration(n.cfg.Ledger.LeaderLeaseTimeout), ApplyTimeout: time.Duration(n.cfg.Ledger.ApplyTimeout),
		Clock: n.now, Genesis: g, CheckpointSigner: signer, Forward: n.peers.forward,
		// A cold export is attested only once this node's member allows
		// it by its own first-seen times and clock: the offline signer
		// sees only the leader's governance times (docs/trust.md).
		ExportCheck: func(st *ledger.State, r *ledger.Request) error {
			m := n.memberReady.Load()
			if m == nil {
				return errors.New("the member has not started yet")
			}
			return m.PolicyReady(st, r, n.now())
		},
	}
	if n.opts.Tune != nil {
		n.opts.Tune(&lc)
	}
	if err := os.MkdirAll(lc.Dir, 0o700); err != nil {
		_ = stream.Close()
		return err
	}
	if n.store, err = ledger.Open(lc); err != nil {
		return err
	}
	n.onClose(n.store.Close)
	return n.store.BootstrapVoters(voters)
}

func (n *Node) openSigner() error {
	peers := map[pki.NodeID]string{}
	for _, p := range n.cfg.Peers {
		peers[p.ID] = p.TSS
	}
	var err error
	n.trans, err = transport.New(transport.Config{Self: n.cfg.NodeID, Listen: n.cfg.Listen.TSS, Peers: peers, TLS: n.id,
		Authorize: n.gate.Authorize, Logger: n.log.With("component", "tss-transport")})
	if err != nil {
		return err
	}
	n.onClose(func() error { n.trans.Close(); return nil })
	if n.budget, err = openBudget(n.cfg.DataDir); err != nil {
		return err
	}
	if n.engine, err = tss.NewEngine(tss.Config{Self: n.cfg.NodeID, Transport: n.trans, Budget: n.budget.budget, Events: n.onEngineEvent}); err != nil {
		return err
	}
	n.onClose(func() error { n.engine.Close(); return nil })
	if n.shares, err = shares.NewStore(filepath.Join(n.cfg.DataDir, "shares"), countingSealer{s: n.kek, m: n.metrics}); err != nil {
		return err
	}
	if n.wm, err = watermark.Open(filepath.Join(n.cfg.DataDir, "watermark")); err != nil {
		return err
	}
	n.onClose(n.wm.Close)
	if n.seen, err = member.OpenSeen(filepath.Join(n.cfg.DataDir, "seen")); err != nil {
		return err
	}
	n.onClose(n.seen.Close)
	n.member, err = member.New(member.Config{Engine: n.engine, Shares: retiringShares{n.shares}, Watermark: n.wm, Seen: n.seen,
		Ledger: &member.LocalLedger{Store: n.store, ReadIndex: n.peers.readIndex}, Chains: n.chains,
		Logger: n.log.With("component", "member"), Now: n.now, PreParams: n.pool, NodeKey: n.signer})
	if err != nil {
		return err
	}
	n.memberReady.Store(n.member)
	keygenMembers := []withdraw.KeygenMember{n.member}
	for _, p := range n.cfg.Peers {
		keygenMembers = append(keygenMembers, n.peers.client.Load().Member(p.ID))
	}
	if n.wallets, err = withdraw.NewWalletCreator(withdraw.WalletConfig{Ledger: n.store, Actor: "node:" + string(n.cfg.NodeID), Members: keygenMembers}); err != nil {
		return err
	}
	wc := withdraw.Config{Ledger: n.store, Network: n.ethNetwork(), Chains: n.chains,
		Actor: "node:" + string(n.cfg.NodeID), Members: n.peers.members()}
	if n.eth != nil {
		wc.ETH = n.eth
	}
	if b := n.cfg.Chains.BTC; b != nil {
		wc.BTC = withdraw.BTCConfig{Node: n.btc, Network: b.Network, FeeRate: b.FeeRate, MinConf: b.MinConf}
		wc.BTCNode = n.btc
	}
	if len(n.chains) == 0 {
		return errors.New("no chain configured: set chains.eth and/or chains.btc")
	}
	n.orch, err = withdraw.New(wc)
	return err
}

func (n *Node) ethNetwork() string {
	if e := n.cfg.Chains.ETH; e != nil {
		return e.Network
	}
	return ""
}

// syncWallets registers, with the member and the orchestrator, each wallet
// the ledger holds as active: the orchestrator learns the key the committee
// attested (it builds and claims for any wallet, also one this node holds
// no share of); the member registers the key of its OWN stored share, and
// only a share whose key is the one the ledger records (a node may hold
// shares of keygens that never completed). A legacy wallet (wallet.set, no
// key in the ledger) is registered from the node's one share of it.
func (n *Node) syncWallets() error {
	var todo []ledger.Wallet
	if err := n.store.ReadLocal(func(st *ledger.State) error {
		for _, w := range st.Wallets {
			// A resharing wallet is signed for by its old committee until
			// the reshare commits: register it (also after a restart).
			if !w.Active() {
				continue
			}
			n.mu.Lock()
			have, ok := n.registered[w.ID]
			n.mu.Unlock()
			if !ok || have != walletMark(w) {
				todo = append(todo, *w)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, w := range todo {
		n.mu.Lock()
		_, known := n.registered[w.ID]
		n.mu.Unlock()
		if known && w.Status != ledger.WalletResharing {
			// The committee changed (a reshare committed): the member
			// switches to its new share and retires the old one (moved,
			// still sealed, to shares/retired: retiringShares).
			ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
			retired, err := n.member.RetireOld(ctx, w.ID)
			cancel()
			if err != nil {
				n.log.Warn("retire the old share", "wallet", w.ID, "err", err)
			} else if retired {
				n.log.Info("old share retired after the reshare", "audit", true, "wallet", w.ID)
			}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	refs, err := n.shares.List()
	if err != nil {
		return err
	}
	for _, w := range todo {
		info, err := n.ownShare(w, refs)
		if err != nil {
			n.log.Error("wallet not registered", "wallet", w.ID, "err", err)
			continue
		}
		if info == nil { // not a committee member: the orchestrator only
			if len(w.PubKey) == 0 {
				continue
			}
			info = &tss.WalletInfo{Wallet: w.ID, Threshold: w.Threshold, PubKey: w.PubKey}
			for _, id := range w.Committee {
				info.Members = append(info.Members, tss.Party{Node: id})
			}
			n.orch.AddWallet(*info)
		} else if err := n.addWallet(*info); err != nil {
			n.log.Error("wallet not registered", "wallet", w.ID, "err", err)
			continue
		} else if w.KeySession != "" {
			// The ledger names the session whose share counts: shares of
			// other keygen sessions of this wallet (a failed attempt, or
			// sessions a compromised leader ran beside the recorded one)
			// are retired, still sealed.
			ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
			retired, err := n.member.RetireOld(ctx, w.ID)
			cancel()
			if err != nil {
				n.log.Warn("retire the shares of other sessions", "wallet", w.ID, "err", err)
			} else if retired {
				n.log.Info("shares of other keygen sessions retired", "audit", true, "wallet", w.ID)
			}
		}
		n.mu.Lock()
		n.registered[w.ID] = walletMark(&w)
		n.walletKeys[w.ID] = slices.Clone(info.PubKey)
		n.mu.Unlock()
		n.log.Info("wallet registered", "wallet", w.ID, "chain", w.Chain, "network", w.Network)
	}
	return nil
}

// ownShare is the public description kept with this node's share of w
// whose key the ledger records (nil when the node holds none: not in the
// committee). A committee member without that share is an error. When the
// ledger names the session of the wallet's keygen or last reshare
// (KeySession), only the share that session gave this node counts
// (tss.KeygenShareID, tss.ReshareShareID): the shares of other sessions and
// the old committee's are ignored.
func (n *Node) ownShare(w ledger.Wallet, refs []shares.Ref) (*tss.WalletInfo, error) {
	var want [][]byte
	if w.KeySession != "" {
		session, err := tss.ParseSessionID(w.KeySession)
		if err != nil {
			return nil, fmt.Errorf("the ledger's key session: %w", err)
		}
		want = [][]byte{tss.ReshareShareID(w.ID, session, n.cfg.NodeID), tss.KeygenShareID(w.ID, session, n.cfg.NodeID)}
	}
	var found []tss.WalletInfo
	for _, r := range refs {
		if r.Wallet != w.ID || r.Party != n.cfg.NodeID {
			continue
		}
		if want != nil && !bytes.Equal(r.ShareID, want[0]) && !bytes.Equal(r.ShareID, want[1]) {
			continue
		}
		sh, err := n.shares.Get(r.Wallet, r.Party, r.ShareID)
		if err != nil {
			return nil, err
		}
		info, retired := sh.Info(), sh.Retired()
		sh.Wipe()
		var members []pki.NodeID
		for _, p := range info.Members {
			members = append(members, p.Node)
		}
		slices.Sort(members)
		if !retired && (len(w.PubKey) == 0 || string(info.PubKey) == string(w.PubKey)) &&
			slices.Equal(members, w.Committee) && info.Threshold == w.Threshold {
			found = append(found, info)
		}
	}
	switch {
	case len(found) == 1:
		return &found[0], nil
	case len(found) > 1:
		return nil, fmt.Errorf("%d shares match the key, committee and threshold the ledger records; refusing to choose", len(found))
	case slices.Contains(w.Committee, n.cfg.NodeID):
		return nil, fmt.Errorf("this node is in the committee but holds no share of the key the ledger records")
	}
	return nil, nil
}

func (n *Node) addWallet(info tss.WalletInfo) error {
	if err := n.member.AddWallet(info); err != nil {
		return fmt.Errorf("wallet %q: %w", info.Wallet, err)
	}
	n.orch.AddWallet(info)
	return nil
}

// startPreParams keeps pre-params ready for keygens and reshares, in the
// background from start (never on a request path).
func (n *Node) startPreParams() error {
	gen := n.opts.PreParams
	if gen == nil {
		gen = func(ctx context.Context) (*keygen.LocalPreParams, error) {
			return keygen.GeneratePreParamsWithContext(ctx)
		}
	}
	if dir := n.cfg.TSS.PreParamsCache; dir != "" {
		// Devnet only (config validation): sets from the cache first, the
		// unused ones back to it at shutdown, each used once.
		cache, err := preparams.OpenCache(dir)
		if err != nil {
			return err
		}
		n.log.Warn("tss pre-params from a devnet cache in plain files", "dir", dir, "cached", cache.Len())
		gen = cache.Generator(gen)
		n.closers = append(n.closers, func() error {
			back := n.pool.Drain()
			for _, pp := range back {
				if err := cache.Put(pp); err != nil {
					return fmt.Errorf("return pre-params to the cache: %w", err)
				}
			}
			n.log.Info("unused tss pre-params returned to the devnet cache", "sets", len(back))
			return nil
		})
	}
	// The pool validates each set; outside a test binary it refuses the
	// committed fixtures (preparams.Validate).
	n.pool = preparams.NewPool(n.ctx, n.cfg.TSS.PreParamsPool, gen)
	return nil
}

// Store is the node's ledger (tests, devnet).
func (n *Node) Store() *ledger.Store { return n.store }

// ID is the node's ID.
func (n *Node) ID() pki.NodeID { return n.cfg.NodeID }

// Shutdown drains the node: no new signing sessions or keygens start, the
// running ones finish or, when ctx ends first, are aborted; then every
// component closes. Safe to call twice.
func (n *Node) Shutdown(ctx context.Context) error {
	n.drained.Do(func() { close(n.drain) })
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n.busy() {
		select {
		case <-ctx.Done():
			n.log.Warn("shutdown deadline: aborting running sessions")
			n.closeAll()
			return fmt.Errorf("daemon: shutdown: sessions aborted: %w", ctx.Err())
		case <-tick.C:
		}
	}
	n.closeAll()
	n.log.Info("node stopped")
	return nil
}

func (n *Node) draining() bool {
	select {
	case <-n.drain:
		return true
	default:
		return false
	}
}

func (n *Node) busy() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.sessions) > 0
}

// Submit commits cmd on behalf of actor: on the leader directly, from a
// follower through the node RPC to the leader (the command, with every
// signature in it, travels unchanged). The answer is the leader's.
func (n *Node) Submit(ctx context.Context, actor string, cmd ledger.Command) (ledger.Outcome, error) {
	return n.peers.submit(ctx, actor, cmd)
}

// CreateETH builds and records a hot ETH or ERC-20 withdrawal
// (withdraw.Orchestrator.CreateETH); only the leader builds transactions
// (ledger.ErrNotLeader on a follower).
func (n *Node) CreateETH(ctx context.Context, w withdraw.ETHWithdrawal) (*ledger.Request, error) {
	if !n.store.IsLeader() {
		id, _ := n.store.Leader()
		return nil, &ledger.NotLeaderError{LeaderID: id}
	}
	return n.orch.CreateETH(ctx, w)
}

// Observe has the member record now, at its own clock, the governance
// changes its ledger holds that it has not seen yet (the observe loop does
// this every half second; devnet and tests call it to be sure).
func (n *Node) Observe(ctx context.Context) error { return n.member.Observe(ctx) }

// CreateBTC builds and records a Bitcoin withdrawal from the wallet's
// unreserved UTXOs (withdraw.Orchestrator.CreateBTC); leader only.
func (n *Node) CreateBTC(ctx context.Context, w withdraw.BTCWithdrawal) (*ledger.Request, error) {
	if !n.store.IsLeader() {
		id, _ := n.store.Leader()
		return nil, &ledger.NotLeaderError{LeaderID: id}
	}
	return n.orch.CreateBTC(ctx, w)
}

// walletMark identifies what a wallet's registration stands for: its key,
// committee and threshold (a reshare changes the last two).
func walletMark(w *ledger.Wallet) string {
	return fmt.Sprintf("%x/%v/%d", w.PubKey, w.Committee, w.Threshold)
}

// retiringShares is the node's share store as its member sees it: a share
// the member deletes (the old committee's, after a reshare) is retired
// instead — moved, still sealed, to shares/retired — so a reshare that
// went wrong never destroys the key; a person removes retired shares once
// the new committee has signed.
type retiringShares struct{ *shares.Store }

func (r retiringShares) Delete(wallet string, party pki.NodeID, shareID []byte) error {
	return r.Retire(wallet, party, shareID)
}
