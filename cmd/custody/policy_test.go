package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

const (
	policyRulesFile    = "../../policy/testdata/rules.yaml"
	policyExampleState = "../../policy/testdata/state.yaml"
	policyRequestFile  = "../../policy/testdata/request.json"
)

func policyRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// policyOneLineErr checks the failure convention: exit 1 and exactly one
// line on stderr that mentions want.
func policyOneLineErr(t *testing.T, code int, stderr, want string) {
	t.Helper()
	if code != 1 {
		t.Fatalf("exit %d, want 1 (stderr %q)", code, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "custody: ") || !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q, want one line mentioning %q", stderr, want)
	}
}

func policyWrite(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyCheckCLI(t *testing.T) {
	b, err := os.ReadFile(policyRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := policy.ParseRules(b)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := policyRun(t, "policy", "check", "--rules", policyRulesFile)
	if code != 0 || !strings.Contains(out, rules.Hash()) {
		t.Fatalf("exit %d out %q err %q", code, out, errOut)
	}
	code, out, _ = policyRun(t, "policy", "check", "--rules", policyRulesFile, "-o", "json")
	var rep policyCheckReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.RulesHash != rules.Hash() || len(rep.Rules) != 4 {
		t.Fatalf("json check: exit %d %q", code, out)
	}

	bad := policyWrite(t, "bad.yaml", strings.Replace(string(b), `per_tx: "0.5"`, `per_tx: "0.5"`+"\n      per_week: 3", 1))
	code, _, errOut = policyRun(t, "policy", "check", "--rules", bad)
	policyOneLineErr(t, code, errOut, "wallets[3].limits.per_week")
	code, _, errOut = policyRun(t, "policy", "check", "--rules", filepath.Join(t.TempDir(), "missing.yaml"))
	policyOneLineErr(t, code, errOut, "no such file")
	code, _, errOut = policyRun(t, "policy", "check")
	policyOneLineErr(t, code, errOut, "rules")
}

func TestPolicyTestCLI(t *testing.T) {
	code, out, errOut := policyRun(t, "policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", policyRequestFile, "-o", "json")
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
			p := policyWrite(t, "req.json", strings.Replace(string(req), tc.from, tc.to, 1))
			code, out, errOut := policyRun(t, "policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", p)
			policyOneLineErr(t, code, errOut, tc.reason)
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
		p := policyWrite(t, "req.json", body)
		code, _, errOut := policyRun(t, "policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", p)
		if code != 1 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: exit %d stderr %q", name, code, errOut)
		}
	}
	noNow := policyWrite(t, "state.yaml", "allowlist: []\n")
	code, _, errOut = policyRun(t, "policy", "test", "--rules", policyRulesFile, "--state", noNow, "--request", policyRequestFile)
	policyOneLineErr(t, code, errOut, "now")
}

