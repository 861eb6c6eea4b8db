package main

import (
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

// TestOperatorCLI walks an operator's path: keygen, show, sign, verify,
// and the dry run counting the signed approvals against a registry.
func TestOperatorCLI(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(operatorPassphraseEnv, "")
	var devs []quorum.Device
	var keys []string
	for _, name := range []string{"alice", "bob", "dave"} {
		kf := filepath.Join(dir, name+".key")
		code, out, errOut := runCLI("operator", "keygen", "--out", kf, "-o", "json")
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
		code, out, _ = runCLI("operator", "show", "--key", kf, "-o", "json")
		var shown operatorDevice
		if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.DeviceID != dev.DeviceID {
			t.Fatalf("show: %d %q", code, out)
		}
		pub, _ := quorum.ParseHash(dev.PublicKey) // 32 bytes, same shape as a hash
		devs = append(devs, quorum.Device{OperatorID: name, Kind: quorum.DeviceEd25519, PublicKey: pub[:]})
		keys = append(keys, kf)
	}
	code, _, errOut := runCLI("operator", "keygen", "--out", keys[0])
	oneLineErr(t, code, errOut, "exists")
	code, _, errOut = runCLI("operator", "keygen", "--out", filepath.Join(dir, "x.key"), "--seal")
	oneLineErr(t, code, errOut, operatorPassphraseEnv)

	reg, err := quorum.NewRegistry("prod-1", 2, []quorum.Operator{
		{ID: "alice", Name: "Alice", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleAdmin}, Status: quorum.StatusActive},
		{ID: "bob", Name: "Bob", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleAdmin}, Status: quorum.StatusActive},
		{ID: "dave", Name: "Dave", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleApprover}, Status: quorum.StatusActive},
	}, devs)
	if err != nil {
		t.Fatal(err)
	}
	regJSON, _ := json.Marshal(reg)
	regFile := writeTemp(t, "registry.json", string(regJSON))

	stmt := []string{"--cluster", "prod-1", "--request", "wd-1000", "--payload-hash", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "--expiry", "2026-11-24T12:00:00Z"}
	var approvals []json.RawMessage
	for i, kf := range keys {
		code, out, errOut := runCLI(append([]string{"operator", "sign", "--key", kf}, stmt...)...)
		if code != 0 {
			t.Fatalf("sign: %d %s", code, errOut)
		}
		approvals = append(approvals, json.RawMessage(out))
		af := writeTemp(t, "a.json", out)
		pub := devs[i].PublicKey
		code, vout, errOut := runCLI("operator", "verify", "--approval", af, "--public-key", quorum.Hash(pub).String())
		if code != 0 || !strings.HasPrefix(vout, "ok: approve of wd-1000") {
			t.Fatalf("verify: %d %q %q", code, vout, errOut)
		}
		// Another device's key must not verify it.
		other := devs[(i+1)%len(devs)].PublicKey
		code, _, errOut = runCLI("operator", "verify", "--approval", af, "--public-key", quorum.Hash(other).String())
		oneLineErr(t, code, errOut, "device")
		// A tampered request ID must not verify.
		tampered := writeTemp(t, "t.json", strings.Replace(out, `"wd-1000"`, `"wd-1001"`, 1))
		code, _, errOut = runCLI("operator", "verify", "--approval", tampered, "--public-key", quorum.Hash(pub).String())
		oneLineErr(t, code, errOut, "signature")
	}
	all, _ := json.Marshal(approvals)
	apFile := writeTemp(t, "approvals.json", string(all))
	code, out, errOut := runCLI("policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", policyRequestFile,
		"--registry", regFile, "--approvals", apFile, "-o", "json")
	var d policy.Decision
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || !d.Approved || d.Collected != 3 {
		t.Fatalf("dry run with approvals: exit %d %q %q", code, out, errOut)
	}
	// Only dave's approval: one of two.
	one, _ := json.Marshal(approvals[2:])
	apFile = writeTemp(t, "approvals.json", string(one))
	code, out, errOut = runCLI("policy", "test", "--rules", policyRulesFile, "--state", policyExampleState, "--request", policyRequestFile,
		"--registry", regFile, "--approvals", apFile)
	oneLineErr(t, code, errOut, "insufficient_approvals")
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
		code, _, errOut := runCLI(args...)
		if code != 1 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("sign %v: exit %d %q", bad, code, errOut)
		}
	}
}

// The digest command reproduces the committed test vectors.
func TestOperatorDigestVectors(t *testing.T) {
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
		code, out, errOut := runCLI("operator", "digest", "--cluster", tc.ClusterID, "--request", tc.RequestID,
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

// TestOperatorPKCS11 enrolls a P-256 key made inside a SoftHSM token,
// signs an approval with it through the token, and verifies it.
func TestOperatorPKCS11(t *testing.T) {
	cfg := softhsmtest.NewToken(t, "operator")
	pinFile := writeTemp(t, "pin", cfg.PIN+"\n")
	t.Setenv(hsmPINEnv, "")
	t.Setenv(hsmPINFileEnv, "")
	sel := []string{"--pkcs11", "--module", cfg.Module, "--token-label", cfg.TokenLabel, "--pin-file", pinFile, "--key-label", "approver-key"}
	code, out, errOut := runCLI(append([]string{"operator", "keygen", "-o", "json"}, sel...)...)
	var dev operatorDevice
	if code != 0 || json.Unmarshal([]byte(out), &dev) != nil || dev.Kind != quorum.DeviceP256 || len(dev.PublicKey) != 130 {
		t.Fatalf("pkcs11 keygen: %d %q %q", code, out, errOut)
	}
	if strings.Contains(out+errOut, cfg.PIN) {
		t.Fatal("output contains the PIN")
	}
	code, out, errOut = runCLI(append([]string{"operator", "sign", "--cluster", "prod-1", "--request", "wd-7",
		"--payload-hash", strings.Repeat("ab", 32), "--decision", "reject"}, sel...)...)
	if code != 0 {
		t.Fatalf("pkcs11 sign: %d %q", code, errOut)
	}
	var a quorum.Approval
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.DeviceID != dev.DeviceID || a.Decision != quorum.Reject {
		t.Fatalf("approval %q: %v", out, err)
	}
	af := writeTemp(t, "a.json", out)
	code, _, errOut = runCLI("operator", "verify", "--approval", af, "--public-key", dev.PublicKey, "--kind", "ecdsa-p256")
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
	bad := writeTemp(t, "badpin", "000000\n")
	sel[6] = bad
	code, out, errOut = runCLI(append([]string{"operator", "show"}, sel...)...)
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("wrong PIN: %d %q %q", code, out, errOut)
	}
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }
