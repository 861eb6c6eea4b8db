package policy

import (
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
)

// TestAsSeen: a member's view moves an allowlist entry's activation and an
// unlock no earlier than its first sight of the change plus the delay, never
// earlier than the ledger's; a lifted lock stays in the state, inactive,
// naming its unlock; unlocking an inactive lock is refused.
func TestAsSeen(t *testing.T) {
	rules := loadRules(t)
	w := newWorld(t)
	apply := func(st State, c Change, at time.Time, ops ...string) State {
		t.Helper()
		next, _, err := st.Apply(rules, w.reg, c, w.approveChange(t, c, ops...), nil, at)
		if err != nil {
			t.Fatalf("%s: %v", c.ID, err)
		}
		return next
	}
	st := apply(State{}, Change{ID: "add-1", Kind: ChangeAllowlistAdd, Wallet: "eth-hot-1", Chain: "eth", Network: "mainnet", Address: dest1}, t0, "dave", "alice")
	st = apply(st, Change{ID: "lock-1", Kind: ChangeLock, Wallet: "eth-hot-1"}, t0, "dave")
	st = apply(st, Change{ID: "unlock-1", Kind: ChangeUnlock, Wallet: "eth-hot-1"}, t0, "alice", "bob")

	if got := st.ChangeIDs(); len(got) != 2 || got[0] != "add-1" || got[1] != "unlock-1" {
		t.Fatalf("ChangeIDs %v", got)
	}
	cooling, delay := time.Duration(rules.Allowlist.CoolingOff), time.Duration(rules.Lock.UnlockDelay)
	late := t0.Add(3 * time.Hour) // this member first saw both changes three hours later
	seen := st.AsSeen(rules, func(string) time.Time { return late })
	if e := seen.Allowlist()[0]; !e.ActiveAt.Equal(late.Add(cooling)) {
		t.Fatalf("entry active at %s, want %s", e.ActiveAt, late.Add(cooling))
	}
	if _, locked := seen.LockedAt("eth-hot-1", t0.Add(delay+time.Minute)); !locked {
		t.Fatal("the member's view unlocked before its own delay")
	}
	if _, locked := seen.LockedAt("eth-hot-1", late.Add(delay)); locked {
		t.Fatal("the member's view still locked after its own delay")
	}
	early := st.AsSeen(rules, func(string) time.Time { return t0.Add(-time.Hour) })
	if e := early.Allowlist()[0]; !e.ActiveAt.Equal(st.Allowlist()[0].ActiveAt) {
		t.Fatal("a first sight before the ledger's time shortened the cooling-off")
	}

	// An entry or a lifted lock that names no change (it cannot have come
	// through the log) is delayed from the member's first sight too.
	bare, err := NewState([]AllowlistEntry{{Wallet: "eth-hot-1", Chain: "eth", Network: "mainnet", Address: dest2, ApprovedAt: t0, ActiveAt: t0}},
		[]Lock{{Wallet: "eth-hot-2", LockedAt: t0, UnlockAt: t0}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bareSeen := bare.AsSeen(rules, func(string) time.Time { return late })
	if e := bareSeen.Allowlist()[0]; !e.ActiveAt.Equal(late.Add(cooling)) {
		t.Fatalf("entry without a change active at %s, want %s", e.ActiveAt, late.Add(cooling))
	}
	if _, locked := bareSeen.LockedAt("eth-hot-2", late); !locked {
		t.Fatal("a lock lifted by no named unlock lifted before the member's own delay")
	}

	// The lifted lock stays, inactive, and cannot be unlocked again.
	after := t0.Add(delay + time.Minute)
	if l := st.Locks(); len(l) != 1 || l[0].UnlockChangeID != "unlock-1" || l[0].Active(after) {
		t.Fatalf("locks after the unlock: %+v", l)
	}
	again := Change{ID: "unlock-2", Kind: ChangeUnlock, Wallet: "eth-hot-1"}
	if _, _, err := st.Apply(rules, w.reg, again, w.approveChange(t, again, "alice", "bob"), nil, after); err == nil {
		t.Fatal("unlocked a lock that is no longer in force")
	}
}

// TestAsSeenSpends: a spend counts toward a velocity window from no
// earlier than the member first saw it; a leader that froze its clock
// (spends stamped long ago) cannot age them out of the window early.
func TestAsSeenSpends(t *testing.T) {
	rules := loadRules(t)
	st, err := NewState(nil, nil, []Spend{{RequestID: "r1", Wallet: "eth-hot-1", Asset: "ETH", Amount: amount.FromUint64(1), At: t0}})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.SeenKeys(); len(got) != 1 || got[0] != SpendSeenKey("r1") {
		t.Fatalf("SeenKeys %v", got)
	}
	late := t0.Add(25 * time.Hour)
	seen := st.AsSeen(rules, func(k string) time.Time {
		if k == SpendSeenKey("r1") {
			return late
		}
		return t0
	})
	if h := seen.History(); !h[0].At.Equal(late) {
		t.Fatalf("spend counted from %s, want the member's first sight %s", h[0].At, late)
	}
	if h := st.AsSeen(rules, func(string) time.Time { return t0.Add(-time.Hour) }).History(); !h[0].At.Equal(t0) {
		t.Fatal("a first sight before the ledger's time moved the spend earlier")
	}
}
