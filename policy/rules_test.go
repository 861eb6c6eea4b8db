package policy

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/custody-dev/custody/amount/amounttest"
)

func loadRules(t testing.TB) *Rules {
	t.Helper()
	b, err := os.ReadFile("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRules(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRulesExample(t *testing.T) {
	r := loadRules(t)
	rule, ok := r.Match("eth-hot-2", "ETH")
	if !ok || rule.Name != "eth-hot" {
		t.Fatalf("match eth-hot-2/ETH: %v %+v", ok, rule)
	}
	if got := rule.Limits.PerTx.String(); got != "10000000000000000000" {
		t.Fatalf("per_tx = %s", got)
	}
	usdc, _ := r.Match("eth-hot-1", "ERC20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48")
	if got := usdc.Limits.PerTx.String(); got != "250000500000" {
		t.Fatalf("usdc per_tx = %s", got)
	}
	if !rule.AllowlistRequired {
		t.Fatal("allowlist_required must default to true")
	}
	if ops, _ := r.Match("btc-ops-1", "BTC"); ops.AllowlistRequired {
		t.Fatal("allowlist_required: false ignored")
	}
	if _, ok := r.Match("eth-hot-1", "BTC"); ok {
		t.Fatal("matched an undeclared wallet/asset pair")
	}
	if len(r.Hash()) != 64 {
		t.Fatalf("hash %q", r.Hash())
	}
}

// The hash identifies the meaning, not the spelling.
func TestRulesHashCanonical(t *testing.T) {
	a := loadRules(t)
	b, _ := os.ReadFile("testdata/rules.yaml")
	s := string(b)
	// Quoted or plain is spelling; "10.000" would be a second spelling of
	// the number itself, which the amount grammar refuses.
	s = strings.Replace(s, `per_tx: "10"`, `per_tx: 10`, 1)
	s = strings.Replace(s, "# Example", "# Reformatted example", 1)
	s = strings.Replace(s, "roles: [approver, admin]}", "roles: [admin, approver]}", 1)
	s = strings.Replace(s, "eth-hot: [eth-hot-1, eth-hot-2]", "eth-hot: [eth-hot-2, eth-hot-1]", 1)
	c, err := ParseRules([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash() != c.Hash() {
		t.Fatal("equivalent rules hash differently")
	}
	s = strings.Replace(s, `per_tx: 10`, `per_tx: 10.001`, 1)
	d, err := ParseRules([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash() == d.Hash() {
		t.Fatal("different limits hash the same")
	}
}

func TestParseRulesErrors(t *testing.T) {
	base, _ := os.ReadFile("testdata/rules.yaml")
	tests := []struct {
		name, from, to, want string
	}{
		{"unknown top-level key", "version: 1", "version: 1\nextra: 2", "extra (line"},
		{"unknown nested key", `per_tx: "0.5"`, "per_tx: \"0.5\"\n      per_day: 1", "wallets[3].limits.per_day"},
		{"bad per_tx", `per_tx: "250000.5"`, `per_tx: "1e5"`, "wallets[1].limits.per_tx"},
		{"too many decimals", `per_tx: "0.5"`, `per_tx: "0.000000001"`, "wallets[3].limits.per_tx"},
		{"second spelling", `per_tx: "250000.5"`, `per_tx: "250000.50"`, `wallets[1].limits.per_tx (line 42): amount: malformed: "250000.50": trailing zero`},
		{"negative amount", `per_tx: "0.5"`, `per_tx: "-1"`, "wallets[3].limits.per_tx"},
		{"zero per_tx", `per_tx: "0.5"`, `per_tx: "0"`, "wallets[3].limits.per_tx: must be positive"},
		{"bad version", "version: 1", "version: 2", "version"},
		{"version as string", "version: 1", `version: "1"`, "version"},
		{"unknown class", "class: cold", "class: lukewarm", "wallets[2].class"},
		{"unknown role", "roles: [admin]}\n\n  - name: btc-ops", "roles: [root]}\n\n  - name: btc-ops", "wallets[2].approvals[0].roles[0]"},
		{"auditor cannot approve", "roles: [approver]}", "roles: [auditor]}", "wallets[3].approvals[0].roles[0]"},
		{"first tier not zero", `- {min: "0", required: 2, roles: [admin]}`, `- {min: "1", required: 2, roles: [admin]}`, "wallets[2].approvals[0].min"},
		{"tiers out of order", `{min: "5", required: 3`, `{min: "0.5", required: 3`, "wallets[0].approvals[2].min"},
		{"fewer approvals for more", `{min: "5", required: 3`, `{min: "5", required: 1`, "wallets[0].approvals[2].required"},
		{"undeclared asset", "asset: BTC\n    class: cold", "asset: DOGE\n    class: cold", "wallets[2]"},
		{"unknown group", "groups: [eth-hot]\n    asset: ETH", "groups: [eth-cold]\n    asset: ETH", "wallets[0].groups[0]"},
		{"overlap", "wallets: [btc-ops-1]", "wallets: [btc-cold-1]", "already covered"},
		{"cold with route", "class: cold\n", "class: cold\n    route: {cold_above: \"1\"}\n", "wallets[2].route"},
		{"missing approvals", "    approvals:\n      - {min: \"0\", required: 1, roles: [approver]}\n", "", "wallets[3].approvals (line"},
		{"alias", "groups:\n  eth-hot: [eth-hot-1, eth-hot-2]", "groups:\n  eth-hot: &g [eth-hot-1, eth-hot-2]\n  again: *g", "aliases"},
		{"duplicate key", "version: 1", "version: 1\nversion: 1", "version"},
		{"velocity below per_tx", `max: "50"`, `max: "5"`, "wallets[0].limits.velocity.max"},
		{"bad duration", "cooling_off: 24h", "cooling_off: tomorrow", "allowlist.cooling_off"},
		{"negative duration", "unlock_delay: 1h", "unlock_delay: -1h", "lock.unlock_delay"},
		{"allowlist approvals zero", "approvals: 2\n", "approvals: 0\n", "allowlist.approvals"},
		{"bool as string", "allowlist_required: false", "allowlist_required: \"no\"", "wallets[3].allowlist_required"},
		{"second document", "version: 1", "version: 1\n---\nversion: 1", "one YAML document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := string(base)
			if !strings.Contains(s, tc.from) {
				t.Fatalf("test bug: %q not in base", tc.from)
			}
			s = strings.Replace(s, tc.from, tc.to, 1)
			_, err := ParseRules([]byte(s))
			if !errors.Is(err, ErrInvalidRules) {
				t.Fatalf("err = %v, want ErrInvalidRules", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	for _, in := range []string{"", "[]", "null", "version: 1", ": :", strings.Repeat("a", MaxRulesSize+1)} {
		if _, err := ParseRules([]byte(in)); !errors.Is(err, ErrInvalidRules) {
			t.Errorf("ParseRules(%.20q) = %v", in, err)
		}
	}
}

// TestRulesAmountsTable runs the shared amount table through a rules file,
// with the amount quoted and, where YAML allows, plain: the same input is
// accepted with the same value, or refused with the same sentinel, as
// amount.ParseUnits says.
func TestRulesAmountsTable(t *testing.T) {
	plainOK := regexp.MustCompile(`^[0-9A-Za-z.+_,-]+$`)
	for _, c := range amounttest.Units {
		spellings := []string{strconv.Quote(c.In)}
		if plainOK.MatchString(c.In) {
			spellings = append(spellings, c.In)
		}
		for _, v := range spellings {
			doc := fmt.Sprintf(`version: 1
assets: {T: {decimals: %d}}
allowlist: {cooling_off: 1h, approvals: 1, roles: [admin]}
lock: {unlock_delay: 0s}
wallets:
  - name: w
    wallets: [w1]
    asset: T
    class: hot
    limits: {per_tx: "1", max_fee: "1"}
    route:
      cold_above: %s
    approvals: [{min: "0", required: 1, roles: [admin]}]
`, c.Decimals, v)
			r, err := ParseRules([]byte(doc))
			if c.Err != nil {
				if !errors.Is(err, c.Err) || !errors.Is(err, ErrInvalidRules) {
					t.Errorf("cold_above: %s (decimals %d): error %v, want %v", v, c.Decimals, err, c.Err)
				} else if !strings.Contains(err.Error(), "wallets[0].route.cold_above (line 12)") {
					t.Errorf("cold_above: %s: error %v does not name the path", v, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("cold_above: %s (decimals %d): %v", v, c.Decimals, err)
				continue
			}
			if got := r.Wallets[0].Route.ColdAbove.String(); got != c.Base {
				t.Errorf("cold_above: %s (decimals %d) = %s base units, want %s", v, c.Decimals, got, c.Base)
			}
		}
	}
}
