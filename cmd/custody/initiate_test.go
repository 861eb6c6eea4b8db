package main

import (
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// TestInitiate: the create body custody initiate prints carries an
// initiation the backend's device signed over exactly the withdrawal's
// intent (base units from the asset's decimals, the note included); bad
// input exits non-zero with nothing printed.
func TestInitiate(t *testing.T) {
	t.Setenv(operatorPassphraseEnv, "")
	kf := filepath.Join(t.TempDir(), "device.key")
	code, out, _ := runCLI("operator", "keygen", "--out", kf, "-o", "json")
	var dev operatorDevice
	if code != 0 || json.Unmarshal([]byte(out), &dev) != nil {
		t.Fatalf("keygen: %d %q", code, out)
	}
	pub, err := hex.DecodeString(dev.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	device := quorum.Device{ID: dev.DeviceID, Kind: dev.Kind, PublicKey: pub}
	to := "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
	code, out, errOut := runCLI("initiate", "--cluster", "c1", "--id", "wd-1", "--wallet", "hot", "--asset", "TKN", "--decimals", "6",
		"--to", to, "--amount", "2.5", "--note", "payout 7", "--key", kf)
	if code != 0 {
		t.Fatalf("initiate: %d %s", code, errOut)
	}
	var b initiateBody
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatal(err)
	}
	base, _ := amount.ParseUnits("2.5", 6)
	w := policy.Withdrawal{Wallet: "hot", Asset: "TKN", To: to, Amount: base, Note: "payout 7"}
	a := b.Initiation
	digest, err := a.Statement.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if a.ClusterID != "c1" || a.RequestID != "wd-1" || a.Decision != quorum.Initiate || a.PayloadHash != w.IntentHash("wd-1") || a.DeviceID != dev.DeviceID {
		t.Fatalf("the statement is not the intent's: %+v", a.Statement)
	}
	if err := device.VerifyDigest(digest, a.Signature); err != nil {
		t.Fatalf("the initiation does not verify: %v", err)
	}
	if b.Amount != "2.5" || b.Note != "payout 7" || b.ID != "wd-1" {
		t.Fatalf("body %+v", b)
	}
	for _, bad := range [][]string{
		{"--asset", "TKN"}, // a token without --decimals
		{"--asset", "ETH", "--amount", "1.0000000000000000001"}, // too many decimals
		{"--asset", "ETH", "--amount", "-1"},
		{"--asset", "ETH", "--note", "bad\x00note"},
		{"--asset", "ETH", "--key", filepath.Join(t.TempDir(), "missing.key")},
	} {
		args := []string{"initiate", "--cluster", "c1", "--id", "wd-2", "--wallet", "hot", "--to", to, "--amount", "1", "--key", kf}
		args = append(args, bad...)
		if code, out, errOut := runCLI(args...); code == 0 || out != "" || !strings.Contains(errOut, "custody:") {
			t.Errorf("%v: exit %d, out %q, err %q", bad, code, out, errOut)
		}
	}
}
