package main

// Process tests of the failures docs/node.md ("Failure handling") lists
// for a signing session: a committee member killed while it signs, and a
// leader frozen (SIGSTOP) right after its claim. They are subtests of
// TestNodeProcessCluster, on its cluster after its own checks: each starts
// from every node running and leaves every node running.
//
// A session may finish before the signal lands (a 2-party signature is
// quick): each test then starts over with a new withdrawal, a bounded
// number of times, and fails if the signal never lands mid-session.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// midSessionAttempts bounds the withdrawals a test makes to have its signal
// land while a session runs.
const midSessionAttempts = 4

// withdrawClaimed makes a withdrawal of 1 ETH from the wallet, has bob and
// carol approve it and polls the leader's replica as fast as its node RPC
// answers until the request carries a claim. It returns the leader and that
// view (its session may already have a result).
func (c *procCluster) withdrawClaimed(req string, wallet, dest common.Address) (pki.NodeID, noderpc.RequestView) {
	c.t.Helper()
	rc := c.withdrawal(req, wallet, dest, ether(1))
	c.approve(rc, "bob")
	leader := c.leader()
	c.approve(rc, "carol")
	return leader, c.claimedOn(leader, req)
}

func (c *procCluster) claimedOn(id pki.NodeID, req string) noderpc.RequestView {
	c.t.Helper()
	deadline := time.Now().Add(ledgertest.Wait)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		v, err := c.rpc.Request(c.ctx, id, req)
		if err == nil && v.Request.Claim != nil {
			return v
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for a claim of %s on %s: %v", req, id, err)
		}
		<-tick.C
	}
}

// leaderAmong is the node of nodes that leads; it asks no node outside
// nodes (a stopped process answers nothing, and every question to it waits
// for the client's timeout).
func (c *procCluster) leaderAmong(nodes []pki.NodeID) pki.NodeID {
	c.t.Helper()
	var l pki.NodeID
	c.poll(fmt.Sprintf("a leader among %v", nodes), func() error {
		for _, id := range nodes {
			st, err := c.rpc.Status(c.ctx, id)
			if err == nil && st.RaftState == "Leader" {
				l = id
				c.hint.Store(id)
				return nil
			}
		}
		return errors.New("no leader yet")
	})
	return l
}

// logLines returns the lines of node id's latest log whose msg is msg and
// whose request field is req, logged at since or later.
func (c *procCluster) logLines(id pki.NodeID, msg, req string, since time.Time) []map[string]any {
	c.t.Helper()
	f, err := os.Open(c.procs[id].log)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["msg"] != msg || line["request"] != req {
			continue
		}
		at, _ := line["time"].(string)
		if ts, err := time.Parse(time.RFC3339Nano, at); err == nil && !ts.Before(since) {
			out = append(out, line)
		}
	}
	return out
}

// twoSessions reports whether the request went through exactly two
// sessions, the failed one and the re-claim that signed it: the view's
// sessions (in no particular order) are failed and the final claim's, and
// the result is the final claim's.
func twoSessions(v noderpc.RequestView, failed string) bool {
	final := v.Request.Claim.SessionID
	return len(v.Sessions) == 2 && final != failed && slices.Contains(v.Sessions, failed) && slices.Contains(v.Sessions, final) &&
		v.Request.Result != nil && v.Request.Result.SessionID == final && len(v.Request.Result.Signed) > 0
}

func without(nodes []pki.NodeID, id pki.NodeID) []pki.NodeID {
	return slices.DeleteFunc(slices.Clone(nodes), func(x pki.NodeID) bool { return x == id })
}

// memberKilled (TestNodeProcessCluster/MemberKilled): kill -9 of the
// claim's other signer (not the leader) while the session runs. The
// leader's call to the dead member drops, so the session fails at once (no
// session timeout): the failure is committed and the leader re-claims 2 s
// later with members that answer. The request ends signed in the re-claim,
// by signers without the dead member, and the killed node, started again,
// holds the same transaction.
func (c *procCluster) memberKilled(t *testing.T, wallet common.Address) {
	dest := common.HexToAddress("0x00000000000000000000000000000000000000d2")

	for attempt := 1; attempt <= midSessionAttempts; attempt++ {
		id := fmt.Sprintf("wd-kill-%d", attempt)
		leader, first := c.withdrawClaimed(id, wallet, dest)
		cl := first.Request.Claim
		i := slices.IndexFunc(cl.Signers, func(s pki.NodeID) bool { return s != leader })
		if !slices.Contains(cl.Signers, leader) || i < 0 {
			t.Fatalf("%s: claim by %s with signers %v", id, cl.By, cl.Signers)
		}
		victim := cl.Signers[i]
		if first.Request.Result == nil {
			if err := c.procs[victim].cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			c.wait(victim, 30*time.Second)
		}
		alive := without(procNodes, victim)
		v := c.signedOn(id, alive...)
		if len(v.Sessions) == 1 {
			// The session finished before the kill landed (or the claim
			// was seen with its result): one session, signed by both.
			if v.Request.Result.SessionID != cl.SessionID {
				t.Fatalf("%s: one session %v, result of %s", id, v.Sessions, v.Request.Result.SessionID)
			}
			t.Logf("attempt %d: the session finished before the kill of %s landed", attempt, victim)
			c.mined(v, wallet, dest)
			if exited(c.procs[victim]) {
				c.start(victim)
			}
			c.signedOn(id, victim)
			continue
		}

		// The kill landed mid-session: the first session failed and the
		// re-claim signed without the dead member.
		last := v.Request.Claim
		if !twoSessions(v, cl.SessionID) {
			t.Fatalf("%s: sessions %v (first claim %s), final claim %s, result of %s", id, v.Sessions, cl.SessionID, last.SessionID, v.Request.Result.SessionID)
		}
		if slices.Contains(last.Signers, victim) || len(last.Signers) != 2 {
			t.Fatalf("%s: the re-claim's signers %v include the killed %s", id, last.Signers, victim)
		}
		// The leader saw the session fail (its call to the member dropped);
		// it did not wait for the session timeout to abandon it. (Lines
		// before the claim are attempts that never claimed: a leader may
		// try a request before it registered the new wallet.)
		failed := c.logLines(leader, "signing session failed", id, cl.At)
		if last.By != noderpc.NodeActor(leader) || len(failed) != 1 || failed[0]["reclaim"] != false {
			t.Fatalf("%s: re-claim by %s (leader %s); its session failures: %v", id, last.By, leader, failed)
		}
		for _, n := range alive {
			if stale := c.logLines(n, "failed a stale claim", id, time.Time{}); len(stale) > 0 {
				t.Fatalf("%s: %s abandoned the session on its timeout: %v", id, n, stale)
			}
		}
		t.Logf("attempt %d: killed %s mid-session; the leader %s's session failed with: %v; re-claimed with %v",
			attempt, victim, leader, failed[0]["err"], last.Signers)
		c.mined(v, wallet, dest)
		c.start(victim)
		after := c.signedOn(id, append(alive, victim)...)
		if !slices.Equal(after.Sessions, v.Sessions) {
			t.Fatalf("%s: sessions %v after the restart, %v before", id, after.Sessions, v.Sessions)
		}
		return
	}
	t.Fatalf("in %d withdrawals the kill never landed while the session ran", midSessionAttempts)
}