// TestPolicyOperatorCLI walks an operator's path: keygen, show, sign, verify,
// and the dry run counting the signed approvals against a registry.
func TestPolicyOperatorCLI(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(operatorPassphraseEnv, "")
	var devs []quorum.Device
	var keys []string
	for _, name := range []string{"alice", "bob", "dave"} {
		kf := filepath.Join(dir, name+".key")
		code, out, errOut := policyRun(t, "operator", "keygen", "--out", kf, "-o", "json")
		if code != 0 || !strings.Contains(errOut, "not passphrase-protected") {
			t.Fatalf("keygen: exit %d %q %q", code, out, errOut)
		}
		if fi, err := os.Stat(kf); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode: %v %v", fi.Mode(), err)
		}
		var dev operatorDevice
		if err := json.Unmarshal([]byte(out), &dev); err != nil {
			t.Fatal(err)
		}
		code, out, _ = policyRun(t, "operator", "show", "--key", kf, "-o", "json")
		var shown operatorDevice
		if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.DeviceID != dev.DeviceID {
			t.Fatalf("show: %d %q", code, out)
		}
		pub, _ := quorum.ParseHash(dev.PublicKey) // 32 bytes, same shape as a hash
		devs = append(devs, quorum.Device{OperatorID: name, Kind: quorum.DeviceEd25519, PublicKey: pub[:]})
		keys = append(keys, kf)
	}
	code, _, errOut := policyRun(t, "operator", "keygen", "--out", keys[0])
	policyOneLineErr(t, code, errOut, "exists")
	code, _, errOut = policyRun(t, "operator", "keygen", "--out", filepath.Join(dir, "x.key"), "--seal")
	policyOneLineErr(t, code, errOut, operatorPassphraseEnv)

	reg, err := quorum.NewRegistry("prod-1", 2, []quorum.Operator{
		{ID: "alice", Name: "Alice", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleAdmin}, Status: quorum.StatusActive},
		{ID: "bob", Name: "Bob", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleAdmin}, Status: quorum.StatusActive},
		{ID: "dave", Name: "Dave", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleApprover}, Status: quorum.StatusActive},
	}, devs)
	if err != nil {
		t.Fatal(err)
	}
	regJSON, _ := json.Marshal(reg)
	regFile := policyWrite(t, "registry.json", string(regJSON))

	stmt := []string{"--cluster", "prod-1", "--request", "wd-1000", "--payload-hash", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "--expiry", "2026-11-24T12:00:00Z"}
	var approvals []json.RawMessage
	for i, kf := range keys {
		code, out, errOut := policyRun(t, append([]string{"operator", "sign", "--key", kf}, stmt...)...)
		if code != 0 {
			t.Fatalf("sign: %d %s", code, errOut)
		}
		approvals = append(approvals, json.RawMessage(out))
		af := policyWrite(t, "a.json", out)
		pub := devs[i].PublicKey
		code, vout, errOut := policyRun(t, "operator", "verify", "--approval", af, "--public-key", quorum.Hash(pub).String())
		if code != 0 || !strings.HasPrefix(vout, "ok: approve of wd-1000") {
			t.Fatalf("verify: %d %q %q", code, vout, errOut)
		}
		// Another device's key must not verify it.
		other := devs[(i+1)%len(devs)].PublicKey
		code, _, errOut = policyRun(t, "operator", "verify", "--approval", af, "--public-key", quorum.Hash(other).String())
		policyOneLineErr(t, code, errOut, "device")
		// A tampered request ID must not verify.
		tampered := policyWrite(t, "t.json", strings.Replace(out, `"wd-1000"`, `"wd-1001"`, 1))
		code, _, errOut = policyRun(t, "operator", "verify", "--approval", tampered, "--public-key", quorum.Hash(pub).String())
		policyOneLineErr(t, code, errOut, "signature")
	}
	all, _ := json.Marshal(approvals)
	apFile := policyWrite(t, "approvals.json", string(all))
	code, out, errOut := policyRun(t, "policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", policyRequestFile,
		"--registry", regFile, "--approvals", apFile, "-o", "json")
	var d policy.Decision
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || !d.Approved || d.Collected != 3 {
		t.Fatalf("dry run with approvals: exit %d %q %q", code, out, errOut)
	}
	// Only dave's approval: one of two.
	one, _ := json.Marshal(approvals[2:])
	apFile = policyWrite(t, "approvals.json", string(one))
	code, out, errOut = policyRun(t, "policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", policyRequestFile,
		"--registry", regFile, "--approvals", apFile)
	policyOneLineErr(t, code, errOut, "insufficient_approvals")
	if !strings.Contains(out, "WAITING FOR APPROVALS") || !strings.Contains(out, "approvals:  1 of 2") {
		t.Fatalf("stdout %q", out)
	}
	for _, bad := range [][]string{
		{"--payload-hash", "abc"},
		{"--decision", "maybe"},
		{"--expiry", "yesterday"},
		{"--request", "has space"},
	} {
		args := append([]string{"operator", "sign", "--key", keys[0]}, stmt...)
		args = append(args, bad...)
		code, _, errOut := policyRun(t, args...)
		if code != 1 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("sign %v: exit %d %q", bad, code, errOut)
		}
	}
}

// The digest command reproduces the committed test vectors.
func TestPolicyOperatorDigestVectors(t *testing.T) {
	b, err := os.ReadFile("../../quorum/testdata/digest_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Valid []struct {
			ClusterID   string `json:"cluster_id"`
			RequestID   string `json:"request_id"`
			PayloadHash string `json:"payload_hash"`
			Decision    string `json:"decision"`
			ExpiryUnix  int64  `json:"expiry_unix"`
			Digest      string `json:"digest"`
			Encoding    string `json:"encoding"`
		} `json:"valid"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, tc := range v.Valid[:3] {
		code, out, errOut := policyRun(t, "operator", "digest", "--cluster", tc.ClusterID, "--request", tc.RequestID,
			"--payload-hash", tc.PayloadHash, "--decision", tc.Decision, "--expiry", strings.TrimSpace(jsonInt(tc.ExpiryUnix)), "-o", "json")
		var rep digestReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("digest: %d %q %q", code, out, errOut)
		}
		if rep.Digest != tc.Digest || rep.Encoding != tc.Encoding {
			t.Fatalf("digest %s / %s, want %s", rep.Digest, rep.Encoding, tc.Digest)
		}
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

// TestPolicyOperatorPKCS11 enrolls a P-256 key made inside a SoftHSM token,
// signs an approval with it through the token, and verifies it.
func TestPolicyOperatorPKCS11(t *testing.T) {
	cfg := softhsmtest.NewToken(t, "operator")
	pinFile := policyWrite(t, "pin", cfg.PIN+"\n")
	t.Setenv(operatorHSMPINEnv, "")
	sel := []string{"--pkcs11", "--module", cfg.Module, "--token-label", cfg.TokenLabel, "--pin-file", pinFile, "--key-label", "approver-key"}
	code, out, errOut := policyRun(t, append([]string{"operator", "keygen", "-o", "json"}, sel...)...)
	var dev operatorDevice
	if code != 0 || json.Unmarshal([]byte(out), &dev) != nil || dev.Kind != quorum.DeviceP256 || len(dev.PublicKey) != 130 {
		t.Fatalf("pkcs11 keygen: %d %q %q", code, out, errOut)
	}
	if strings.Contains(out+errOut, cfg.PIN) {
		t.Fatal("output contains the PIN")
	}
	code, out, errOut = policyRun(t, append([]string{"operator", "sign", "--cluster", "prod-1", "--request", "wd-7",
		"--payload-hash", strings.Repeat("ab", 32), "--decision", "reject"}, sel...)...)
	if code != 0 {
		t.Fatalf("pkcs11 sign: %d %q", code, errOut)
	}
	var a quorum.Approval
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.DeviceID != dev.DeviceID || a.Decision != quorum.Reject {
		t.Fatalf("approval %q: %v", out, err)
	}
	af := policyWrite(t, "a.json", out)
	code, _, errOut = policyRun(t, "operator", "verify", "--approval", af, "--public-key", dev.PublicKey, "--kind", "ecdsa-p256")
	if code != 0 {
		t.Fatalf("verify P-256 approval: %q", errOut)
	}
	// The same approval counts as a rejection in a registry holding the device.
	pub, _ := hexDecode(dev.PublicKey)
	reg, err := quorum.NewRegistry("prod-1", 1, []quorum.Operator{{ID: "op", Name: "Op", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleAdmin}, Status: quorum.StatusActive}},
		[]quorum.Device{{OperatorID: "op", Kind: quorum.DeviceP256, PublicKey: pub}})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := quorum.ParseHash(strings.Repeat("ab", 32))
	tl := quorum.Count(reg, quorum.Subject{RequestID: "wd-7", PayloadHash: h}, quorum.Requirement{Required: 1, Roles: []quorum.Role{quorum.RoleAdmin}}, []quorum.Approval{a}, a.Expiry.Add(-1))
	if len(tl.Rejections) != 1 {
		t.Fatalf("tally %+v", tl)
	}
	// Wrong PIN: a clear error, nothing printed.
	bad := policyWrite(t, "badpin", "000000\n")
	sel[6] = bad
	code, out, errOut = policyRun(t, append([]string{"operator", "show"}, sel...)...)
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("wrong PIN: %d %q %q", code, out, errOut)
	}
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }
