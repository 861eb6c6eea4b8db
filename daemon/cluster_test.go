package daemon_test

import (
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

// TestClusterSignsApprovedWithdrawal: four daemons bootstrap from the
// genesis, writes sent to a follower land through the leader, and a
// withdrawal approved by two operators is signed by the leader's loop
// (claim, two members over the node RPC, result), with the same signed
// transaction on every replica; the leader broadcasts it and records it
// confirmed once it is broadcast.confirmations deep.
//
// Operability on the way: /readyz answers 503 naming the pre-params while
// a node has none, 200 once it has; the metrics count the withdrawal
// pending, then its signed session and latency and its confirmation, with
// sane raft gauges; with two of four nodes stopped the others answer 503
// naming the ledger (no leader). Every node's log is checked for secrets
// when the test ends (the harness).
func TestClusterSignsApprovedWithdrawal(t *testing.T) {
	// n1 runs with a devnet pre-params cache holding two sets (its own
	// fixtures): it is keygen-ready at once while the others wait for
	// theirs, and returns its unused sets to the cache when it stops.
	cache, err := preparams.OpenCache(filepath.Join(t.TempDir(), "preparams"))
	if err != nil {
		t.Fatal(err)
	}
	gen := tsstest.FixtureSource(0, len(nodeIDs))
	for range 2 {
		pp, err := gen(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := cache.Put(pp); err != nil {
			t.Fatal(err)
		}
	}
	c := newClusterWith(t, setup{holdPreParams: true}, func(cfg *daemon.Config) {
		if cfg.NodeID == "n1" {
			cfg.TSS.PreParamsCache = cache.Dir()
		}
	})
	c.waitReadiness("n1")
	if cache.Len() != 0 {
		t.Fatalf("n1 took %d of the 2 cached sets for its pool of 2", 2-cache.Len())
	}
	for _, id := range nodeIDs[1:] {
		rd := c.waitReadiness(id, "preparams")
		if !strings.Contains(rd.Checks["preparams"], "pre-params") {
			t.Errorf("%s: the pre-params check says %q", id, rd.Checks["preparams"])
		}
		if st, b := c.metricsGet(id, daemon.PathHealthz); st != 200 || !strings.Contains(string(b), `"ok"`) {
			t.Errorf("%s /healthz: %d %s", id, st, b)
		}
		if st, _ := c.metricsGet(id, "/nope"); st != 404 {
			t.Errorf("%s: an unknown path on the metrics listener answered %d", id, st)
		}
	}
	close(c.preParams)
	for _, id := range nodeIDs {
		c.waitReadiness(id)
	}
	r := c.withdrawal("wd-1", c.dests[0], ether(1))
	if r.Status != ledger.StatusAwaitingApprovals {
		t.Fatalf("created: %s", r.Status)
	}
	c.poll("the leader's metrics count wd-1 pending", func() error {
		if m := c.scrape(c.leader().ID()); m["custody_pending_approvals"] != 1 || m[`custody_withdrawals{status="awaiting_approvals"}`] != 1 {
			return fmt.Errorf("pending %v, awaiting %v", m["custody_pending_approvals"], m[`custody_withdrawals{status="awaiting_approvals"}`])
		}
		return nil
	})
	c.approve(r, bob)
	c.approve(r, carol)
	signed := c.waitStatus("n1", "wd-1", ledger.StatusSigned)
	for _, id := range nodeIDs {
		got := c.waitStatus(id, "wd-1", ledger.StatusSigned)
		if string(got.Result.Signed) != string(signed.Result.Signed) {
			t.Fatalf("%s holds another signed transaction", id)
		}
	}
	tx, err := eth.ParseSigned(signed.Result.Signed)
	if err != nil {
		t.Fatal(err)
	}
	if tx.From() != c.wallet || *tx.Transaction().To() != c.dests[0] {
		t.Fatalf("signed tx from %s to %s", tx.From(), tx.Transaction().To())
	}
	c.mine(signed)
	confirmed := c.read("n3", "wd-1")
	if confirmed.OnChain == nil || confirmed.OnChain.TxHash != tx.Hash().Hex() {
		t.Fatalf("n3 records on chain %+v, want tx %s", confirmed.OnChain, tx.Hash().Hex())
	}
	// Every node sees it witnessed: the leader's confirmed, checked by a
	// checkpoint quorum of the node set on their own chain nodes.
	for _, id := range nodeIDs {
		c.poll(string(id)+" shows wd-1 witnessed", func() error {
			oc := c.read(id, "wd-1").OnChain
			if oc == nil || !oc.Witnessed || len(oc.Witnesses) < ledger.CheckpointQuorum(len(nodeIDs)) {
				return fmt.Errorf("%s: %+v", id, oc)
			}
			return nil
		})
	}
	c.checkMetricsAfterSigning("wd-1")

	// Two of four nodes down, the leader among them: no quorum, no
	// leader; the others say why they are not ready.
	down := []pki.NodeID{c.leader().ID()}
	for _, id := range nodeIDs {
		if len(down) < 2 && id != down[0] {
			down = append(down, id)
		}
	}
	for _, id := range down {
		c.stop(id)
	}
	for _, id := range nodeIDs {
		if !slices.Contains(down, id) {
			rd := c.waitReadiness(id, "ledger")
			if rd.Checks["ledger"] != "no leader known" {
				t.Errorf("%s: the ledger check says %q", id, rd.Checks["ledger"])
			}
		}
	}
	if c.nodes["n1"].node != nil {
		c.stop("n1")
	}
	if cache.Len() != 2 {
		t.Fatalf("n1 returned %d unused sets to the cache at shutdown, want its pool of 2", cache.Len())
	}
}

// sessions are the tss sessions the ledger granted for a request.
func (c *cluster) sessions(id pki.NodeID, req string) []string {
	c.t.Helper()
	var out []string
	_ = c.nodes[id].node.Store().ReadLocal(func(st *ledger.State) error {
		for sid, r := range st.Sessions {
			if r == req {
				out = append(out, sid)
			}
		}
		return nil
	})
	return out
}

// TestLeaderFailoverSignsOnce: the leader stops while a withdrawal waits for
// its second approval; the approval lands through a follower, the new
// leader finds the approved request in its own replica and signs it, once.
func TestLeaderFailoverSignsOnce(t *testing.T) {
	c := newCluster(t)
	r := c.withdrawal("wd-f", c.dests[0], ether(1))
	c.approve(r, bob)
	old := c.leader().ID()
	c.stop(old)
	c.approve(r, carol)
	var alive pki.NodeID
	for _, id := range nodeIDs {
		if id != old {
			alive = id
			c.waitStatus(id, "wd-f", ledger.StatusSigned)
		}
	}
	if s := c.sessions(alive, "wd-f"); len(s) != 1 {
		t.Fatalf("sessions for wd-f: %v, want exactly one", s)
	}
	// The old leader comes back and catches up; it signs nothing more.
	c.start(old)
	got := c.waitStatus(old, "wd-f", ledger.StatusSigned)
	if s := c.sessions(old, "wd-f"); len(s) != 1 || got.Result.SessionID != s[0] {
		t.Fatalf("after the old leader's return: sessions %v, result session %s", s, got.Result.SessionID)
	}
}

// TestStaleClaimReclaimed: a leader claimed a request and died before it
// collected (the test makes the claim itself and never collects, as a
// leader killed right after its claim would), and the claim's other signer
// is killed too. The leader gives the claim a
// session timeout from when it first saw it, records the session as
// abandoned and re-claims with a new session, fenced on the old one: the
// request is signed once, by the new session with the members that answer,
// and the abandoned session can no longer commit a result.
func TestStaleClaimReclaimed(t *testing.T) {
	// 15 s: a session on the race-built, loaded two-core machine took more
	// than 8 s (every attempt timed out on its slowest member and the
	// request failed).
	c := newCluster(t, func(cfg *daemon.Config) { cfg.TSS.SessionTimeout = daemon.Duration(15 * time.Second) })
	var r *ledger.Request
	var stale *ledger.Request
	var member pki.NodeID // the claim's signer besides the leader
	for attempt := 0; stale == nil; attempt++ {
		if attempt == 5 {
			t.Fatal("the leader's loop claimed first five times in a row")
		}
		r = c.withdrawal(fmt.Sprintf("wd-s%d", attempt), c.dests[0], ether(1))
		c.approve(r, bob)
		c.approve(r, carol)
		l := c.leader()
		member = "n1"
		if l.ID() == "n1" {
			member = "n2"
		}
		signers := []pki.NodeID{l.ID(), member}
		slices.Sort(signers)
		cl, err := l.Store().Claim(c.ctx, "node:"+string(l.ID()), r.ID, signers)
		if errors.Is(err, ledger.ErrWrongStatus) {
			c.waitStatus(l.ID(), r.ID, ledger.StatusSigned) // the loop won; try again
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		stale = cl
	}
	// The claim's other signer dies mid-session: the re-claim goes to the
	// members that answer.
	c.stop(member)
	l := c.leader().ID()
	signed := c.waitStatus(l, r.ID, ledger.StatusSigned)
	if signed.Result.SessionID == stale.Claim.SessionID {
		t.Fatalf("signed by the abandoned session %s", stale.Claim.SessionID)
	}
	if slices.Contains(signed.Claim.Signers, member) {
		t.Fatalf("re-claimed with the stopped member %s: %v", member, signed.Claim.Signers)
	}
	if s := c.sessions(l, r.ID); len(s) != 2 {
		t.Fatalf("sessions %v, want the abandoned one and the re-claim", s)
	}
	_, err := c.leader().Store().Submit(c.ctx, "node:"+string(l), ledger.RecordResult{RequestID: r.ID, SessionID: stale.Claim.SessionID, Error: "late"})
	if err == nil {
		t.Fatal("a late result of the abandoned session was committed")
	}
}

// TestClusterSignsERC20Withdrawal: a TKN transfer (a token in the node
// config's registry) is built by the leader, approved, signed by the
// committee (each member decodes the calldata against the registry), sent
// and confirmed; the destination holds exactly the amount.
func TestClusterSignsERC20Withdrawal(t *testing.T) {
	c := newCluster(t)
	amt := big.NewInt(250_500_000) // 250.5 TKN
	r := c.withdrawalOf(walletID, "TKN", "wd-tkn", c.dests[0], amt)
	c.approve(r, bob)
	c.approve(r, carol)
	tx := c.mine(c.waitStatus("n2", "wd-tkn", ledger.StatusSigned))
	if d := tx.Description(); d.Token == nil || *d.Token != tokenAddr || d.To != c.dests[0] || d.Amount.Cmp(amt) != 0 {
		t.Fatalf("signed %+v", d)
	}
	if got, err := c.sim.Balance(c.ctx, c.dests[0], &tokenAddr); err != nil || got.Cmp(amt) != 0 {
		t.Fatalf("destination holds %v TKN units (%v), want %s", got, err, amt)
	}
}
