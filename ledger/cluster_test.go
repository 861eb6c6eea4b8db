package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"

	"github.com/custody-dev/custody/quorum"
)

func TestClusterLifecycleAndFollowerWrites(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	ctx := context.Background()
	l := c.WaitLeader(nil)

	// Bootstrap and join are idempotent; removing a stranger is a no-op.
	before := leaderHash(c)
	if err := c.Nodes[0].Store.Bootstrap(); err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
	for _, n := range c.Nodes {
		if err := l.Store.Join(ctx, n.ID, n.Addr); err != nil {
			t.Fatalf("re-join %s: %v", n.ID, err)
		}
	}
	if err := l.Store.Remove(ctx, "ghost"); err != nil {
		t.Fatalf("remove of a non-member: %v", err)
	}
	if after := leaderHash(c); after != before {
		t.Fatal("idempotent membership calls changed the state")
	}
	if got := voters(c, l); len(got) != 3 {
		t.Fatalf("voters after re-joins: %v", got)
	}
	_ = l.Store.ReadLocal(func(st *State) error {
		if len(st.Voters) != 3 {
			t.Fatalf("members recorded: %v", st.Voters)
		}
		return nil
	})

	// Writes and linearizable reads on a follower name the leader.
	var f *ledgertest.Node
	for _, n := range c.Nodes {
		if n != l {
			f = n
			break
		}
	}
	_, _, err := f.Store.CreateRequest(ctx, "backend", createCmd("w-1", 0))
	var nle *NotLeaderError
	if !errors.As(err, &nle) || nle.LeaderAddr != l.Addr || nle.LeaderID != l.ID {
		t.Fatalf("follower write: %v; want NotLeaderError naming %s at %s", err, l.ID, l.Addr)
	}
	if err := f.Store.ReadLinearizable(ctx, func(*State) error { return nil }); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower linearizable read: %v, want ErrNotLeader", err)
	}

	var r *Request
	byDave := initiated(createCmd("w-1", 0), dave, time.Now().Add(time.Hour)) // one command for every retry
	c.OnLeader(func(s *Store) error {
		var err error
		r, _, err = s.CreateRequest(ctx, "node:n1", byDave)
		return err
	})
	if r.Status != StatusAwaitingApprovals || r.Decision.Required != 2 || r.Initiator != "dave" || !r.Decision.Allowed {
		t.Fatalf("created request: %+v", r)
	}
	exp := time.Now().Add(30 * time.Minute)
	propose := func(actor string, p Command) (Outcome, error) {
		var out Outcome
		var err error
		c.OnLeaderErr(func(s *Store) error { out, err = s.Submit(ctx, actor, p); return err })
		return out, err
	}
	// Bad approvals change nothing.
	bad := bob.approve(t, r, exp)
	bad.Approval.Signature[0] ^= 1
	wrongPayload := bob.approve(t, r, exp)
	wrongPayload.Approval = bob.sign(t, r.ID, quorum.Hash{1}, quorum.Approve, exp)
	for name, a := range map[string]Approve{
		"initiator":     dave.approve(t, r, exp),
		"bad signature": bad,
		"wrong payload": wrongPayload,
		"expired":       bob.approve(t, r, time.Now().Add(-time.Minute)),
		"backend":       backend.approve(t, r, exp),
		"unknown op":    newOp("mallory", quorum.KindHuman, quorum.RoleAdmin).approve(t, r, exp),
	} {
		before := leaderHash(c)
		if _, err := propose("api", a); !errors.Is(err, ErrApproval) {
			t.Fatalf("%s approval: %v, want ErrApproval", name, err)
		}
		if after := leaderHash(c); after != before {
			t.Fatalf("%s approval changed the state", name)
		}
	}
	// A claim before quorum is refused.
	if _, err := claim(c, r.ID); !errors.Is(err, ErrWrongStatus) {
		t.Fatalf("claim before approval: %v, want ErrWrongStatus", err)
	}
	out, err := propose("api", bob.approve(t, r, exp))
	if err != nil || out.Request.Status != StatusAwaitingApprovals {
		t.Fatalf("first approval: %v %+v", err, out.Request)
	}
	if _, err := propose("api", bob.approve(t, r, exp.Add(time.Minute))); !errors.Is(err, ErrApproval) {
		t.Fatalf("second approval by bob: %v, want ErrApproval", err)
	}
	out, err = propose("api", carol.approve(t, r, exp))
	if err != nil || out.Request.Status != StatusApproved {
		t.Fatalf("quorum approval: %v %+v", err, out.Request)
	}
	claimed, err := claim(c, r.ID)
	if err != nil || claimed.Status != StatusClaimed || claimed.Claim.Index == 0 {
		t.Fatalf("claim: %v %+v", err, claimed)
	}
	// A second claim (compare-and-set) fails.
	if _, err := claim(c, r.ID); !errors.Is(err, ErrWrongStatus) {
		t.Fatalf("second claim: %v, want ErrWrongStatus", err)
	}
	// A result from another session is refused; the right one lands.
	if _, err := propose("n1", RecordResult{RequestID: r.ID, SessionID: fmt.Sprintf("%064x", 7), Signed: []byte("sig")}); !errors.Is(err, ErrStaleSession) {
		t.Fatalf("result from stale session: %v", err)
	}
	out, err = propose("n1", RecordResult{RequestID: r.ID, SessionID: claimed.Claim.SessionID, Signed: []byte("signed-tx")})
	if err != nil || out.Request.Status != StatusSigned {
		t.Fatalf("result: %v", err)
	}
	// The decision read is linearizable on the leader and sees the result.
	c.OnLeaderErr(func(s *Store) error {
		return s.ReadLinearizable(ctx, func(st *State) error {
			if got := st.Requests[r.ID].Status; got != StatusSigned {
				t.Fatalf("linearizable read sees %s", got)
			}
			return VerifyChain(st.Audit)
		})
	})
	c.WaitConverged(c.Nodes...)

	// Removing a follower shrinks the configuration and the member list.
	var gone *ledgertest.Node
	for _, n := range c.Nodes {
		if !n.Store.IsLeader() {
			gone = n
		}
	}
	c.OnLeader(func(s *Store) error { return s.Remove(ctx, gone.ID) })
	l = c.WaitLeader(c.Others(gone))
	if got := voters(c, l); len(got) != 2 || slices.Contains(got, gone.ID) {
		t.Fatalf("voters after removing %s: %v", gone.ID, got)
	}
	_ = l.Store.ReadLocal(func(st *State) error {
		if st.Voters[gone.ID] != nil {
			t.Fatalf("removed %s still a member", gone.ID)
		}
		return nil
	})
}

func voters(c *ledgertest.Cluster, n *ledgertest.Node) []pki.NodeID {
	ids, err := n.Store.Voters()
	if err != nil {
		c.T.Fatal(err)
	}
	return ids
}

// retryOnLeaderErr is retryOnLeader that lets fn's FSM refusals through.
func retryOnLeaderErr(c *ledgertest.Cluster, fn func(*Store) error) {
	c.T.Helper()
	ledgertest.Poll(c.T, "a write on the leader", func() error {
		l := c.WaitLeader(c.Live())
		err := fn(l.Store)
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrTimeout) {
			return err
		}
		return nil
	})
}

func claim(c *ledgertest.Cluster, id string) (*Request, error) {
	var r *Request
	var err error
	c.OnLeaderErr(func(s *Store) error {
		r, err = s.Claim(context.Background(), "n1", id, allSigners)
		return err
	})
	return r, err
}

func leaderHash(c *ledgertest.Cluster) [32]byte {
	l := c.WaitLeader(c.Live())
	h, err := l.Store.Hash()
	if err != nil {
		c.T.Fatal(err)
	}
	return h
}

// approveRequest creates request id and gets it approved by two operators.
func approveRequest(c *ledgertest.Cluster, t testing.TB, id string, nonce uint64, ops ...operator) *Request {
	c.T.Helper()
	ctx := context.Background()
	var r *Request
	create := createCmd(id, nonce) // one command for every retry
	c.OnLeader(func(s *Store) error {
		var err error
		r, _, err = s.CreateRequest(ctx, "backend", create)
		return err
	})
	exp := time.Now().Add(30 * time.Minute)
	for _, o := range ops {
		c.OnLeader(func(s *Store) error {
			_, err := s.Submit(ctx, "api", o.approve(t, r, exp))
			if errors.Is(err, ErrApproval) { // retried after an unknown outcome
				return nil
			}
			return err
		})
	}
	return r
}

func TestLeaderKillLosesNoAckedWrite(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	ctx := context.Background()
	acked := map[string]bool{}
	write := func(i int) {
		id := fmt.Sprintf("lk-%d", i)
		create := createCmd(id, uint64(i)) // one command for every retry
		c.OnLeader(func(s *Store) error {
			_, _, err := s.CreateRequest(ctx, "backend", create)
			return err
		})
		acked[id] = true
	}
	for i := range 20 {
		write(i)
	}
	old := c.WaitLeader(nil)
	if err := old.Store.Close(); err != nil {
		t.Fatal(err)
	}
	old.Store = nil
	newL := c.WaitLeader(c.Live())
	if newL == old {
		t.Fatal("closed node still leader")
	}
	for i := 20; i < 40; i++ {
		write(i)
	}
	c.StartNode(old, old.Addr)
	c.WaitConverged(c.Nodes...)
	for _, n := range c.Nodes {
		_ = n.Store.ReadLocal(func(st *State) error {
			for id := range acked {
				if st.Requests[id] == nil {
					t.Errorf("%s lost acknowledged %s", n.ID, id)
				}
			}
			return VerifyChain(st.Audit)
		})
	}
}

func TestPartitionAndHeal(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	ctx := context.Background()
	l := c.WaitLeader(nil)
	var cut *ledgertest.Node
	for _, n := range c.Nodes {
		if n != l {
			cut = n
		}
	}
	c.Isolate(cut, true)
	for i := range 10 {
		create := createCmd(fmt.Sprintf("p-%d", i), uint64(i)) // one command for every retry
		c.OnLeader(func(s *Store) error {
			_, _, err := s.CreateRequest(ctx, "backend", create)
			return err
		})
	}
	// The cut-off node did not see the majority's writes.
	_ = cut.Store.ReadLocal(func(st *State) error {
		if st.Requests["p-9"] != nil {
			t.Fatal("partitioned node applied a write it could not receive")
		}
		return nil
	})
	if _, _, err := cut.Store.CreateRequest(ctx, "backend", createCmd("minority", 99)); err == nil {
		t.Fatal("write on the partitioned minority succeeded")
	}

	// Now cut the leader away from the majority.
	c.Isolate(cut, false)
	c.WaitConverged(c.Nodes...)
	l = c.WaitLeader(nil)
	c.Isolate(l, true)
	rest := c.Others(l)
	nl := c.WaitLeader(rest)
	if nl == l {
		t.Fatal("isolated leader still leads the majority")
	}
	afterSplit := createCmd("after-split", 100) // one command for every retry
	c.OnLeaderAmong(rest, func(s *Store) error {
		_, _, err := s.CreateRequest(ctx, "backend", afterSplit)
		return err
	})
	c.Isolate(l, false)
	c.WaitLeader(nil)
	h := c.WaitConverged(c.Nodes...)
	_ = l.Store.ReadLocal(func(st *State) error {
		if st.Requests["after-split"] == nil || st.Requests["minority"] != nil {
			t.Fatal("healed node has the wrong history")
		}
		return nil
	})
	t.Logf("converged hash %x", h[:8])
}

func others(c *ledgertest.Cluster, x *ledgertest.Node) []*ledgertest.Node {
	var out []*ledgertest.Node
	for _, n := range c.Nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

// isolate cuts (or restores) every link of n in both directions.
func isolate(c *ledgertest.Cluster, n *ledgertest.Node, on bool) {
	n.Fault.SetIsolated(on)
	for _, o := range c.Others(n) {
		if o.Fault != nil {
			o.Fault.SetBlocked(n.Addr, on)
		}
	}
}

func retryOnLeaderAmong(c *ledgertest.Cluster, among []*ledgertest.Node, fn func(*Store) error) {
	c.T.Helper()
	ledgertest.Poll(c.T, "a write on the majority leader", func() error {
		l := c.WaitLeader(among)
		err := fn(l.Store)
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrTimeout) {
			return err
		}
		if err != nil {
			c.T.Fatalf("write failed: %v", err)
		}
		return nil
	})
}

// TestStaleLeaderClaimRefused freezes the leader (cut off from everyone, as a
// SIGSTOP would), lets the majority elect a new leader that claims the
// request, then lets the old leader's claim reach the log: refused.
func TestStaleLeaderClaimRefused(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	r1 := approveRequest(c, t, "stale-1", 1, bob, carol)
	r2 := approveRequest(c, t, "stale-2", 2, bob, carol)
	old := c.WaitLeader(nil)
	// The old leader prepares its claims in its term, then freezes.
	c1, err := old.Store.PrepareClaim(r1.ID, allSigners)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := old.Store.PrepareClaim(r2.ID, allSigners)
	if err != nil {
		t.Fatal(err)
	}
	c.Isolate(old, true)
	rest := c.Others(old)
	var won *Request
	c.OnLeaderAmong(rest, func(s *Store) error {
		var err error
		won, err = s.Claim(context.Background(), "new-leader", r1.ID, allSigners)
		return err
	})
	// While frozen, the old leader can neither commit its claim nor answer
	// a linearizable read from its stale copy.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = old.Store.SubmitClaim(ctx, "old-leader", c1)
	cancel()
	if err == nil {
		t.Fatal("frozen leader committed a claim")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	err = old.Store.ReadLinearizable(ctx, func(st *State) error {
		t.Errorf("stale leader served a linearizable read (sees %s as %s)", r1.ID, st.Requests[r1.ID].Status)
		return nil
	})
	cancel()
	if err == nil {
		t.Fatal("linearizable read on a deposed leader succeeded")
	}
	c.Isolate(old, false)
	c.WaitLeader(nil)
	// The delayed claims reach the log through the current leader: both are
	// refused, c2 although stale-2 is still approved (term fencing).
	for _, cl := range []ClaimSession{c1, c2} {
		var err error
		c.OnLeaderErr(func(s *Store) error { _, err = s.SubmitClaim(context.Background(), "old-leader", cl); return err })
		if !errors.Is(err, ErrStaleLeader) {
			t.Fatalf("stale claim on %s: %v, want ErrStaleLeader", cl.RequestID, err)
		}
	}
	c.WaitConverged(c.Nodes...)
	for _, n := range c.Nodes {
		_ = n.Store.ReadLocal(func(st *State) error {
			got := st.Requests[r1.ID].Claim
			if got == nil || got.SessionID != won.Claim.SessionID || got.Index != won.Claim.Index {
				t.Errorf("%s: claim of %s is %+v, want the new leader's", n.ID, r1.ID, got)
			}
			if st.Requests[r2.ID].Status != StatusApproved {
				t.Errorf("%s: %s is %s, want approved", n.ID, r2.ID, st.Requests[r2.ID].Status)
			}
			return nil
		})
	}
}

func TestConcurrentSubmitsOneRequest(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	l := c.WaitLeader(nil)
	cmd := createCmd("same-id", 42)
	const n = 1000
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, existing := 0, 0
	errs := map[string]int{}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, ex, err := l.Store.CreateRequest(context.Background(), "backend", cmd)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs[err.Error()]++
			case r.ID != cmd.ID || r.PayloadHash != cmd.PayloadHash:
				errs["wrong request returned"]++
			case ex:
				existing++
			default:
				created++
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 || created != 1 || existing != n-1 {
		t.Fatalf("created %d existing %d errors %v", created, existing, errs)
	}
	other := createCmd("same-id", 43)
	if _, _, err := l.Store.CreateRequest(context.Background(), "backend", other); !errors.Is(err, ErrConflict) {
		t.Fatalf("different payload under the same ID: %v, want ErrConflict", err)
	}
	c.WaitConverged(c.Nodes...)
	_ = l.Store.ReadLocal(func(st *State) error {
		creates := 0
		for _, e := range st.Audit {
			if e.Kind == CmdRequestCreate {
				creates++
			}
		}
		if len(st.Requests) != 1 || creates != 1 || len(st.Nonces) != 1 {
			t.Fatalf("requests %d, create events %d, nonces %d", len(st.Requests), creates, len(st.Nonces))
		}
		return nil
	})
}

func TestUnknownCommandHaltsEveryNode(t *testing.T) {
	c := newCluster(t, 3)
	seed(c)
	l := c.WaitLeader(nil)
	before := c.WaitConverged(c.Nodes...)
	bad := rawEntry("request.teleport", "future-leader", time.Now(), map[string]string{"x": "y"})
	if res, err := l.Store.ApplyRaw(bad); err == nil {
		if req, _, err := ApplyOutcome(res); !errors.Is(err, ErrHalted) {
			t.Fatalf("unknown command applied: %+v, %v", req, err)
		}
	}
	for _, n := range c.Nodes {
		ledgertest.Poll(t, string(n.ID)+" to halt", func() error {
			if n.Store.Halted() == nil {
				return errors.New("still running")
			}
			return nil
		})
		if h, _ := n.Store.Hash(); h != before {
			t.Errorf("%s changed state while halting", n.ID)
		}
		if _, err := n.Store.Submit(context.Background(), "x", VoterRemove{ID: "nobody"}); !errors.Is(err, ErrHalted) && !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s accepted a write after halting: %v", n.ID, err)
		}
	}
}
