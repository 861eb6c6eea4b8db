package noderpc_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

const testCluster = "noderpc-test"

// testRules: one hot ETH wallet needing two approvals.
const testRules = `version: 1
assets:
  ETH: {decimals: 18}
allowlist: {cooling_off: 1h, approvals: 2, roles: [admin]}
lock: {unlock_delay: 1h}
wallets:
  - name: eth-hot
    wallets: [hot]
    asset: ETH
    class: hot
    allowlist_required: false
    limits: {per_tx: "10", max_fee: "0.01"}
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
`

var (
	alice   = ledgertest.NewOperator("alice", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	bob     = ledgertest.NewOperator("bob", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	backend = ledgertest.NewOperator("exchange", quorum.KindBackend, quorum.RoleInitiator)
)

// harness is a three-node ledger cluster (node set pinned by the genesis,
// raft gated by it) with a node RPC server and client on every node;
// every node's ledger forwards its checkpoint signatures through its
// client (ledger.Config.Forward).
type harness struct {
	t  *testing.T
	c  *ledgertest.Cluster
	mu sync.Mutex
	// clients and servers by node, and each node's RPC address.
	clients map[pki.NodeID]*noderpc.Client
	servers map[pki.NodeID]*http.Server
	addrs   map[pki.NodeID]string
}

// newHarness starts the cluster, seeds the genesis and the wallet, and
// serves the RPC on every node; members (may be nil) are the committee
// members of the nodes that run one. checkpoints is the genesis's
// checkpoint interval (0: the default, far beyond what a test writes, so
// no checkpoint signature changes the state under a test's feet).
func newHarness(t *testing.T, members map[pki.NodeID]noderpc.Member, checkpoints uint64) *harness {
	t.Helper()
	h := &harness{t: t, clients: map[pki.NodeID]*noderpc.Client{}, servers: map[pki.NodeID]*http.Server{}, addrs: map[pki.NodeID]string{}}
	g := ledgertest.Genesis(testCluster, 2, testRules, alice, bob, backend)
	g.CheckpointInterval = checkpoints
	h.c = ledgertest.New(t, 3, func(cfg *ledger.Config) {
		cfg.Genesis = &g
		id := cfg.NodeID
		cfg.Forward = func(ctx context.Context, cmd ledger.Command) error {
			h.mu.Lock()
			cl := h.clients[id]
			h.mu.Unlock()
			if cl == nil {
				return ledger.ErrNotLeader // not serving yet: the ledger retries
			}
			return cl.Forward(ctx, cmd)
		}
	})
	lns := map[pki.NodeID]net.Listener{}
	for _, n := range h.c.Nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[n.ID], h.addrs[n.ID] = ln, ln.Addr().String()
	}
	for _, n := range h.c.Nodes {
		store := n.Store
		var m noderpc.Member
		if members[n.ID] != nil {
			m = members[n.ID]
		}
		srv, err := noderpc.NewServer(noderpc.Config{Identity: n.Identity, Authorize: n.Gate.Authorize, Store: store, Member: m,
			Status: func() noderpc.Status {
				st := noderpc.StoreStatus(store)
				st.Ready["ledger"] = st.Halted == ""
				return st
			}})
		if err != nil {
			t.Fatal(err)
		}
		ln := lns[n.ID]
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		t.Cleanup(func() { _ = srv.Close() })
		h.servers[n.ID] = srv
		cl := h.newClient(n, n.Identity, store.Leader)
		h.mu.Lock()
		h.clients[n.ID] = cl
		h.mu.Unlock()
	}
	h.c.OnLeader(func(l *ledger.Store) error {
		if _, err := l.Submit(context.Background(), "ceremony", g); err != nil && !errors.Is(err, ledger.ErrInvalid) {
			return err
		}
		_, err := l.Submit(context.Background(), "keygen", ledger.WalletSet{Wallet: ledger.Wallet{ID: "hot", Chain: "eth", Network: "devnet",
			Committee: ledgertest.GenesisNodes, Threshold: 1}})
		return err
	})
	return h
}

// newClient is node n's client with identity ident and the given view of
// the leader.
func (h *harness) newClient(n *ledgertest.Node, ident pki.Identity, leader func() (pki.NodeID, string)) *noderpc.Client {
	h.t.Helper()
	cl, err := noderpc.NewClient(noderpc.ClientConfig{Self: n.ID, Identity: ident, Authorize: n.Gate.Authorize,
		Peers: h.addrs, Leader: leader, Local: n.Store, Retry: 20 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(cl.Close)
	return cl
}

func (h *harness) client(n *ledgertest.Node) *noderpc.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clients[n.ID]
}

// follower returns a node that is not the leader.
func (h *harness) follower() *ledgertest.Node {
	l := h.c.WaitLeader(nil)
	return h.c.Others(l)[0]
}

// create is a withdrawal of 1000 wei from "hot", initiated (signed) by the
// backend.
func create(t testing.TB, id string, nonce uint64, payload string) ledger.RequestCreate {
	t.Helper()
	p := []byte(payload)
	n := nonce
	exp := time.Now().Add(time.Hour)
	c := ledger.RequestCreate{ID: id, Withdrawal: policy.Withdrawal{Wallet: "hot", Asset: "ETH", Chain: "eth", Network: "devnet",
		To: "0xdest", Amount: amount.FromUint64(1000)}, Payload: p, PayloadHash: quorum.Hash(sha256.Sum256(p)), Nonce: &n, ExpiresAt: exp}
	st := quorum.Statement{ClusterID: testCluster, RequestID: id, PayloadHash: c.IntentHash(id), Decision: quorum.Initiate, Expiry: exp.Truncate(time.Second)}
	a, err := quorum.Sign(st, backend.Device().ID, backend.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Initiation = &a
	return c
}

func approve(t testing.TB, o ledgertest.Operator, c ledger.RequestCreate) ledger.Approve {
	return ledger.Approve{RequestID: c.ID, Approval: o.Sign(t, testCluster, c.ID, c.PayloadHash, quorum.Approve, time.Now().Add(time.Hour))}
}

// snapshot is what "no state change" compares: the FSM's index and hash.
type snapshot struct {
	index uint64
	hash  [32]byte
}

func stateOf(t testing.TB, s *ledger.Store) snapshot {
	t.Helper()
	h, err := s.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{index: s.StateIndex(), hash: h}
}

// request reads request id from s's local state (nil when absent).
func request(t testing.TB, s *ledger.Store, id string) *ledger.Request {
	t.Helper()
	var r *ledger.Request
	if err := s.ReadLocal(func(st *ledger.State) error {
		if x := st.Requests[id]; x != nil {
			r = x.Clone()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return r
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), ledgertest.Wait)
	t.Cleanup(cancel)
	return ctx
}