// leaderStopped (TestNodeProcessCluster/LeaderStopped): the leader is
// stopped (SIGSTOP) right after it claims. The other nodes elect a new
// leader, which gives the claim a session timeout, records it abandoned and
// re-claims with members that answer. A result of the old session sent by
// a node while the re-claim runs is refused (nodes do not forward results;
// the ledger also fences them by session ID). The old leader, continued
// (SIGCONT), fails to commit its session's result; the request ends signed
// once, in the re-claim, the same transaction on every node.
func (c *procCluster) leaderStopped(t *testing.T, wallet common.Address) {
	dest := common.HexToAddress("0x00000000000000000000000000000000000000d3")

	for attempt := 1; attempt <= midSessionAttempts; attempt++ {
		id := fmt.Sprintf("wd-stop-%d", attempt)
		old, first := c.withdrawClaimed(id, wallet, dest)
		oldSession := first.Request.Claim.SessionID
		if first.Request.Result != nil {
			t.Logf("attempt %d: the claim was first seen with its result", attempt)
			c.mined(c.signedOn(id, procNodes...), wallet, dest)
			continue
		}
		c.signal(old, syscall.SIGSTOP)
		others := without(procNodes, old)
		stopped := time.Now()
		newLeader := c.leaderAmong(others)

		// Wait for the re-claim (or the old session's result, when it was
		// committed before the stop landed).
		var reclaim noderpc.RequestView
		c.poll(id+" re-claimed or signed on "+string(newLeader), func() error {
			v, err := c.rpc.Request(c.ctx, newLeader, id)
			if err != nil {
				return err
			}
			if v.Request.Claim == nil { // its replica has not applied the claim yet
				return fmt.Errorf("%s is %s without a claim", id, v.Request.Status)
			}
			if v.Request.Claim.SessionID == oldSession && !v.Request.Status.Signed() {
				return fmt.Errorf("%s is %s in the old session", id, v.Request.Status)
			}
			reclaim = v
			return nil
		})
		if reclaim.Request.Claim.SessionID == oldSession {
			t.Logf("attempt %d: the old session committed its result before the stop landed", attempt)
			c.signal(old, syscall.SIGCONT)
			c.mined(c.signedOn(id, procNodes...), wallet, dest)
			continue
		}
		t.Logf("attempt %d: stopped %s; %s re-claimed %s after %s (status %s)", attempt, old, newLeader, id,
			time.Since(stopped).Round(time.Second), reclaim.Request.Status)

		// A late result of the old session, sent by a node to the leader
		// now: nodes cannot forward results at all (only the leader
		// records them, noderpc.Forwardable); the ledger's own fence on
		// the session ID is shown in process by daemon's
		// TestStaleClaimReclaimed.
		_, err := c.rpc.Submit(c.ctx, noderpc.NodeActor("n1"), ledger.RecordResult{RequestID: id, SessionID: oldSession, Error: "late result of the old session"})
		var re *noderpc.Error
		if !errors.As(err, &re) || re.Code != noderpc.CodeForbidden {
			t.Fatalf("late result of the old session: %v; want rpc.forbidden", err)
		}

		v := c.signedOn(id, others...)
		cl := v.Request.Claim
		if !twoSessions(v, oldSession) {
			t.Fatalf("%s: sessions %v (old %s), final claim %s, result of %s", id, v.Sessions, oldSession, cl.SessionID, v.Request.Result.SessionID)
		}
		if cl.By != noderpc.NodeActor(newLeader) || slices.Contains(cl.Signers, old) {
			t.Fatalf("%s: re-claim by %s with signers %v (new leader %s, stopped %s)", id, cl.By, cl.Signers, newLeader, old)
		}
		if stale := c.logLines(newLeader, "failed a stale claim", id, time.Time{}); len(stale) != 1 || stale[0]["session"] != oldSession {
			t.Fatalf("%s: %s's abandoned-claim lines: %v", id, newLeader, stale)
		}

		// The old leader goes on: its session's result commit is refused.
		c.signal(old, syscall.SIGCONT)
		var failed []map[string]any
		c.poll(string(old)+" gives up its session", func() error {
			failed = c.logLines(old, "signing session failed", id, first.Request.Claim.At)
			if len(failed) == 0 {
				return errors.New("no \"signing session failed\" line yet")
			}
			return nil
		})
		// The old session ends either at its result commit (refused: it
		// is no longer the leader) or before, when its own member can no
		// longer confirm a read index from a leader (a deposed leader's
		// read index: ledger TestDeposedLeaderReadIndex). Either way it
		// records nothing.
		msg, _ := failed[0]["err"].(string)
		if len(failed) != 1 || failed[0]["reclaim"] != false || !strings.Contains(msg, "commit result") && !strings.Contains(msg, "read index") {
			t.Fatalf("%s: %s's session failures: %v; want one whose result commit was refused or whose member could not read", id, old, failed)
		}
		t.Logf("%s's late session: %s", old, msg)
		if signed := c.logLines(old, "signed", id, time.Time{}); len(signed) != 0 {
			t.Fatalf("%s: the stopped leader reports it signed: %v", id, signed)
		}

		all := c.signedOn(id, append(others, old)...)
		if !slices.Equal(all.Sessions, v.Sessions) || all.Request.Result.SessionID != cl.SessionID {
			t.Fatalf("%s: sessions %v, result of %s after the old leader's return; before %v, result of %s", id, all.Sessions, all.Request.Result.SessionID, v.Sessions, cl.SessionID)
		}
		c.mined(v, wallet, dest)
		return
	}
	t.Fatalf("in %d withdrawals the stop never landed while the session ran", midSessionAttempts)
}
