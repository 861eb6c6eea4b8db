package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

const testCluster = "ledger-test"

// testRules: hot ETH wallet "hot" (2 approvals from approver/admin, no
// allowlist), cold BTC wallet "cold" (2 admins), and "allow" (allowlist
// required) for the allowlist/lock tests.
const testRules = `version: 1
assets:
  ETH: {decimals: 18}
  BTC: {decimals: 8}
allowlist:
  cooling_off: 1h
  approvals: 2
  roles: [admin, approver]
lock:
  unlock_delay: 1h
wallets:
  - name: eth-hot
    wallets: [hot]
    asset: ETH
    class: hot
    allowlist_required: false
    limits:
      per_tx: "10"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
  - name: eth-allow
    wallets: [allow]
    asset: ETH
    class: hot
    allowlist_required: true
    limits:
      per_tx: "10"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 1, roles: [approver, admin]}
  - name: btc-cold
    wallets: [cold]
    asset: BTC
    class: cold
    allowlist_required: false
    limits:
      per_tx: "100"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [admin]}
`

// operator is a ledgertest operator with the ledger tests' cluster ID.
type operator struct{ ledgertest.Operator }

func (o operator) sign(t testing.TB, requestID string, payload quorum.Hash, dec quorum.Decision, expiry time.Time) quorum.Approval {
	t.Helper()
	return o.Sign(t, testCluster, requestID, payload, dec, expiry)
}

func (o operator) device() quorum.Device { return o.Device() }

func (o operator) approve(t testing.TB, r *Request, expiry time.Time) Approve {
	return Approve{RequestID: r.ID, Approval: o.sign(t, r.ID, r.PayloadHash, quorum.Approve, expiry)}
}

func (o operator) reject(t testing.TB, r *Request, expiry time.Time) Approve {
	return Approve{RequestID: r.ID, Approval: o.sign(t, r.ID, r.PayloadHash, quorum.Reject, expiry)}
}

func newOp(id string, kind quorum.OperatorKind, roles ...quorum.Role) operator {
	return operator{ledgertest.NewOperator(id, kind, roles...)}
}

