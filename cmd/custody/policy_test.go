package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/policy"
)

const (
	policyRulesFile    = "../../policy/testdata/rules.yaml"
	policyExampleState = "../../policy/testdata/state.yaml"
	policyRequestFile  = "../../policy/testdata/request.json"
)

func TestPolicyCheckCLI(t *testing.T) {
	b, err := os.ReadFile(policyRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := policy.ParseRules(b)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("policy", "check", "--rules", policyRulesFile)
	if code != 0 || !strings.Contains(out, rules.Hash()) {
		t.Fatalf("exit %d out %q err %q", code, out, errOut)
	}
	code, out, _ = runCLI("policy", "check", "--rules", policyRulesFile, "-o", "json")
	var rep policyCheckReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.RulesHash != rules.Hash() || len(rep.Rules) != 4 {
		t.Fatalf("json check: exit %d %q", code, out)
	}

	bad := writeTemp(t, "bad.yaml", strings.Replace(string(b), `per_tx: "0.5"`, `per_tx: "0.5"`+"\n      per_week: 3", 1))
	code, _, errOut = runCLI("policy", "check", "--rules", bad)
	oneLineErr(t, code, errOut, "wallets[3].limits.per_week")
	code, _, errOut = runCLI("policy", "check", "--rules", filepath.Join(t.TempDir(), "missing.yaml"))
	oneLineErr(t, code, errOut, "no such file")
	code, _, errOut = runCLI("policy", "check")
	oneLineErr(t, code, errOut, "rules")
}

func TestPolicyTestCLI(t *testing.T) {
	code, out, errOut := runCLI("policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", policyRequestFile, "-o", "json")
	var d policy.Decision
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
		t.Fatalf("exit %d out %q err %q", code, out, errOut)
	}
	if !d.Allowed || d.Rule != "eth-hot" || d.Route != policy.RouteHot || d.Required != 2 {
		t.Fatalf("decision %+v", d)
	}
	req, _ := os.ReadFile(policyRequestFile)
	cases := []struct{ name, from, to, reason string }{
		{"locked wallet", `"eth-hot-1"`, `"eth-hot-2"`, "locked"},
		{"velocity", `"2500000000000000000"`, `"6000000000000000000"`, "velocity_exceeded"},
		{"not allowlisted", `0x52908400098527886E0F7030069857D2E4169EE7`, `0x0000000000000000000000000000000000000001`, "not_allowlisted"},
		{"cooling off", `0x52908400098527886E0F7030069857D2E4169EE7`, `0x8617E340B3D01FA5F11F306F4090FD50E238070D`, "cooling_off"},
		{"no rule", `"ETH"`, `"DOGE"`, "no_rule"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTemp(t, "req.json", strings.Replace(string(req), tc.from, tc.to, 1))
			code, out, errOut := runCLI("policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", p)
			oneLineErr(t, code, errOut, tc.reason)
			if !strings.Contains(out, "DENIED ("+tc.reason+")") {
				t.Fatalf("stdout %q", out)
			}
		})
	}
	for name, body := range map[string]string{
		"amount as number": strings.Replace(string(req), `"2500000000000000000"`, `2500000000000000000`, 1),
		"unknown field":    strings.Replace(string(req), `"id"`, `"idd": 1, "id"`, 1),
		"bad hash":         strings.Replace(string(req), `"9f86`, `"zz86`, 1),
	} {
		p := writeTemp(t, "req.json", body)
		code, _, errOut := runCLI("policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", p)
		if code != 1 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: exit %d stderr %q", name, code, errOut)
		}
	}
	noNow := writeTemp(t, "state.yaml", "allowlist: []\n")
	code, _, errOut = runCLI("policy", "test", "--rules", policyRulesFile, "--state", noNow, "--request", policyRequestFile)
	oneLineErr(t, code, errOut, "now")
}
