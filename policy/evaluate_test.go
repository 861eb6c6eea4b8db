package policy

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/quorum"
)

func TestEvaluateTable(t *testing.T) {
	rules := loadRules(t)
	base := allowState(t)
	locked := func(wallet string, unlockAt time.Time) State {
		s := base.clone()
		s.locks[wallet] = Lock{Wallet: wallet, LockedBy: "grace", LockedAt: t0.Add(-time.Minute), UnlockAt: unlockAt}
		return s
	}
	history := func(amounts ...string) State {
		s := base.clone()
		for i, a := range amounts {
			s.history = append(s.history, Spend{Wallet: "eth-hot-1", Asset: "ETH", Amount: units(t, a, 18), At: t0.Add(-time.Duration(i+1) * time.Hour)})
		}
		return s
	}
	btc := Request{ID: "b1", Withdrawal: Withdrawal{Wallet: "btc-cold-1", Asset: "BTC", Chain: "btc", Network: "mainnet", To: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", Amount: units(t, "1", 8)}, Initiator: "backend"}
	btcAllow, _ := NewState([]AllowlistEntry{{Wallet: "btc-cold-1", Chain: "btc", Network: "mainnet", Address: btc.To, ActiveAt: t0}}, nil, nil)
	ops := Request{ID: "o1", Withdrawal: Withdrawal{Wallet: "btc-ops-1", Asset: "BTC", Chain: "btc", Network: "mainnet", To: "bc1qnotallowlisted", Amount: units(t, "0.5", 8)}, Initiator: "backend"}
	usdc := Request{ID: "u1", Withdrawal: Withdrawal{Wallet: "eth-hot-2", Asset: "ERC20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", Chain: "eth", Network: "mainnet", To: dest1, Amount: units(t, "100", 6)}, Initiator: "backend"}
	usdcAllow, _ := NewState([]AllowlistEntry{{Wallet: "eth-hot-2", Chain: "eth", Network: "mainnet", Address: dest1, ActiveAt: t0.Add(-time.Second)}}, nil, nil)

	tests := []struct {
		name     string
		st       State
		req      Request
		reason   Reason
		rule     string
		route    Route
		required int
	}{
		{"small hot: 1 approver", base, ethReq(t, "r", "eth-hot-1", dest1, "0.5"), "", "eth-hot", RouteHot, 1},
		{"tier boundary is inclusive", base, ethReq(t, "r", "eth-hot-1", dest1, "1"), "", "eth-hot", RouteHot, 2},
		{"at cold_above stays hot", base, ethReq(t, "r", "eth-hot-1", dest1, "5"), "", "eth-hot", RouteHot, 3},
		{"above cold_above routes cold", base, ethReq(t, "r", "eth-hot-1", dest1, "5.000000000000000001"), "", "eth-hot", RouteCold, 3},
		{"at per_tx allowed", base, ethReq(t, "r", "eth-hot-1", dest1, "10"), "", "eth-hot", RouteCold, 3},
		{"over per_tx by 1 wei", base, ethReq(t, "r", "eth-hot-1", dest1, "10.000000000000000001"), ReasonOverLimit, "eth-hot", "", 0},
		{"cold wallet routes cold", btcAllow, btc, "", "btc-cold", RouteCold, 2},
		{"allowlist not required", base, ops, "", "btc-ops", RouteHot, 1},
		{"token asset rule", usdcAllow, usdc, "", "eth-hot-usdc", RouteHot, 2},
		{"not allowlisted", base, ethReq(t, "r", "eth-hot-1", "0x0000000000000000000000000000000000000001", "1"), ReasonNotAllowlisted, "eth-hot", "", 0},
		{"allowlisted for another wallet only", base, ethReq(t, "r", "eth-hot-2", dest1, "1"), ReasonNotAllowlisted, "eth-hot", "", 0},
		{"address compared exactly (canonical form)", base, ethReq(t, "r", "eth-hot-1", "0x52908400098527886e0f7030069857d2e4169ee7", "1"), ReasonNotAllowlisted, "eth-hot", "", 0},
		{"other network", base, func() Request { r := ethReq(t, "r", "eth-hot-1", dest1, "1"); r.Network = "sepolia"; return r }(), ReasonNotAllowlisted, "eth-hot", "", 0},
		{"account-wide entry cooling off", base, ethReq(t, "r", "eth-hot-2", dest2, "1"), ReasonCoolingOff, "eth-hot", "", 0},
		{"account-wide entry after cooling off", base, func() Request { return ethReq(t, "r", "eth-hot-2", dest2, "1") }(), "", "", "", 0}, // evaluated at t0+23h below
		{"no rule for wallet", base, ethReq(t, "r", "eth-unknown", dest1, "1"), ReasonNoRule, "", "", 0},
		{"no rule for asset", base, func() Request { r := ethReq(t, "r", "eth-hot-1", dest1, "1"); r.Asset = "BTC"; return r }(), ReasonNoRule, "", "", 0},
		{"account locked", locked(AccountScope, time.Time{}), ethReq(t, "r", "eth-hot-1", dest1, "1"), ReasonLocked, "", "", 0},
		{"wallet locked", locked("eth-hot-1", time.Time{}), ethReq(t, "r", "eth-hot-1", dest1, "1"), ReasonLocked, "", "", 0},
		{"other wallet locked", locked("eth-hot-2", time.Time{}), ethReq(t, "r", "eth-hot-1", dest1, "1"), "", "eth-hot", RouteHot, 2},
		{"locked beats no rule", locked(AccountScope, time.Time{}), ethReq(t, "r", "nope", dest1, "1"), ReasonLocked, "", "", 0},
		{"unlock pending: still locked", locked(AccountScope, t0.Add(time.Second)), ethReq(t, "r", "eth-hot-1", dest1, "1"), ReasonLocked, "", "", 0},
		{"unlock delay passed", locked(AccountScope, t0), ethReq(t, "r", "eth-hot-1", dest1, "1"), "", "eth-hot", RouteHot, 2},
		{"velocity within window", history("20", "20"), ethReq(t, "r", "eth-hot-1", dest1, "10"), "", "eth-hot", RouteCold, 3},
		{"velocity exceeded by 1 wei", history("20", "20"), ethReq(t, "r", "eth-hot-1", dest1, "10.000000000000000001"), ReasonOverLimit, "eth-hot", "", 0},
		{"velocity exceeded", history("20", "20", "5"), ethReq(t, "r", "eth-hot-1", dest1, "5.5"), ReasonVelocityExceeded, "eth-hot", "", 0},
		{"velocity: spend at window edge drops out", func() State {
			s := history("20", "20")
			s.history = append(s.history, Spend{Wallet: "eth-hot-1", Asset: "ETH", Amount: units(t, "10", 18), At: t0.Add(-24 * time.Hour)})
			return s
		}(), ethReq(t, "r", "eth-hot-1", dest1, "10"), "", "eth-hot", RouteCold, 3},
		{"velocity: other wallet's spends do not count", func() State {
			s := history()
			s.history = append(s.history, Spend{Wallet: "eth-hot-2", Asset: "ETH", Amount: units(t, "50", 18), At: t0})
			return s
		}(), ethReq(t, "r", "eth-hot-1", dest1, "10"), "", "eth-hot", RouteCold, 3},
		// After a claim the ledger has recorded the request's own spend;
		// re-evaluating that request (the claim's recheck, every signer, a
		// re-claim) must not count it a second time.
		{"velocity: the request's own recorded spend is not counted twice", func() State {
			s := history("20", "20")
			s.history = append(s.history, Spend{RequestID: "r", Wallet: "eth-hot-1", Asset: "ETH", Amount: units(t, "10", 18), At: t0})
			return s
		}(), ethReq(t, "r", "eth-hot-1", dest1, "10"), "", "eth-hot", RouteCold, 3},
		{"velocity: another request's spend still counts", func() State {
			s := history("20", "20")
			s.history = append(s.history, Spend{RequestID: "r-other", Wallet: "eth-hot-1", Asset: "ETH", Amount: units(t, "10", 18), At: t0})
			return s
		}(), ethReq(t, "r", "eth-hot-1", dest1, "10"), ReasonVelocityExceeded, "eth-hot", "", 0},
		{"velocity: spends without a request ID always count", func() State {
			s := history("20", "20")
			s.history = append(s.history, Spend{Wallet: "eth-hot-1", Asset: "ETH", Amount: units(t, "10", 18), At: t0})
			return s
		}(), ethReq(t, "r", "eth-hot-1", dest1, "10"), ReasonVelocityExceeded, "eth-hot", "", 0},
		{"zero amount", base, ethReq(t, "r", "eth-hot-1", dest1, "0"), ReasonInvalidRequest, "", "", 0},
		{"missing initiator", base, func() Request { r := ethReq(t, "r", "eth-hot-1", dest1, "1"); r.Initiator = ""; return r }(), ReasonInvalidRequest, "", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			if tc.name == "account-wide entry after cooling off" {
				now = t0.Add(23 * time.Hour)
				tc.rule, tc.route, tc.required = "eth-hot", RouteHot, 2
			}
			d := Evaluate(rules, tc.st, tc.req, now)
			if d.Reason != tc.reason {
				t.Fatalf("reason %q (%s), want %q", d.Reason, d.Detail, tc.reason)
			}
			if d.Allowed != (tc.reason == "") || d.Approved {
				t.Fatalf("allowed %v approved %v", d.Allowed, d.Approved)
			}
			if tc.reason != "" {
				if !errors.Is(d.Err(), tc.reason.Sentinel()) || d.Detail == "" {
					t.Fatalf("Err() = %v", d.Err())
				}
			} else if d.Err() != nil {
				t.Fatalf("Err() = %v", d.Err())
			}
			if d.Rule != tc.rule || d.Route != tc.route || d.Required != tc.required {
				t.Fatalf("rule %q route %q required %d, want %q %q %d", d.Rule, d.Route, d.Required, tc.rule, tc.route, tc.required)
			}
			if d.RulesHash != rules.Hash() {
				t.Fatal("decision does not name the rules hash")
			}
		})
	}
}

func TestEvaluateNilRulesDeniesEverything(t *testing.T) {
	d := Evaluate(nil, allowState(t), ethReq(t, "r", "eth-hot-1", dest1, "1"), t0)
	if !errors.Is(d.Err(), ErrNoRule) {
		t.Fatalf("nil rules: %v", d.Err())
	}
	d = Evaluate(&Rules{}, allowState(t), ethReq(t, "r", "eth-hot-1", dest1, "1"), t0)
	if !errors.Is(d.Err(), ErrNoRule) {
		t.Fatalf("zero rules: %v", d.Err())
	}
}

func TestAuthorize(t *testing.T) {
	rules := loadRules(t)
	w := newWorld(t)
	st := allowState(t)
	req := ethReq(t, "wd-1", "eth-hot-1", dest1, "2") // tier: 2 of approver/admin
	cases := []struct {
		name      string
		approvals []string
		reason    Reason
		collected int
	}{
		{"two approvers", []string{"dave", "erin"}, "", 2},
		{"approver and admin", []string{"dave", "alice"}, "", 2},
		{"one approver", []string{"dave"}, ReasonInsufficientApprovals, 1},
		{"same approver twice", []string{"dave", "dave"}, ReasonInsufficientApprovals, 1},
		{"auditor does not count", []string{"dave", "grace"}, ReasonInsufficientApprovals, 1},
		{"initiator does not count", []string{"dave", "backend"}, ReasonInsufficientApprovals, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Authorize(rules, st, w.reg, req, w.approveReq(t, req, tc.approvals...), t0)
			if d.Reason != tc.reason || d.Collected != tc.collected || d.Approved != (tc.reason == "") {
				t.Fatalf("decision %+v", d)
			}
			if d.Tally == nil || d.Tally.Required != 2 {
				t.Fatalf("tally %+v", d.Tally)
			}
		})
	}
	t.Run("rejection cancels", func(t *testing.T) {
		a := w.approveReq(t, req, "dave", "erin", "alice")
		a = append(a, w.sign(t, "frank", req.ID, req.PayloadHash, 2, t0.Add(time.Hour)))
		d := Authorize(rules, st, w.reg, req, a, t0)
		if d.Approved || !errors.Is(d.Err(), ErrRejected) || d.Reason != ReasonRejected {
			t.Fatalf("decision %+v", d)
		}
	})
	t.Run("approvals for another payload", func(t *testing.T) {
		other := req
		other.PayloadHash[0] ^= 1
		d := Authorize(rules, st, w.reg, other, w.approveReq(t, req, "dave", "erin"), t0)
		if d.Approved || !errors.Is(d.Err(), ErrInsufficientApprovals) {
			t.Fatalf("decision %+v", d)
		}
	})
	t.Run("expired approvals", func(t *testing.T) {
		d := Authorize(rules, st, w.reg, req, w.approveReq(t, req, "dave", "erin"), t0.Add(31*24*time.Hour))
		if d.Approved {
			t.Fatalf("approved with expired approvals: %+v", d)
		}
	})
	t.Run("locked beats approvals", func(t *testing.T) {
		lk := Change{ID: "lock-1", Kind: ChangeLock}
		ls, _, err := st.Apply(rules, w.reg, lk, w.approveChange(t, lk, "grace"), nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		d := Authorize(rules, ls, w.reg, req, w.approveReq(t, req, "dave", "erin"), t0)
		if d.Approved || !errors.Is(d.Err(), ErrLocked) {
			t.Fatalf("decision %+v", d)
		}
	})
}

func TestAlwaysColdAndMaxWindow(t *testing.T) {
	b := `version: 1
assets: {ETH: {decimals: 18}}
allowlist: {cooling_off: 1h, approvals: 1, roles: [admin]}
lock: {unlock_delay: 0s}
wallets:
  - name: vault
    wallets: [w1]
    asset: ETH
    class: hot
    allowlist_required: false
    limits: {per_tx: "1", max_fee: "0.01", velocity: {window: 72h, max: "2"}}
    route: {always_cold: true}
    approvals: [{min: "0", required: 1, roles: [admin]}]
`
	r, err := ParseRules([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	req := ethReq(t, "r", "w1", dest1, "0.1")
	if d := Evaluate(r, State{}, req, t0); !d.Allowed || d.Route != RouteCold {
		t.Fatalf("always_cold: %+v", d)
	}
	if r.MaxWindow().Hours() != 72 {
		t.Fatalf("MaxWindow = %v", r.MaxWindow())
	}
}

// TestVelocityOverflow: a window whose sum leaves 2^256-1 is over any limit,
// and the detail says so instead of wrapping around.
func TestVelocityOverflow(t *testing.T) {
	rules := loadRules(t)
	st, err := NewState(nil, nil, []Spend{
		{Wallet: "eth-hot-1", Asset: "ETH", Amount: amount.Max(), At: t0.Add(-time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	st.allow = allowState(t).allow
	d := Evaluate(rules, st, ethReq(t, "r", "eth-hot-1", dest1, "1"), t0)
	if d.Reason != ReasonVelocityExceeded || !strings.Contains(d.Detail, "more than "+amount.Max().Format(18)+" ETH") {
		t.Fatalf("decision %+v", d)
	}
}

// TestNoteInTheIntent: a note is part of what the initiator signs (another
// note, another intent), a withdrawal without one hashes as before notes
// existed, and ValidNote refuses what could hide text from an operator.
func TestNoteInTheIntent(t *testing.T) {
	w := Withdrawal{Wallet: "hot", Asset: "ETH", To: "0x00000000000000000000000000000000000000aA", Amount: amount.FromUint64(7)}
	// The hash of the note-less encoding, as signed before notes existed.
	legacy := sha256.Sum256([]byte(`custody/initiation/v1` + "\x00" + `{"id":"wd","wallet":"hot","asset":"ETH","to":"0x00000000000000000000000000000000000000aA","amount":"7"}`))
	if got := w.IntentHash("wd"); got != quorum.Hash(legacy) {
		t.Fatalf("a withdrawal without a note hashes %s, want the legacy %x", got, legacy)
	}
	n1, n2 := w, w
	n1.Note, n2.Note = "payout 42", "payout 43"
	if n1.IntentHash("wd") == w.IntentHash("wd") || n1.IntentHash("wd") == n2.IntentHash("wd") {
		t.Fatal("the note does not change the intent")
	}
	for _, ok := range []string{"", "payout #42 for user 9001 – Zürich", strings.Repeat("x", MaxNote)} {
		if err := ValidNote(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{strings.Repeat("x", MaxNote+1), "a\nb", "tab\there", "rtl\u202eoverride", "zero\u200bwidth", "nbsp\u00a0", "\xff"} {
		if err := ValidNote(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
