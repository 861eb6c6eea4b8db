package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custody-dev/custody/quorum"
)

func TestClusterLifecycleAndFollowerWrites(t *testing.T) {
	c := newCluster(t, 3)
	c.seed()
	ctx := context.Background()
	l := c.waitLeader(nil)

	// Bootstrap and join are idempotent; removing a stranger is a no-op.
	before := c.leaderHash()
	if err := c.nodes[0].s.Bootstrap(); err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
	for _, n := range c.nodes {
		if err := l.s.Join(ctx, n.id, n.addr); err != nil {
			t.Fatalf("re-join %s: %v", n.id, err)
		}
	}
	if err := l.s.Remove(ctx, "ghost"); err != nil {
		t.Fatalf("remove of a non-member: %v", err)
	}
	if after := c.leaderHash(); after != before {
		t.Fatal("idempotent membership calls changed the state")
	}
	if got := c.voters(l); len(got) != 3 {
		t.Fatalf("voters after re-joins: %v", got)
	}
	_ = l.s.ReadLocal(func(st *State) error {
		if len(st.Members) != 3 {
			t.Fatalf("members recorded: %v", st.Members)
		}
		return nil
	})

	// Writes and linearizable reads on a follower name the leader.
	var f *node
	for _, n := range c.nodes {
		if n != l {
			f = n
			break
		}
	}
	_, _, err := f.s.CreateRequest(ctx, "backend", createCmd("w-1", 0))
	var nle *NotLeaderError
	if !errors.As(err, &nle) || nle.LeaderAddr != l.addr || nle.LeaderID != l.id {
		t.Fatalf("follower write: %v; want NotLeaderError naming %s at %s", err, l.id, l.addr)
	}
	if err := f.s.ReadLinearizable(ctx, func(*State) error { return nil }); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower linearizable read: %v, want ErrNotLeader", err)
	}

	var r *Request
	c.retryOnLeader(func(s *Store) error {
		var err error
		r, _, err = s.CreateRequest(ctx, "dave", createCmd("w-1", 0))
		return err
	})
	if r.Status != StatusAwaitingApprovals || r.Decision.Required != 2 || r.Initiator != "dave" || !r.Decision.Allowed {
		t.Fatalf("created request: %+v", r)
	}
	exp := time.Now().Add(30 * time.Minute)
	propose := func(typ, actor string, p any) (Outcome, error) {
		var out Outcome
		var err error
		c.retryOnLeaderErr(func(s *Store) error { out, err = s.Propose(ctx, typ, actor, p); return err })
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
		before := c.leaderHash()
		if _, err := propose(CmdApprove, "api", a); !errors.Is(err, ErrApproval) {
			t.Fatalf("%s approval: %v, want ErrApproval", name, err)
		}
		if after := c.leaderHash(); after != before {
			t.Fatalf("%s approval changed the state", name)
		}
	}
	// A claim before quorum is refused.
	if _, err := c.claim(r.ID); !errors.Is(err, ErrWrongStatus) {
		t.Fatalf("claim before approval: %v, want ErrWrongStatus", err)
	}
	out, err := propose(CmdApprove, "api", bob.approve(t, r, exp))
	if err != nil || out.Request.Status != StatusAwaitingApprovals {
		t.Fatalf("first approval: %v %+v", err, out.Request)
	}
	if _, err := propose(CmdApprove, "api", bob.approve(t, r, exp.Add(time.Minute))); !errors.Is(err, ErrApproval) {
		t.Fatalf("second approval by bob: %v, want ErrApproval", err)
	}
	out, err = propose(CmdApprove, "api", carol.approve(t, r, exp))
	if err != nil || out.Request.Status != StatusApproved {
		t.Fatalf("quorum approval: %v %+v", err, out.Request)
	}
	claimed, err := c.claim(r.ID)
	if err != nil || claimed.Status != StatusClaimed || claimed.Claim.Index == 0 {
		t.Fatalf("claim: %v %+v", err, claimed)
	}
	// A second claim (compare-and-set) fails.
	if _, err := c.claim(r.ID); !errors.Is(err, ErrWrongStatus) {
		t.Fatalf("second claim: %v, want ErrWrongStatus", err)
	}
	// A result from another session is refused; the right one lands.
	if _, err := propose(CmdResult, "n1", ResultCmd{RequestID: r.ID, SessionID: fmt.Sprintf("%064x", 7), Signed: []byte("sig")}); !errors.Is(err, ErrStaleSession) {
		t.Fatalf("result from stale session: %v", err)
	}
	out, err = propose(CmdResult, "n1", ResultCmd{RequestID: r.ID, SessionID: claimed.Claim.SessionID, Signed: []byte("signed-tx")})
	if err != nil || out.Request.Status != StatusSigned {
		t.Fatalf("result: %v", err)
	}
	// The decision read is linearizable on the leader and sees the result.
	c.retryOnLeaderErr(func(s *Store) error {
		return s.ReadLinearizable(ctx, func(st *State) error {
			if got := st.Requests[r.ID].Status; got != StatusSigned {
				t.Fatalf("linearizable read sees %s", got)
			}
			return VerifyChain(st.Audit)
		})
	})
	c.waitConverged(c.nodes...)

	// Removing a follower shrinks the configuration and the member list.
	var gone *node
	for _, n := range c.nodes {
		if !n.s.IsLeader() {
			gone = n
		}
	}
	c.retryOnLeader(func(s *Store) error { return s.Remove(ctx, gone.id) })
	l = c.waitLeader(c.others(gone))
	if got := c.voters(l); len(got) != 2 || slices.Contains(got, gone.id) {
		t.Fatalf("voters after removing %s: %v", gone.id, got)
	}
	_ = l.s.ReadLocal(func(st *State) error {
		if st.Members[gone.id] != nil {
			t.Fatalf("removed %s still a member", gone.id)
		}
		return nil
	})
}

func (c *cluster) voters(n *node) []string {
	f := n.s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		c.t.Fatal(err)
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	return ids
}

// retryOnLeaderErr is retryOnLeader that lets fn's FSM refusals through.
func (c *cluster) retryOnLeaderErr(fn func(*Store) error) {
	c.t.Helper()
	poll(c.t, "a write on the leader", func() error {
		l := c.waitLeader(c.live())
		err := fn(l.s)
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrTimeout) {
			return err
		}
		return nil
	})
}

func (c *cluster) claim(id string) (*Request, error) {
	var r *Request
	var err error
	c.retryOnLeaderErr(func(s *Store) error {
		r, err = s.Claim(context.Background(), "n1", id, allSigners)
		return err
	})
	return r, err
}

func (c *cluster) leaderHash() [32]byte {
	l := c.waitLeader(c.live())
	h, err := l.s.Hash()
	if err != nil {
		c.t.Fatal(err)
	}
	return h
}

// approveRequest creates request id and gets it approved by two operators.
func (c *cluster) approveRequest(t testing.TB, id string, nonce uint64, ops ...operator) *Request {
	c.t.Helper()
	ctx := context.Background()
	var r *Request
	c.retryOnLeader(func(s *Store) error {
		var err error
		r, _, err = s.CreateRequest(ctx, "backend", createCmd(id, nonce))
		return err
	})
	exp := time.Now().Add(30 * time.Minute)
	for _, o := range ops {
		c.retryOnLeader(func(s *Store) error {
			_, err := s.Propose(ctx, CmdApprove, "api", o.approve(t, r, exp))
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
	c.seed()
	ctx := context.Background()
	acked := map[string]bool{}
	write := func(i int) {
		id := fmt.Sprintf("lk-%d", i)
		c.retryOnLeader(func(s *Store) error {
			_, _, err := s.CreateRequest(ctx, "backend", createCmd(id, uint64(i)))
			return err
		})
		acked[id] = true
	}
	for i := range 20 {
		write(i)
	}
	old := c.waitLeader(nil)
	if err := old.s.Close(); err != nil {
		t.Fatal(err)
	}
	old.s = nil
	newL := c.waitLeader(c.live())
	if newL == old {
		t.Fatal("closed node still leader")
	}
	for i := 20; i < 40; i++ {
		write(i)
	}
	c.startNode(old, old.addr)
	c.waitConverged(c.nodes...)
	for _, n := range c.nodes {
		_ = n.s.ReadLocal(func(st *State) error {
			for id := range acked {
				if st.Requests[id] == nil {
					t.Errorf("%s lost acknowledged %s", n.id, id)
				}
			}
			return VerifyChain(st.Audit)
		})
	}
}

func TestPartitionAndHeal(t *testing.T) {
	c := newCluster(t, 3)
	c.seed()
	ctx := context.Background()
	l := c.waitLeader(nil)
	var cut *node
	for _, n := range c.nodes {
		if n != l {
			cut = n
		}
	}
	c.isolate(cut, true)
	for i := range 10 {
		c.retryOnLeader(func(s *Store) error {
			_, _, err := s.CreateRequest(ctx, "backend", createCmd(fmt.Sprintf("p-%d", i), uint64(i)))
			return err
		})
	}
	// The cut-off node did not see the majority's writes.
	_ = cut.s.ReadLocal(func(st *State) error {
		if st.Requests["p-9"] != nil {
			t.Fatal("partitioned node applied a write it could not receive")
		}
		return nil
	})
	if _, _, err := cut.s.CreateRequest(ctx, "backend", createCmd("minority", 99)); err == nil {
		t.Fatal("write on the partitioned minority succeeded")
	}

	// Now cut the leader away from the majority.
	c.isolate(cut, false)
	c.waitConverged(c.nodes...)
	l = c.waitLeader(nil)
	c.isolate(l, true)
	rest := c.others(l)
	nl := c.waitLeader(rest)
	if nl == l {
		t.Fatal("isolated leader still leads the majority")
	}
	c.retryOnLeaderAmong(rest, func(s *Store) error {
		_, _, err := s.CreateRequest(ctx, "backend", createCmd("after-split", 100))
		return err
	})
	c.isolate(l, false)
	c.waitLeader(nil)
	h := c.waitConverged(c.nodes...)
	_ = l.s.ReadLocal(func(st *State) error {
		if st.Requests["after-split"] == nil || st.Requests["minority"] != nil {
			t.Fatal("healed node has the wrong history")
		}
		return nil
	})
	t.Logf("converged hash %x", h[:8])
}

func (c *cluster) others(x *node) []*node {
	var out []*node
	for _, n := range c.nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

// isolate cuts (or restores) every link of n in both directions.
func (c *cluster) isolate(n *node, on bool) {
	n.fault.setIsolated(on)
	for _, o := range c.others(n) {
		if o.fault != nil {
			o.fault.setBlocked(n.addr, on)
		}
	}
}

func (c *cluster) retryOnLeaderAmong(among []*node, fn func(*Store) error) {
	c.t.Helper()
	poll(c.t, "a write on the majority leader", func() error {
		l := c.waitLeader(among)
		err := fn(l.s)
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrTimeout) {
			return err
		}
		if err != nil {
			c.t.Fatalf("write failed: %v", err)
		}
		return nil
	})
}

// TestStaleLeaderClaimRefused freezes the leader (cut off from everyone, as a
// SIGSTOP would), lets the majority elect a new leader that claims the
// request, then lets the old leader's claim reach the log: refused.
func TestStaleLeaderClaimRefused(t *testing.T) {
	c := newCluster(t, 3)
	c.seed()
	r1 := c.approveRequest(t, "stale-1", 1, bob, carol)
	r2 := c.approveRequest(t, "stale-2", 2, bob, carol)
	old := c.waitLeader(nil)
	// The old leader prepares its claims in its term, then freezes.
	c1, err := old.s.PrepareClaim(r1.ID, allSigners)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := old.s.PrepareClaim(r2.ID, allSigners)
	if err != nil {
		t.Fatal(err)
	}
	c.isolate(old, true)
	rest := c.others(old)
	var won *Request
	c.retryOnLeaderAmong(rest, func(s *Store) error {
		var err error
		won, err = s.Claim(context.Background(), "new-leader", r1.ID, allSigners)
		return err
	})
	// While frozen, the old leader can neither commit its claim nor answer
	// a linearizable read from its stale copy.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = old.s.SubmitClaim(ctx, "old-leader", c1)
	cancel()
	if err == nil {
		t.Fatal("frozen leader committed a claim")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	err = old.s.ReadLinearizable(ctx, func(st *State) error {
		t.Errorf("stale leader served a linearizable read (sees %s as %s)", r1.ID, st.Requests[r1.ID].Status)
		return nil
	})
	cancel()
	if err == nil {
		t.Fatal("linearizable read on a deposed leader succeeded")
	}
	c.isolate(old, false)
	c.waitLeader(nil)
	// The delayed claims reach the log through the current leader: both are
	// refused, c2 although stale-2 is still approved (term fencing).
	for _, cl := range []ClaimCmd{c1, c2} {
		var err error
		c.retryOnLeaderErr(func(s *Store) error { _, err = s.SubmitClaim(context.Background(), "old-leader", cl); return err })
		if !errors.Is(err, ErrStaleLeader) {
			t.Fatalf("stale claim on %s: %v, want ErrStaleLeader", cl.RequestID, err)
		}
	}
	c.waitConverged(c.nodes...)
	for _, n := range c.nodes {
		_ = n.s.ReadLocal(func(st *State) error {
			got := st.Requests[r1.ID].Claim
			if got == nil || got.SessionID != won.Claim.SessionID || got.Index != won.Claim.Index {
				t.Errorf("%s: claim of %s is %+v, want the new leader's", n.id, r1.ID, got)
			}
			if st.Requests[r2.ID].Status != StatusApproved {
				t.Errorf("%s: %s is %s, want approved", n.id, r2.ID, st.Requests[r2.ID].Status)
			}
			return nil
		})
	}
}

func TestConcurrentSubmitsOneRequest(t *testing.T) {
	c := newCluster(t, 3)
	c.seed()
	l := c.waitLeader(nil)
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
			r, ex, err := l.s.CreateRequest(context.Background(), "backend", cmd)
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
	if _, _, err := l.s.CreateRequest(context.Background(), "backend", other); !errors.Is(err, ErrConflict) {
		t.Fatalf("different payload under the same ID: %v, want ErrConflict", err)
	}
	c.waitConverged(c.nodes...)
	_ = l.s.ReadLocal(func(st *State) error {
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
	c.seed()
	l := c.waitLeader(nil)
	before := c.waitConverged(c.nodes...)
	bad, err := EncodeCommand("request.teleport", "future-leader", time.Now(), map[string]string{"x": "y"})
	if err != nil {
		t.Fatal(err)
	}
	f := l.s.raft.Apply(bad, 20*time.Second)
	if err := f.Error(); err == nil {
		if res := f.Response().(*applyResult); !errors.Is(res.err, ErrHalted) {
			t.Fatalf("unknown command applied: %+v", res)
		}
	}
	for _, n := range c.nodes {
		poll(t, n.id+" to halt", func() error {
			if n.s.Halted() == nil {
				return errors.New("still running")
			}
			return nil
		})
		if h, _ := n.s.Hash(); h != before {
			t.Errorf("%s changed state while halting", n.id)
		}
		if _, err := n.s.Propose(context.Background(), CmdMemberRemove, "x", MemberRemove{ID: "nobody"}); !errors.Is(err, ErrHalted) && !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s accepted a write after halting: %v", n.id, err)
		}
	}
}
