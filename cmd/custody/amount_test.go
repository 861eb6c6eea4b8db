package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/custody-dev/custody/amount/amounttest"
	"github.com/custody-dev/custody/policy"
)

// TestPolicyCheckAmountsCLI runs the shared amount table through the CLI's
// front door for whole-unit amounts, a rules file given to `policy check`:
// accepted exactly when amount.ParseUnits accepts, refused with the amount
// package's message otherwise.
func TestPolicyCheckAmountsCLI(t *testing.T) {
	for _, c := range amounttest.Units {
		rules := fmt.Sprintf(`version: 1
assets: {T: {decimals: %d}}
allowlist: {cooling_off: 1h, approvals: 1, roles: [admin]}
lock: {unlock_delay: 0s}
wallets:
  - {name: w, wallets: [w1], asset: T, class: hot, limits: {per_tx: "1", max_fee: "1"}, route: {cold_above: %s}, approvals: [{min: "0", required: 1, roles: [admin]}]}
`, c.Decimals, strconv.Quote(c.In))
		p := writeTemp(t, "rules.yaml", rules)
		code, out, errOut := runCLI("policy", "check", "--rules", p, "-o", "json")
		if c.Err != nil {
			oneLineErr(t, code, errOut, c.Err.Error())
			if !strings.Contains(errOut, "wallets[0].route.cold_above") {
				t.Errorf("%q: stderr %q does not name the path", c.In, errOut)
			}
			continue
		}
		want, err := policy.ParseRules([]byte(rules))
		if err != nil {
			t.Fatalf("%q: %v", c.In, err)
		}
		var rep policyCheckReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.RulesHash != want.Hash() {
			t.Errorf("%q (decimals %d): exit %d out %q err %q", c.In, c.Decimals, code, out, errOut)
		}
	}
}

// TestPolicyTestAmountsCLI runs the shared base-unit table through the
// CLI's front door for base units, the request file of `policy test`.
func TestPolicyTestAmountsCLI(t *testing.T) {
	req, err := os.ReadFile(policyRequestFile)
	if err != nil {
		t.Fatal(err)
	}
	const from = `"amount": "2500000000000000000"`
	if !strings.Contains(string(req), from) {
		t.Fatalf("test bug: %s not in %s", from, policyRequestFile)
	}
	for _, c := range amounttest.Bases {
		p := writeTemp(t, "req.json", strings.Replace(string(req), from, `"amount": `+strconv.Quote(c.In), 1))
		code, out, errOut := runCLI("policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", p)
		if c.Err != nil {
			oneLineErr(t, code, errOut, c.Err.Error())
			continue
		}
		// Accepted amounts reach policy, which decides (0 is an invalid
		// request, large ones are over the limit); none is a parse error.
		if !strings.Contains(out, "decision:") || strings.Contains(errOut, "amount: ") {
			t.Errorf("%q: exit %d out %q err %q", c.In, code, out, errOut)
		}
	}
}