var (
	alice   = newOp("alice", quorum.KindHuman, quorum.RoleAdmin)
	bob     = newOp("bob", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	carol   = newOp("carol", quorum.KindHuman, quorum.RoleAdmin)
	dave    = newOp("dave", quorum.KindHuman, quorum.RoleApprover, quorum.RoleInitiator)
	backend = newOp("backend", quorum.KindBackend, quorum.RoleInitiator)
	allOps  = []operator{alice, bob, carol, dave, backend}
)

func genesisCmd() Genesis { return genesisEvery(0) }

// soloGenesis is the genesis of a one-node cluster (node set {n1}, which
// certifies its checkpoints alone) with a checkpoint every 4 indices.
func soloGenesis() Genesis {
	var ops []ledgertest.Operator
	for _, o := range allOps {
		ops = append(ops, o.Operator)
	}
	g := ledgertest.GenesisFor([]pki.NodeID{"n1"}, testCluster, 2, testRules, ops...)
	g.CheckpointInterval = 4
	return g
}

// genesisEvery is genesisCmd with a checkpoint every n indices (0: the
// default).
func genesisEvery(n uint64) Genesis {
	var ops []ledgertest.Operator
	for _, o := range allOps {
		ops = append(ops, o.Operator)
	}
	g := ledgertest.Genesis(testCluster, 2, testRules, ops...)
	g.CheckpointInterval = n
	return g
}

var testWallets = []Wallet{
	{ID: "hot", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1", "n2", "n3"}, Threshold: 2},
	{ID: "allow", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1", "n2", "n3"}, Threshold: 2},
}

// testColdWallet is the registration of the test cold wallet "cold"
// (Bitcoin regtest, 1 of custodians ann and ben).
var testColdWallet = ColdWalletSpec{ID: "register-cold", Wallet: "cold", Chain: "btc", Network: "regtest", BTCParams: "regtest",
	PubKey: append([]byte{2}, bytes.Repeat([]byte{0x42}, 32)...), Threshold: 1, Custodians: []string{"ann", "ben"}, Transcript: strings.Repeat("ab", 32)}

// testWalletCmds are the commands that create the test wallets at ledger
// time now: wallet.set of "hot" and "allow", and the admins' (alice and
// bob) wallet.register of the cold wallet "cold".
func testWalletCmds(t testing.TB, now time.Time) []Command {
	var out []Command
	for _, w := range testWallets {
		out = append(out, WalletSet{w})
	}
	exp := now.Add(time.Hour)
	return append(out, WalletRegister{Change: testColdWallet, Approvals: []quorum.Approval{
		alice.sign(t, testColdWallet.ID, testColdWallet.PayloadHash(), quorum.Approve, exp),
		bob.sign(t, testColdWallet.ID, testColdWallet.PayloadHash(), quorum.Approve, exp)}})
}

// allSigners is a valid signer set of the test wallets "hot" and "allow"
// (threshold 2: three signers).
var allSigners = []pki.NodeID{"n1", "n2", "n3"}

// newCluster starts a ledgertest cluster of size nodes, each pinning
// genesisCmd (tune may pin another).
func newCluster(t testing.TB, size int, tune ...func(*Config)) *ledgertest.Cluster {
	t.Helper()
	g := genesisCmd()
	return ledgertest.New(t, size, func(cfg *Config) {
		cfg.Genesis = &g
		for _, f := range tune {
			f(cfg)
		}
	})
}

// seed runs genesis and creates the test wallets.
func seed(c *ledgertest.Cluster) { c.T.Helper(); seedWith(c, genesisCmd()) }

// seedWith is seed with the genesis g.
func seedWith(c *ledgertest.Cluster, g Genesis) {
	c.T.Helper()
	ctx := context.Background()
	c.OnLeader(func(l *Store) error {
		if _, err := l.Submit(ctx, "ceremony", g); err != nil && !errors.Is(err, ErrInvalid) {
			return err
		}
		// The approvals of the cold wallet's registration are dated by the
		// ledger's clock (a test may inject one far from the wall clock).
		var now time.Time
		if err := l.ReadLinearizable(ctx, func(st *State) error { now = st.Clock; return nil }); err != nil {
			return err
		}
		for _, cmd := range testWalletCmds(c.T, now) {
			if _, err := l.Submit(ctx, "keygen", cmd); err != nil && !errors.Is(err, ErrReplayed) {
				return err
			}
		}
		return nil
	})
}

// createCmd is a create of 1000 wei to 0xdest from wallet "hot",
// initiated by the backend (signed at the wall clock, valid for an hour).
func createCmd(id string, nonce uint64) RequestCreate {
	payload := []byte("unsigned-tx:" + id)
	n := nonce
	c := RequestCreate{ID: id, Withdrawal: policy.Withdrawal{Wallet: "hot", Asset: "ETH", Chain: "eth", Network: "devnet", To: "0xdest",
		Amount: amount.FromUint64(1000)}, Payload: payload, PayloadHash: quorum.Hash(sha256.Sum256(payload)),
		Nonce: &n, ExpiresAt: time.Now().Add(time.Hour)}
	return initiated(c, backend, time.Now().Add(time.Hour))
}

// initiated returns c signed by o as its initiator, valid until expiry
// (unsigned when the statement cannot be signed, e.g. an empty request ID:
// the ledger refuses such a create before it looks at the initiation).
func initiated(c RequestCreate, o operator, expiry time.Time) RequestCreate {
	st := quorum.Statement{ClusterID: testCluster, RequestID: c.ID, PayloadHash: c.IntentHash(c.ID), Decision: quorum.Initiate, Expiry: expiry.Truncate(time.Second)}
	c.Initiation = nil
	if a, err := quorum.Sign(st, o.Device().ID, o.Key, nil); err == nil {
		c.Initiation = &a
	}
	return c
}
