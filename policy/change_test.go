package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/quorum"
)

func TestApplyChanges(t *testing.T) {
	rules := loadRules(t)
	w := newWorld(t)
	base := allowState(t)
	lockedAcct, _, err := base.Apply(rules, w.reg, Change{ID: "l0", Kind: ChangeLock}, w.approveChange(t, Change{ID: "l0", Kind: ChangeLock}, "grace"), nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	lockedW, _, err := base.Apply(rules, w.reg, Change{ID: "l1", Kind: ChangeLock, Wallet: "eth-hot-2"}, w.approveChange(t, Change{ID: "l1", Kind: ChangeLock, Wallet: "eth-hot-2"}, "dave"), nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	add := Change{ID: "al-1", Kind: ChangeAllowlistAdd, Wallet: "eth-hot-1", Chain: "eth", Network: "mainnet", Address: "0x000000000000000000000000000000000000dEaD", Label: "cold storage"}
	addAcct := add
	addAcct.Wallet = ""
	remove := Change{ID: "al-2", Kind: ChangeAllowlistRemove, Wallet: "eth-hot-1", Chain: "eth", Network: "mainnet", Address: dest1}
	upper := func(chain, network, addr string) (string, error) {
		if !strings.HasPrefix(addr, "0x") {
			return "", errors.New("no 0x prefix")
		}
		return "0x" + strings.ToUpper(addr[2:]), nil
	}

	tests := []struct {
		name     string
		st       State
		change   Change
		signers  []string
		validate AddressValidator
		err      error
		check    func(t *testing.T, s State)
	}{
		{"add: quorum of approvers", base, add, []string{"dave", "alice"}, nil, nil, func(t *testing.T, s State) {
			d := Evaluate(rules, s, ethReq(t, "r", "eth-hot-1", add.Address, "1"), t0)
			if !errors.Is(d.Err(), ErrCoolingOff) {
				t.Fatalf("fresh address payable immediately: %v", d.Err())
			}
			d = Evaluate(rules, s, ethReq(t, "r", "eth-hot-1", add.Address, "1"), t0.Add(24*time.Hour-time.Second))
			if !errors.Is(d.Err(), ErrCoolingOff) {
				t.Fatalf("payable before cooling-off ends: %v", d.Err())
			}
			d = Evaluate(rules, s, ethReq(t, "r", "eth-hot-1", add.Address, "1"), t0.Add(24*time.Hour))
			if d.Err() != nil {
				t.Fatalf("not payable after cooling-off: %v", d.Err())
			}
		}},
		{"add: one approver is not a quorum", base, add, []string{"dave"}, nil, ErrInsufficientApprovals, nil},
		{"add: auditor does not count", base, add, []string{"dave", "grace"}, nil, ErrInsufficientApprovals, nil},
		{"add: rejected", base, add, []string{"dave", "alice", "reject:erin"}, nil, ErrRejected, nil},
		{"add while account locked", lockedAcct, add, []string{"dave", "alice"}, nil, ErrLocked, nil},
		{"add while wallet locked", lockedW, Change{ID: "al-3", Kind: ChangeAllowlistAdd, Wallet: "eth-hot-2", Chain: "eth", Network: "mainnet", Address: dest1}, []string{"dave", "alice"}, nil, ErrLocked, nil},
		{"add to another wallet while one is locked", lockedW, add, []string{"dave", "alice"}, nil, nil, nil},
		{"account-wide add while any wallet locked", lockedW, addAcct, []string{"dave", "alice"}, nil, ErrLocked, nil},
		{"add duplicate", base, Change{ID: "al-4", Kind: ChangeAllowlistAdd, Wallet: "eth-hot-1", Chain: "eth", Network: "mainnet", Address: dest1}, []string{"dave", "alice"}, nil, ErrInvalidChange, nil},
		{"add without address", base, Change{ID: "al-5", Kind: ChangeAllowlistAdd, Wallet: "eth-hot-1", Chain: "eth", Network: "mainnet"}, []string{"dave", "alice"}, nil, ErrInvalidChange, nil},
		{"add: validator rejects", base, Change{ID: "al-6", Kind: ChangeAllowlistAdd, Chain: "eth", Network: "mainnet", Address: "nope"}, []string{"dave", "alice"}, upper, ErrInvalidChange, nil},
		{"add: not canonical", base, Change{ID: "al-7", Kind: ChangeAllowlistAdd, Chain: "eth", Network: "mainnet", Address: "0xabc"}, []string{"dave", "alice"}, upper, ErrInvalidChange, nil},
		{"add: canonical passes validator", base, Change{ID: "al-8", Kind: ChangeAllowlistAdd, Chain: "eth", Network: "mainnet", Address: "0xABC"}, []string{"dave", "alice"}, upper, nil, nil},
		{"remove: one approver, immediate", base, remove, []string{"dave"}, nil, nil, func(t *testing.T, s State) {
			d := Evaluate(rules, s, ethReq(t, "r", "eth-hot-1", dest1, "1"), t0)
			if !errors.Is(d.Err(), ErrNotAllowlisted) {
				t.Fatalf("removed address still payable: %v", d.Err())
			}
		}},
		{"remove while account locked", lockedAcct, remove, []string{"dave"}, nil, ErrLocked, nil},
		{"remove while its wallet locked", lockedW, Change{ID: "al-8", Kind: ChangeAllowlistRemove, Wallet: "eth-hot-2", Chain: "eth", Network: "mainnet", Address: dest1}, []string{"dave"}, nil, ErrLocked, nil},
		{"remove from another wallet while one is locked", lockedW, remove, []string{"dave"}, nil, nil, nil},
		{"remove by auditor", base, remove, []string{"grace"}, nil, ErrInsufficientApprovals, nil},
		{"remove absent", base, Change{ID: "al-9", Kind: ChangeAllowlistRemove, Chain: "eth", Network: "mainnet", Address: dest1}, []string{"dave"}, nil, ErrInvalidChange, nil},
		{"lock: backend principal cannot", base, Change{ID: "l2", Kind: ChangeLock}, []string{"backend"}, nil, ErrInsufficientApprovals, nil},
		{"lock: any one operator, even an auditor", base, Change{ID: "l2", Kind: ChangeLock}, []string{"grace"}, nil, nil, func(t *testing.T, s State) {
			if l, ok := s.LockedAt("eth-hot-1", t0); !ok || l.LockedBy != "grace" {
				t.Fatalf("lock %+v %v", l, ok)
			}
		}},
		{"lock: forged approval", base, Change{ID: "l3", Kind: ChangeLock}, []string{"forged:dave"}, nil, ErrInsufficientApprovals, nil},
		{"lock twice", lockedAcct, Change{ID: "l4", Kind: ChangeLock}, []string{"dave"}, nil, ErrInvalidChange, nil},
		{"unlock: admin quorum then delay", lockedAcct, Change{ID: "u1", Kind: ChangeUnlock}, []string{"alice", "bob"}, nil, nil, func(t *testing.T, s State) {
			r := ethReq(t, "r", "eth-hot-1", dest1, "1")
			if d := Evaluate(rules, s, r, t0.Add(59*time.Minute)); !errors.Is(d.Err(), ErrLocked) {
				t.Fatalf("unlocked before the delay: %v", d.Err())
			}
			if d := Evaluate(rules, s, r, t0.Add(time.Hour)); d.Err() != nil {
				t.Fatalf("still locked after the delay: %v", d.Err())
			}
			// Locking again during the delay cancels the pending unlock.
			lk := Change{ID: "l5", Kind: ChangeLock}
			s2, _, err := s.Apply(rules, w.reg, lk, w.approveChange(t, lk, "erin"), nil, t0.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if d := Evaluate(rules, s2, r, t0.Add(2*time.Hour)); !errors.Is(d.Err(), ErrLocked) {
				t.Fatalf("re-lock did not cancel the unlock: %v", d.Err())
			}
		}},
		{"unlock: one admin", lockedAcct, Change{ID: "u2", Kind: ChangeUnlock}, []string{"alice"}, nil, ErrInsufficientApprovals, nil},
		{"unlock: approvers are not admins", lockedAcct, Change{ID: "u3", Kind: ChangeUnlock}, []string{"dave", "erin"}, nil, ErrInsufficientApprovals, nil},
		{"unlock when not locked", base, Change{ID: "u4", Kind: ChangeUnlock}, []string{"alice", "bob"}, nil, ErrInvalidChange, nil},
		{"unknown kind", base, Change{ID: "x", Kind: "drop_table"}, []string{"alice", "bob"}, nil, ErrInvalidChange, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var approvals []quorum.Approval
			for _, s := range tc.signers {
				switch {
				case strings.HasPrefix(s, "reject:"):
					approvals = append(approvals, w.sign(t, s[7:], tc.change.ID, tc.change.PayloadHash(), quorum.Reject, t0.Add(time.Hour)))
				case strings.HasPrefix(s, "forged:"):
					a := w.approveChange(t, tc.change, s[7:])[0]
					a.Signature[0] ^= 1
					approvals = append(approvals, a)
				default:
					approvals = append(approvals, w.approveChange(t, tc.change, s)...)
				}
			}
			before, _ := tc.st.MarshalJSON()
			next, _, err := tc.st.Apply(rules, w.reg, tc.change, approvals, tc.validate, t0)
			after, _ := tc.st.MarshalJSON()
			if string(before) != string(after) {
				t.Fatal("Apply modified its receiver")
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if got, _ := next.MarshalJSON(); string(got) != string(before) {
					t.Fatal("failed Apply returned a changed state")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, next)
			}
		})
	}
}

func TestAuthorizeRulesChange(t *testing.T) {
	w := newWorld(t)
	next := loadRules(t)
	h, _ := RulesChangeHash(next)
	sign := func(ops ...string) []quorum.Approval {
		var out []quorum.Approval
		for _, op := range ops {
			out = append(out, w.sign(t, op, "rules-7", h, quorum.Approve, t0.Add(time.Hour)))
		}
		return out
	}
	if _, err := AuthorizeRulesChange(w.reg, "rules-7", next, sign("alice", "bob"), t0); err != nil {
		t.Fatalf("admin quorum refused: %v", err)
	}
	if _, err := AuthorizeRulesChange(w.reg, "rules-7", next, sign("alice", "dave"), t0); !errors.Is(err, ErrInsufficientApprovals) {
		t.Fatalf("approver counted for a rules change: %v", err)
	}
	if _, err := AuthorizeRulesChange(w.reg, "rules-7", &Rules{}, sign("alice", "bob"), t0); !errors.Is(err, ErrInvalidChange) {
		t.Fatalf("unvalidated rules: %v", err)
	}
}

func TestStateJSONRoundTrip(t *testing.T) {
	st := allowState(t)
	st = st.RecordSpend(Spend{RequestID: "r1", Wallet: "eth-hot-1", Asset: "ETH", Amount: amount.FromUint64(5), At: t0}, 24*time.Hour)
	b, err := st.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := back.MarshalJSON()
	if string(b) != string(b2) {
		t.Fatalf("round trip:\n%s\n%s", b, b2)
	}
	for _, bad := range []string{
		`{"allowlist":[{"chain":"eth","network":"mainnet"}]}`,
		`{"history":[{"wallet":"w","asset":"ETH","amount":5,"at":"2026-11-23T00:00:00Z"}]}`,
		`{"history":[{"wallet":"w","asset":"ETH","amount":"-5","at":"2026-11-23T00:00:00Z"}]}`,
		`{"locks":[{"locked_by":"a"},{"locked_by":"b"}]}`,
	} {
		var s State
		if err := s.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestRecordSpendPrunes(t *testing.T) {
	var st State
	st = st.RecordSpend(Spend{Wallet: "w", Asset: "ETH", Amount: amount.FromUint64(1), At: t0}, time.Hour)
	st = st.RecordSpend(Spend{Wallet: "w", Asset: "ETH", Amount: amount.FromUint64(2), At: t0.Add(2 * time.Hour)}, time.Hour)
	if h := st.History(); len(h) != 1 || h[0].Amount.String() != "2" {
		t.Fatalf("history %+v", h)
	}
}
