package ledger_test

import (
	"fmt"
	"math/rand"
	"os"
	"slices"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// TestPropertySignedSubsetOfHonest drives random interleavings of locks,
// unlocks, allowlist additions and removals, replays of applied changes,
// withdrawals, approvals and claims through the real FSM, while the leader's
// clock lags real time by a random, changing skew (backdated and frozen
// stamps). After every accepted claim it asks what an honest member would
// decide: policy on the member's own view (State.AsSeen from the real time
// it first saw each change, approvals and expiry at real time). The set of
// withdrawals members would sign must be a subset of what an independent
// model of the honest rules allows: never while locked (an unlock takes
// effect a full delay after it was committed, in real time), never to a
// destination that is not allowlisted or still cooling off (in real time),
// never on an expired approval, and a change ID takes effect at most once.
func TestPropertySignedSubsetOfHonest(t *testing.T) {
	runs, steps := propertyRuns, 120
	if os.Getenv("CUSTODY_SOAK") != "" {
		runs = 2000
	}
	signed, refusedByMember := 0, 0
	for run := range runs {
		s, m := propertyRun(t, int64(run), steps)
		signed += s
		refusedByMember += m
	}
	t.Logf("%d runs: %d withdrawals signed, %d claims the ledger granted but a member refused", runs, signed, refusedByMember)
	if signed == 0 || refusedByMember == 0 {
		t.Fatalf("the runs exercised too little: %d signed, %d refused by the member", signed, refusedByMember)
	}
}

// propModel is the honest rules in real time, independent of package policy.
type propModel struct {
	applied     map[string]bool      // change IDs that took effect
	lockedSince time.Time            // zero: not locked
	unlockAt    time.Time            // zero: no unlock pending
	allow       map[string]time.Time // address -> active at (real time)
}

func (m *propModel) locked(now time.Time) bool {
	return !m.lockedSince.IsZero() && (m.unlockAt.IsZero() || now.Before(m.unlockAt))
}

func propertyRun(t *testing.T, seed int64, steps int) (signed, refusedByMember int) {
	rng := rand.New(rand.NewSource(seed))
	h := newHarness(t)
	real := h.now
	coolingOff, unlockDelay := time.Hour, time.Hour
	model := &propModel{applied: map[string]bool{}, allow: map[string]time.Time{}}
	seen := map[string]time.Time{} // the member's first sight, real time
	observe := func() {
		_ = h.f.Read(func(st *State) error {
			for _, id := range st.Policy.SeenKeys() {
				if _, ok := seen[id]; !ok {
					seen[id] = real
				}
			}
			return nil
		})
	}
	var history []PolicyChange // applied governance changes, for replays
	addrs := []string{"0xa1", "0xa2", "0xa3"}
	reqs := []string{}
	n := 0
	sign := func(c policy.Change, ops ...operator) PolicyChange {
		p := PolicyChange{Change: c}
		for _, o := range ops {
			p.Approvals = append(p.Approvals, o.sign(t, c.ID, c.PayloadHash(), quorum.Approve, h.now.Add(3*time.Hour)))
		}
		return p
	}
	govern := func(p PolicyChange) {
		before := h.encoded()
		_, err := h.apply("leader", p)
		if err != nil {
			if string(before) != string(h.encoded()) {
				t.Fatalf("seed %d: refused %s changed the state", seed, p.Change.ID)
			}
			return
		}
		history = append(history, p)
		if model.applied[p.Change.ID] {
			return // a change takes effect once; an accepted replay is caught below
		}
		model.applied[p.Change.ID] = true
		switch p.Change.Kind {
		case policy.ChangeLock:
			model.lockedSince, model.unlockAt = real, time.Time{}
		case policy.ChangeUnlock:
			model.unlockAt = real.Add(unlockDelay)
		case policy.ChangeAllowlistAdd:
			model.allow[p.Change.Address] = real.Add(coolingOff)
		case policy.ChangeAllowlistRemove:
			delete(model.allow, p.Change.Address)
		}
	}
	for range steps {
		n++
		switch op := rng.Intn(14); {
		case op <= 2: // real time passes; the leader's clock lags by 0..2h
			real = real.Add(time.Duration(rng.Intn(90)) * time.Minute)
			if lag := time.Duration(rng.Intn(5)) * 30 * time.Minute; real.Add(-lag).After(h.now) {
				h.now = real.Add(-lag)
			}
		case op == 3:
			govern(sign(policy.Change{ID: fmt.Sprintf("lock-%d", n), Kind: policy.ChangeLock, Reason: "drill"}, dave))
		case op == 5:
			govern(sign(policy.Change{ID: fmt.Sprintf("unlock-%d", n), Kind: policy.ChangeUnlock}, alice, carol))
		case op == 6 || op == 7:
			a := addrs[rng.Intn(len(addrs))]
			govern(sign(policy.Change{ID: fmt.Sprintf("add-%d", n), Kind: policy.ChangeAllowlistAdd, Wallet: "allow", Chain: "eth", Network: "devnet", Address: a}, alice, carol))
		case op == 8:
			a := addrs[rng.Intn(len(addrs))]
			govern(sign(policy.Change{ID: fmt.Sprintf("remove-%d", n), Kind: policy.ChangeAllowlistRemove, Wallet: "allow", Chain: "eth", Network: "devnet", Address: a}, dave))
		case (op == 9 || op == 4) && len(history) > 0: // a leader replays an applied change
			govern(history[rng.Intn(len(history))])
		case op == 10 || op == 11: // a withdrawal, approved by bob (the rule needs one)
			c := createCmd(fmt.Sprintf("w-%d", n), 0)
			c.Wallet, c.Nonce, c.To, c.ExpiresAt = "allow", nil, addrs[rng.Intn(len(addrs))], real.Add(2*time.Hour)
			r, err := h.apply("leader", c)
			if err != nil || r.Status != StatusAwaitingApprovals {
				continue
			}
			a := bob.approve(t, r, real.Add(time.Duration(30+rng.Intn(60))*time.Minute))
			if _, err := h.apply("leader", a); err == nil {
				reqs = append(reqs, r.ID)
			}
		case op >= 12 && len(reqs) > 0: // claim one
			id := reqs[rng.Intn(len(reqs))]
			cl := h.claimCmd(id)
			cl.SessionID = fmt.Sprintf("%064x", seed<<32|int64(n))
			r, err := h.apply("leader", cl)
			if err != nil {
				continue
			}
			reqs = slices.DeleteFunc(reqs, func(x string) bool { return x == id })
			observe()
			if !memberWouldSign(t, h, r, real, seen) {
				refusedByMember++
				continue
			}
			signed++
			if model.locked(real) {
				t.Fatalf("seed %d: %s signed while locked (locked at %s, unlock at %s, now %s)", seed, id, model.lockedSince, model.unlockAt, real)
			}
			if at, ok := model.allow[r.To]; !ok || real.Before(at) {
				t.Fatalf("seed %d: %s signed to %s, allowlisted %v, active at %s, now %s", seed, id, r.To, ok, at, real)
			}
			for _, ap := range r.Approvals {
				if !real.Before(ap.Expiry) {
					t.Fatalf("seed %d: %s signed on an approval expired at %s (now %s)", seed, id, ap.Expiry, real)
				}
			}
		}
		observe()
	}
	return signed, refusedByMember
}

// memberWouldSign is the policy part of a member's check (signer/member
// checkClaim): the rules in force on the member's own view of the state, at
// its own time, with the approvals counted at that time.
func memberWouldSign(t *testing.T, h *fsmHarness, r *Request, now time.Time, seen map[string]time.Time) bool {
	ok := false
	_ = h.f.Read(func(st *State) error {
		rules := st.ActivePolicy()
		view := st.Policy.AsSeen(rules, func(id string) time.Time {
			if at, found := seen[id]; found {
				return at
			}
			return now
		})
		d := policy.Authorize(rules, view, st.Registry, r.PolicyRequest(), r.Approvals, now)
		ok = d.Approved && now.Before(r.ExpiresAt)
		return nil
	})
	return ok
}
