package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
)

// TestFeeCaps (SECURITY 30): a request whose maximum fee exceeds its rule's
// cap is denied; for a native-asset rule the maximum fee counts toward the
// per-transaction limit and the velocity window (Charge), for a token rule
// whose fees are paid in ETH it does not count toward the token's limits.
func TestFeeCaps(t *testing.T) {
	rules := loadRules(t)
	base := allowState(t)
	withFee := func(r Request, fee string) Request { r.MaxFee = units(t, fee, 18); return r }

	// eth-hot: per_tx 10 ETH, max_fee 0.01 ETH, velocity 50 ETH / 24h.
	for _, c := range []struct {
		name   string
		req    Request
		reason Reason
	}{
		{"fee at the cap", withFee(ethReq(t, "r", "eth-hot-1", dest1, "1"), "0.01"), ""},
		{"fee one wei over the cap", withFee(ethReq(t, "r", "eth-hot-1", dest1, "1"), "0.010000000000000001"), ReasonFeeOverCap},
		{"amount at per_tx, no fee", ethReq(t, "r", "eth-hot-1", dest1, "10"), ""},
		{"amount at per_tx plus a fee", withFee(ethReq(t, "r", "eth-hot-1", dest1, "10"), "0.000000001"), ReasonOverLimit},
		{"amount plus fee at per_tx", withFee(ethReq(t, "r", "eth-hot-1", dest1, "9.99"), "0.01"), ""},
	} {
		d := Evaluate(rules, base, c.req, t0)
		if d.Reason != c.reason {
			t.Errorf("%s: reason %q (%s), want %q", c.name, d.Reason, d.Detail, c.reason)
		}
		if c.reason == ReasonFeeOverCap && !errors.Is(d.Err(), ErrFeeOverCap) {
			t.Errorf("%s: %v does not wrap ErrFeeOverCap", c.name, d.Err())
		}
		if c.reason == ReasonOverLimit && !strings.Contains(d.Detail, "maximum fee") {
			t.Errorf("%s: detail %q does not say the fee counted", c.name, d.Detail)
		}
	}

	// Velocity: 45 ETH spent in the window; 4.99 + 0.01 fee = 5 fits the
	// 50 ETH max, 4.995 + 0.01 does not.
	spent := base.RecordSpend(Spend{Wallet: "eth-hot-1", Asset: "ETH", Amount: units(t, "45", 18), At: t0.Add(-time.Hour)}, 24*time.Hour)
	if d := Evaluate(rules, spent, withFee(ethReq(t, "r", "eth-hot-1", dest1, "4.99"), "0.01"), t0); !d.Allowed {
		t.Errorf("4.99 + 0.01 fee after 45: %s", d.Detail)
	}
	if d := Evaluate(rules, spent, withFee(ethReq(t, "r", "eth-hot-1", dest1, "4.995"), "0.01"), t0); d.Reason != ReasonVelocityExceeded {
		t.Errorf("4.995 + 0.01 fee after 45: %q, want velocity_exceeded", d.Reason)
	}
	if got := rules.Charge(withFee(ethReq(t, "r", "eth-hot-1", dest1, "1"), "0.01")); got != units(t, "1.01", 18) {
		t.Errorf("charge of 1 ETH + 0.01 fee = %s", got)
	}

	// A USDC rule pays fees in ETH: the fee is capped (0.01 ETH) but does not
	// count toward the token's limits.
	usdc := Request{ID: "u1", Withdrawal: Withdrawal{Wallet: "eth-hot-2", Asset: "ERC20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
		Chain: "eth", Network: "mainnet", To: dest1, Amount: units(t, "250000.5", 6), MaxFee: units(t, "0.01", 18)}, Initiator: "backend"}
	usdcAllow, _ := NewState([]AllowlistEntry{{Wallet: "eth-hot-2", Chain: "eth", Network: "mainnet", Address: dest1, ActiveAt: t0.Add(-time.Second)}}, nil, nil)
	if d := Evaluate(rules, usdcAllow, usdc, t0); !d.Allowed {
		t.Errorf("USDC at per_tx with a fee in ETH: %s", d.Detail)
	}
	if got := rules.Charge(usdc); got != usdc.Amount {
		t.Errorf("USDC charge %s, want the amount alone", got)
	}
	usdc.MaxFee = units(t, "0.02", 18)
	if d := Evaluate(rules, usdcAllow, usdc, t0); d.Reason != ReasonFeeOverCap {
		t.Errorf("USDC with a 0.02 ETH fee: %q, want fee_over_cap", d.Reason)
	}
}

// TestFeeCapRequired: a rule without limits.max_fee, with a zero cap or
// with an undeclared fee asset is refused, naming the path.
func TestFeeCapRequired(t *testing.T) {
	doc := func(limits, extra string) string {
		return "version: 1\nassets: {ETH: {decimals: 18}}\nallowlist: {cooling_off: 1h, approvals: 1, roles: [admin]}\nlock: {unlock_delay: 0s}\n" +
			"wallets:\n  - {name: w, wallets: [w1], asset: ETH" + extra + ", class: hot, limits: " + limits + ", approvals: [{min: \"0\", required: 1, roles: [admin]}]}\n"
	}
	for name, c := range map[string]struct{ doc, want string }{
		"missing":    {doc(`{per_tx: "1"}`, ""), "max_fee"},
		"zero":       {doc(`{per_tx: "1", max_fee: "0"}`, ""), "wallets[0].limits.max_fee: must be positive"},
		"undeclared": {doc(`{per_tx: "1", max_fee: "1"}`, ", fee_asset: GAS"), `asset "GAS"`},
	} {
		if _, err := ParseRules([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", name, err, c.want)
		}
	}
	if _, err := ParseRules([]byte(doc(`{per_tx: "1", max_fee: "0.5"}`, ""))); err != nil {
		t.Fatal(err)
	}
}

// TestFeeRateCap: limits.max_fee_rate caps the maximum fee per vbyte of a
// request that names its virtual size (members fill it from their parse of
// a Bitcoin payload), exactly (fee <= rate x vsize, no rounding); a request
// without a size is judged on max_fee alone, which still applies.
func TestFeeRateCap(t *testing.T) {
	doc := func(limits string) string {
		return "version: 1\nassets: {BTC: {decimals: 8}}\nallowlist: {cooling_off: 1h, approvals: 1, roles: [admin]}\nlock: {unlock_delay: 0s}\n" +
			"wallets:\n  - {name: b, wallets: [btc-hot-1], asset: BTC, class: hot, allowlist_required: false, limits: " + limits +
			", approvals: [{min: \"0\", required: 1, roles: [admin]}]}\n"
	}
	rules, err := ParseRules([]byte(doc(`{per_tx: "1", max_fee: "0.001", max_fee_rate: 20}`)))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := rules.Match("btc-hot-1", "BTC"); r.Limits.MaxFeeRate != 20 {
		t.Fatalf("max_fee_rate %d", r.Limits.MaxFeeRate)
	}
	st, _ := NewState(nil, nil, nil)
	req := func(fee uint64, vsize int64) Request {
		return Request{ID: "b1", Withdrawal: Withdrawal{Wallet: "btc-hot-1", Asset: "BTC", Chain: "btc", Network: "regtest",
			To: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", Amount: units(t, "0.1", 8), MaxFee: amount.FromUint64(fee)},
			Initiator: "backend", VSize: vsize}
	}
	for _, c := range []struct {
		name   string
		req    Request
		reason Reason
	}{
		{"at the rate cap", req(20*141, 141), ""},
		{"one satoshi over the rate cap", req(20*141+1, 141), ReasonFeeRateOverCap},
		{"under the rate, over the absolute cap", req(100_001, 10_000), ReasonFeeOverCap},
		{"size unknown: absolute cap only", req(100_000, 0), ""},
		{"negative size", req(1, -1), ReasonInvalidRequest},
	} {
		d := Evaluate(rules, st, c.req, t0)
		if d.Reason != c.reason {
			t.Errorf("%s: reason %q (%s), want %q", c.name, d.Reason, d.Detail, c.reason)
		}
		if c.reason == ReasonFeeRateOverCap && (!errors.Is(d.Err(), ErrFeeRateOverCap) || !strings.Contains(d.Detail, "141 vbytes")) {
			t.Errorf("%s: %v", c.name, d.Err())
		}
	}

	// Optional, positive, an integer; absent leaves the rules hash as it
	// was before the field existed.
	for name, limits := range map[string]string{
		"zero":     `{per_tx: "1", max_fee: "0.001", max_fee_rate: 0}`,
		"negative": `{per_tx: "1", max_fee: "0.001", max_fee_rate: -5}`,
		"decimal":  `{per_tx: "1", max_fee: "0.001", max_fee_rate: 2.5}`,
		"string":   `{per_tx: "1", max_fee: "0.001", max_fee_rate: "20"}`,
	} {
		if _, err := ParseRules([]byte(doc(limits))); err == nil || !strings.Contains(err.Error(), "max_fee_rate") {
			t.Errorf("%s: %v, want an error naming max_fee_rate", name, err)
		}
	}
	plain, err := ParseRules([]byte(doc(`{per_tx: "1", max_fee: "0.001"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain.CanonicalJSON()), "max_fee_rate") || plain.Hash() == rules.Hash() {
		t.Fatalf("canonical JSON without a rate cap: %s", plain.CanonicalJSON())
	}
}
