package daemon_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"gopkg.in/yaml.v3"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/chains/eth/devtoken"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/leaktest"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
	"github.com/custody-dev/custody/withdraw"
)

const (
	clusterID = "daemon-test"
	walletID  = "hot-eth"
	network   = "devnet"
	chainID   = 1337
	// rules: one hot ETH wallet, an allowlist with a one-hour cooling-off
	// (the harness clock jumps past it), two approvals.
	rules = `version: 1
assets:
  ETH: {decimals: 18}
  BTC: {decimals: 8}
  TKN: {decimals: 6}
allowlist:
  cooling_off: 1h
  approvals: 2
  roles: [admin, approver]
lock:
  unlock_delay: 1h
wallets:
  - name: eth-hot
    wallets: [hot-eth, hot-eth-2]
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
  - name: eth-cold
    wallets: [cold-eth]
    asset: ETH
    class: cold
    allowlist_required: false
    limits:
      per_tx: "100"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
  - name: btc-cold
    wallets: [cold-btc]
    asset: BTC
    class: cold
    allowlist_required: false
    limits:
      per_tx: "100"
      max_fee: "0.001"
      max_fee_rate: 50
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

// tokenAddr is the test ERC-20 (devtoken's hand-assembled token) in the
// simulated chain's genesis, registered as TKN (6 decimals); the harness
// wallet holds 5000 TKN.
var tokenAddr = common.HexToAddress("0x7070707070707070707070707070707070707070")

var (
	alice   = ledgertest.NewOperator("alice", quorum.KindHuman, quorum.RoleAdmin)
	bob     = ledgertest.NewOperator("bob", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	carol   = ledgertest.NewOperator("carol", quorum.KindHuman, quorum.RoleApprover)
	backend = ledgertest.NewOperator("backend", quorum.KindBackend, quorum.RoleInitiator)
	// backend2 is a second backend principal (the API's tests suspend it).
	backend2 = ledgertest.NewOperator("backend-2", quorum.KindBackend, quorum.RoleInitiator)
	// Four nodes: with a checkpoint quorum of 3 of 4 the cluster signs
	// with one node down (3 nodes need all 3 to attest a claim). The
	// wallet is 2-of-4 (threshold 1) over all of them.
	nodeIDs   = []pki.NodeID{"n1", "n2", "n3", "n4"}
	committee = nodeIDs
)

// One keygen for the package (tss-lib keygen is the slow part); each test
// seals the shares into its nodes' own tokens.
var (
	keygenOnce   sync.Once
	keygenShares map[pki.NodeID]*tss.Share
	keygenErr    error
)

func walletShares(t *testing.T) map[pki.NodeID]*tss.Share {
	t.Helper()
	keygenOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), tsstest.Deadline)
		defer cancel()
		net := tss.NewMemNetwork()
		c := tsstest.NewCommittee(tsstest.NoCleanup(t), committee, func(id pki.NodeID) tss.Transport { return net.Endpoint(id) }, nil)
		keygenShares, keygenErr = c.Keygen(ctx, walletID, nil, 1, nil)
	})
	if keygenErr != nil {
		t.Fatal(keygenErr)
	}
	return keygenShares
}

// testNode is one node of the test cluster: its config file, its token
// and, while it runs, the daemon.
type testNode struct {
	id     pki.NodeID
	config string
	token  hsm.Config
	node   *daemon.Node
	// log captures every line the node logs (JSON, debug level), across
	// restarts; the cluster checks it for secrets when the test ends.
	log *leaktest.Log
	// metrics is the node's listen.metrics address.
	metrics string
}

// cluster is four daemons on 127.0.0.1, each with its own SoftHSM token
// and data dir, sharing one simulated chain and one test clock.
type cluster struct {
	t      *testing.T
	ctx    context.Context
	nodes  map[pki.NodeID]*testNode
	clock  *ledgertest.Clock
	sim    *eth.Simulated
	wallet common.Address
	info   tss.WalletInfo
	dests  []common.Address
	// ca is the cluster CA (backend and operator certificates for the
	// backend API's tests); caPEM its certificate.
	ca    *pki.CA
	caPEM []byte
	// secrets are every secret the test can get its hands on (PINs, node,
	// operator and client keys, the CA key, the shares' secrets and
	// sealed files): none may appear in any node's log (checked when the
	// test ends, after the nodes stopped).
	secrets *leaktest.Secrets
	// preParams, when set, holds back every node's pre-params until it is
	// closed.
	preParams chan struct{}
}

func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return out
}

func writeFile(t *testing.T, path string, mode os.FileMode, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

// newCluster writes a CA, node certificates (keys ledgertest.NodeKey), the
// genesis file and one YAML config per node, makes each node a token with
// its KEK and seals the package's wallet shares into each node's data dir;
// then starts the daemons and waits for the genesis to commit.
func newCluster(t *testing.T, tune ...func(*daemon.Config)) *cluster {
	t.Helper()
	return newClusterWith(t, setup{}, tune...)
}

// setup varies the test cluster.
type setup struct {
	// hsmKeyed nodes keep their node key in their HSM token (tls.key_label)
	// instead of a key file.
	hsmKeyed []pki.NodeID
	// alsoWallets are more wallet IDs each node holds the package's key
	// share under (one keygen for the package).
	alsoWallets []string
	// holdPreParams: the nodes get no pre-params until the test closes
	// cluster.preParams (readiness tests).
	holdPreParams bool
	// fund are more accounts the simulated chain's genesis funds (wei).
	fund map[common.Address]*big.Int
}

// nodeKeyLabel is the label of an HSM-held node key in the tests.
const nodeKeyLabel = "custody-node"

// newClusterWith is newCluster varied by su.
func newClusterWith(t *testing.T, su setup, tune ...func(*daemon.Config)) *cluster {
	t.Helper()
	ksh := walletShares(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	c := &cluster{t: t, ctx: ctx, nodes: map[pki.NodeID]*testNode{},
		clock: ledgertest.NewClock(time.Now().UTC().Truncate(time.Second).Add(-3 * time.Hour)), info: ksh["n1"].Info(),
		secrets: new(leaktest.Secrets)}
	if su.holdPreParams {
		c.preParams = make(chan struct{})
	}
	// Runs last (cleanups run in reverse): after every node stopped, with
	// every line of the run in the captures.
	t.Cleanup(c.checkLogs)
	var err error
	if c.wallet, err = eth.AddressFromPublicKey(c.info.PubKey); err != nil {
		t.Fatal(err)
	}
	alloc := types.GenesisAlloc{c.wallet: {Balance: ether(100)},
		tokenAddr: devtoken.TokenAccount(map[common.Address]*big.Int{c.wallet: big.NewInt(5_000_000_000)})}
	for a, v := range su.fund {
		alloc[a] = types.Account{Balance: v}
	}
	c.sim = eth.NewSimulated(alloc)
	t.Cleanup(func() { _ = c.sim.Close() })

	dir := t.TempDir()
	// The API checks client certificates at the node's clock (hours behind
	// the wall clock here): the CA's validity covers both.
	ca, err := pki.NewCA(clusterID, c.clock.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca.pem"), 0o644, ca.PEM())
	c.ca, c.caPEM = ca, ca.PEM()
	caKey, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	c.secrets.PEM("the CA key", caKey)
	for _, op := range []ledgertest.Operator{alice, bob, carol, backend} {
		c.secrets.PrivateKey(op.ID+"'s device key", op.Key)
	}

	// Each node: its token with the KEK and the wallet share sealed in its
	// data dir, its node key (a file, or generated in the token) and its
	// certificate; the genesis pins each certificate's key.
	fingerprints := map[pki.NodeID]string{}
	for _, id := range nodeIDs {
		nd := filepath.Join(dir, string(id))
		tok := softhsmtest.NewToken(t, "daemon-"+string(id))
		writeFile(t, filepath.Join(nd, "hsm.pin"), 0o600, []byte(tok.PIN+"\n"))
		c.secrets.String(string(id)+"'s HSM PIN", tok.PIN)
		if sh := ksh[id]; sh != nil {
			addShareSecrets(t, c.secrets, string(id)+"'s share", sh)
		}
		var pub crypto.PublicKey
		func() {
			h, err := hsm.Open(tok)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			kek, err := h.CreateKEK(daemon.KEKLabel)
			if err != nil {
				t.Fatal(err)
			}
			ss, err := shares.NewStore(filepath.Join(nd, "data", "shares"), kek)
			if err != nil {
				t.Fatal(err)
			}
			if sh := ksh[id]; sh != nil {
				if err := ss.Put(sh); err != nil {
					t.Fatal(err)
				}
				for _, w := range su.alsoWallets {
					b, err := sh.Marshal()
					if err != nil {
						t.Fatal(err)
					}
					alias, err := tss.UnmarshalShare(b)
					if err != nil {
						t.Fatal(err)
					}
					alias.Wallet = w
					if err := ss.Put(alias); err != nil {
						t.Fatal(err)
					}
				}
			}
			if slices.Contains(su.hsmKeyed, id) {
				k, err := h.GenerateECKey(nodeKeyLabel, hsm.P256)
				if err != nil {
					t.Fatal(err)
				}
				pub = k.Public()
			}
		}()
		if pub == nil {
			key := ledgertest.NodeKey(id)
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
			writeFile(t, filepath.Join(nd, "node.key"), 0o600, keyPEM)
			c.secrets.PEM(string(id)+"'s node key", keyPEM)
			pub = &key.PublicKey
		}
		certPEM, err := ca.IssueNodeFor(id, pub, time.Now(), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(nd, "node.pem"), 0o644, certPEM)
		blk, _ := pem.Decode(certPEM)
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		fingerprints[id] = pki.KeyFingerprint(cert)
		c.nodes[id] = &testNode{id: id, token: tok, log: &leaktest.Log{}}
		if os.Getenv("DAEMON_TEST_LOG") != "" {
			c.nodes[id].log.Tee = os.Stderr
		}
		// The sealed shares as they lie on disk.
		sealed, _ := filepath.Glob(filepath.Join(nd, "data", "shares", "*.share"))
		for _, f := range sealed {
			if b, err := os.ReadFile(f); err == nil {
				c.secrets.Bytes(string(id)+"'s sealed share file", b)
			}
		}
	}
	gcmd := ledgertest.GenesisFor(nodeIDs, clusterID, 2, rules, alice, bob, carol, backend, backend2)
	for i := range gcmd.Nodes {
		gcmd.Nodes[i].KeyFingerprint = fingerprints[gcmd.Nodes[i].ID]
	}
	gcmd.Hash = "" // recomputed from the edited node set
	g, err := ledger.GenesisDocument(gcmd)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "genesis.json"), 0o644, g.Encode())

	ports := freePorts(t, 5*len(nodeIDs))
	addr := func(i, k int) string { return ports[5*i+k] }
	for i, id := range nodeIDs {
		nd := filepath.Join(dir, string(id))
		tok := c.nodes[id].token
		tlsFiles := daemon.TLSFiles{CA: "../ca.pem", Cert: "node.pem", Key: "node.key"}
		if slices.Contains(su.hsmKeyed, id) {
			tlsFiles.Key, tlsFiles.KeyLabel = "", nodeKeyLabel
		}
		cfg := daemon.Config{
			NodeID: id, DataDir: "data",
			Listen:  daemon.Listen{Raft: addr(i, 0), TSS: addr(i, 1), RPC: addr(i, 2), API: addr(i, 3), Metrics: addr(i, 4)},
			TLS:     tlsFiles,
			HSM:     daemon.HSM{Module: tok.Module, TokenLabel: tok.TokenLabel, TokenSerial: tok.TokenSerial, PINFile: "hsm.pin"},
			Genesis: daemon.GenesisPin{File: "../genesis.json", Hash: g.Hash()},
			Chains: daemon.Chains{ETH: &daemon.ETH{RPC: daemon.EmbeddedETH,
				Tokens: []daemon.Token{{Symbol: "TKN", Contract: tokenAddr.Hex(), Decimals: 6}}}},
			TSS: daemon.TSS{SessionTimeout: daemon.Duration(time.Minute)},
			// The test clock stands still, so rate-limit buckets never
			// refill: room for every test's polling.
			API: daemon.API{RateLimit: daemon.RateLimit{PerMinute: 1_000_000, Burst: 100_000}},
		}
		for j, p := range nodeIDs {
			if p != id {
				cfg.Peers = append(cfg.Peers, daemon.Peer{ID: p, Raft: addr(j, 0), TSS: addr(j, 1), RPC: addr(j, 2)})
			}
		}
		for _, f := range tune {
			f(&cfg)
		}
		b, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(nd, "config.yaml")
		writeFile(t, path, 0o644, b)
		c.nodes[id].config = path
		c.nodes[id].metrics = cfg.Listen.Metrics
	}
	for _, id := range nodeIDs {
		c.start(id)
	}
	c.poll("the genesis committed on every node", func() error {
		for _, n := range c.nodes {
			if err := n.node.Store().ReadLocal(func(st *ledger.State) error {
				if st.Registry.ClusterID != clusterID {
					return fmt.Errorf("%s has no genesis yet", n.id)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	c.onLeader("ceremony", ledger.WalletSet{Wallet: ledger.Wallet{ID: walletID, Chain: "eth", Network: network, Committee: committee, Threshold: 1}})
	for i := range 2 {
		c.dests = append(c.dests, c.allowlist(fmt.Sprintf("allow-%d", i)))
	}
	// Members count the cooling-off from when they first saw each entry.
	c.observed()
	c.clock.Advance(time.Hour + time.Minute)
	return c
}

// start runs node id's daemon from its config file.
func (c *cluster) start(id pki.NodeID) {
	c.t.Helper()
	n := c.nodes[id]
	cfg, err := daemon.LoadConfig(n.config)
	if err != nil {
		c.t.Fatal(err)
	}
	gen := tsstest.FixtureSource(slices.Index(nodeIDs, id), len(nodeIDs))
	if hold := c.preParams; hold != nil {
		fixtures := gen
		gen = func(ctx context.Context) (*keygen.LocalPreParams, error) {
			select {
			case <-hold:
				return fixtures(ctx)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	logger := slog.New(slog.NewJSONHandler(n.log, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", c.t.Name())
	n.node, err = daemon.Start(cfg, daemon.Options{ETH: c.sim, Now: c.clock.Now, PreParams: gen, Logger: logger})
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	node := n.node
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = node.Shutdown(ctx)
	})
}

// stop shuts node id down (drain deadline: none, sessions abort).
func (c *cluster) stop(id pki.NodeID) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = c.nodes[id].node.Shutdown(ctx)
	c.nodes[id].node = nil
}

func (c *cluster) poll(what string, fn func() error) { c.t.Helper(); ledgertest.Poll(c.t, what, fn) }

// leader is the running node that leads now.
func (c *cluster) leader() *daemon.Node {
	c.t.Helper()
	var l *daemon.Node
	c.poll("a leader", func() error {
		for _, n := range c.nodes {
			if n.node != nil && n.node.Store().IsLeader() {
				l = n.node
				return nil
			}
		}
		return fmt.Errorf("no leader among the running nodes")
	})
	return l
}

// any is a running node, a follower when there is one.
func (c *cluster) follower() *daemon.Node {
	c.t.Helper()
	for _, id := range nodeIDs {
		if n := c.nodes[id].node; n != nil && !n.Store().IsLeader() {
			return n
		}
	}
	c.t.Fatal("no running follower")
	return nil
}

// submit writes cmd through a follower's daemon (forwarded to the leader).
func (c *cluster) submit(actor string, cmd ledger.Command) ledger.Outcome {
	c.t.Helper()
	var out ledger.Outcome
	c.poll("submit "+cmd.Type(), func() error {
		var err error
		out, err = c.follower().Submit(c.ctx, actor, cmd)
		return err
	})
	return out
}

// onLeader commits cmd on the leader itself: a command only the leader
// proposes (nodes do not forward it: noderpc.Forwardable).
func (c *cluster) onLeader(actor string, cmd ledger.Command) {
	c.t.Helper()
	c.poll("commit "+cmd.Type()+" on the leader", func() error {
		_, err := c.leader().Store().Submit(c.ctx, actor, cmd)
		return err
	})
}

// allowlist adds a destination of the harness wallet with two
// admin/approver approvals.
func (c *cluster) allowlist(name string) common.Address {
	c.t.Helper()
	seed := sha256.Sum256([]byte("daemon-test-dest/" + name))
	dest := common.BytesToAddress(seed[:20])
	c.allowlistFor(walletID, name, dest)
	return dest
}

// allowlistFor adds dest to wallet's allowlist under change ID name.
func (c *cluster) allowlistFor(wallet, name string, dest common.Address) {
	c.t.Helper()
	ch := policy.Change{ID: name, Kind: policy.ChangeAllowlistAdd, Wallet: wallet, Chain: "eth", Network: network, Address: dest.Hex(), Label: "exchange cold"}
	exp := time.Now().Add(2 * time.Hour).UTC()
	c.submit("alice", ledger.PolicyChange{Change: ch, Approvals: []quorum.Approval{
		alice.Sign(c.t, clusterID, ch.ID, ch.PayloadHash(), quorum.Approve, exp), carol.Sign(c.t, clusterID, ch.ID, ch.PayloadHash(), quorum.Approve, exp)}})
}

// observed waits until every running node's member recorded what its
// replica holds up to the leader's state index (cooling-offs count from
// there).
func (c *cluster) observed() {
	c.t.Helper()
	for _, id := range nodeIDs {
		n := c.nodes[id].node
		if n == nil {
			continue
		}
		c.poll(string(id)+" observed the ledger", func() error {
			if err := n.Store().ReadAtLeast(c.ctx, c.leader().Store().StateIndex(), func(*ledger.State) error { return nil }); err != nil {
				return err
			}
			return n.Observe(c.ctx)
		})
	}
}

// withdrawal creates a hot withdrawal of amt wei from the harness wallet to
// dest on the leader.
func (c *cluster) withdrawal(id string, dest common.Address, amt *big.Int) *ledger.Request {
	c.t.Helper()
	return c.withdrawalFrom(walletID, id, dest, amt)
}

// withdrawalFrom creates a hot withdrawal of amt wei from wallet to dest.
func (c *cluster) withdrawalFrom(walletID, id string, dest common.Address, amt *big.Int) *ledger.Request {
	c.t.Helper()
	return c.withdrawalOf(walletID, "ETH", id, dest, amt)
}

// withdrawalOf creates a hot withdrawal of amt base units of asset (ETH or
// a registered token) from wallet to dest.
func (c *cluster) withdrawalOf(walletID, asset, id string, dest common.Address, amt *big.Int) *ledger.Request {
	c.t.Helper()
	a, err := amount.FromBig(amt)
	if err != nil {
		c.t.Fatal(err)
	}
	w := policy.Withdrawal{Wallet: walletID, Asset: asset, To: dest.Hex(), Amount: a}
	init := backend.Sign(c.t, clusterID, id, w.IntentHash(id), quorum.Initiate, time.Now().Add(time.Hour))
	var r *ledger.Request
	c.poll("create "+id, func() error {
		var err error
		r, err = c.leader().CreateETH(c.ctx, withdraw.ETHWithdrawal{ID: id, Wallet: walletID, Asset: asset, To: dest.Hex(), Amount: amt,
			Initiation: init, ExpiresAt: time.Now().Add(time.Hour)})
		return err
	})
	return r
}

// approve records op's approval of the request through a follower.
func (c *cluster) approve(r *ledger.Request, op ledgertest.Operator) {
	c.t.Helper()
	c.submit(op.ID, ledger.Approve{RequestID: r.ID,
		Approval: op.Sign(c.t, clusterID, r.ID, r.PayloadHash, quorum.Approve, time.Now().Add(time.Hour))})
}

// read returns the request as node id's own replica has it.
func (c *cluster) read(id pki.NodeID, req string) *ledger.Request {
	c.t.Helper()
	var r *ledger.Request
	_ = c.nodes[id].node.Store().ReadLocal(func(st *ledger.State) error {
		if x := st.Requests[req]; x != nil {
			r = x.Clone()
		}
		return nil
	})
	return r
}

// waitStatus polls node id's replica until the request has status want
// (for StatusSigned: signed or any later chain status, since the leader
// broadcasts at once).
func (c *cluster) waitStatus(id pki.NodeID, req string, want ledger.Status) *ledger.Request {
	c.t.Helper()
	var r *ledger.Request
	c.poll(fmt.Sprintf("%s %s on %s", req, want, id), func() error {
		r = c.read(id, req)
		if r == nil || (r.Status != want && !(want == ledger.StatusSigned && r.Status.Signed())) {
			if r != nil && r.Result != nil && r.Result.Error != "" {
				return fmt.Errorf("%s: %s (last error %s)", req, r.Status, r.Result.Error)
			}
			return fmt.Errorf("%s: not %s yet", req, want)
		}
		return nil
	})
	return r
}

func ether(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e18)) }

// checkLogs fails the test for every secret in any node's log (every line
// of the run, debug level; DAEMON_TEST_LOG=1 also copies the lines to
// stderr).
func (c *cluster) checkLogs() {
	c.t.Helper()
	for _, id := range nodeIDs {
		if n := c.nodes[id]; n != nil && n.log != nil {
			c.secrets.Check(c.t, string(id)+"'s log", n.log.Bytes())
		}
	}
}

// addShareSecrets adds a tss share's secrets: the share itself (its
// serialised form), its secret scalar xi and the Paillier and
// range-proof secrets.
func addShareSecrets(t *testing.T, s *leaktest.Secrets, name string, sh *tss.Share) {
	t.Helper()
	b, err := sh.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s.Bytes(name+" (serialised)", b)
	d := sh.Data
	s.Int(name+" (xi)", d.Xi)
	for what, v := range map[string]*big.Int{"alpha": d.Alpha, "beta": d.Beta, "p": d.P, "q": d.Q} {
		s.Int(name+" ("+what+")", v)
	}
	if sk := d.PaillierSK; sk != nil {
		for what, v := range map[string]*big.Int{"p": sk.P, "q": sk.Q, "lambda": sk.LambdaN, "phi": sk.PhiN} {
			s.Int(name+" (Paillier "+what+")", v)
		}
	}
}

// mine waits for the leader to broadcast a signed request's transaction,
// mines blocks on the simulated chain until the leader records it
// confirmed (broadcast.confirmations deep), and requires a successful
// receipt.
func (c *cluster) mine(r *ledger.Request) *eth.Signed {
	c.t.Helper()
	tx, err := eth.ParseSigned(r.Result.Signed)
	if err != nil {
		c.t.Fatal(err)
	}
	id := c.leader().ID()
	c.poll(r.ID+" broadcast by the leader", func() error {
		got := c.read(id, r.ID)
		if got == nil || (got.Status != ledger.StatusBroadcast && got.Status != ledger.StatusConfirmed) {
			return fmt.Errorf("%s not broadcast yet", r.ID)
		}
		return nil
	})
	c.poll(r.ID+" confirmed", func() error {
		got := c.read(c.leader().ID(), r.ID)
		if got.Status == ledger.StatusConfirmed {
			return nil
		}
		c.sim.Commit()
		return fmt.Errorf("%s is %s", r.ID, got.Status)
	})
	rc, err := c.sim.Receipt(c.ctx, tx.Hash())
	if err != nil || !rc.Success {
		c.t.Fatalf("%s: receipt %+v, %v", r.ID, rc, err)
	}
	return tx
}
