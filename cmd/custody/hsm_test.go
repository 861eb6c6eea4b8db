package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

// hsmCLIToken makes a test token and a PIN file for it; the returned args
// select it.
func hsmCLIToken(t *testing.T, name string) (hsm.Config, []string) {
	t.Helper()
	cfg := softhsmtest.NewToken(t, name)
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(cfg.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(hsmPINEnv, "")
	t.Setenv(hsmPINFileEnv, "")
	return cfg, []string{"--module", cfg.Module, "--token-label", cfg.TokenLabel, "--pin-file", pinFile}
}

// hsmNoPIN fails the test if any output contains the PIN.
func hsmNoPIN(t *testing.T, pin string, outs ...string) {
	t.Helper()
	for _, o := range outs {
		if strings.Contains(o, pin) {
			t.Fatalf("output contains the PIN:\n%s", o)
		}
	}
}

func hsmInfoJSON(t *testing.T, sel []string) hsmInfoReport {
	t.Helper()
	code, out, errOut := runCLI(append([]string{"hsm", "info", "-o", "json"}, sel...)...)
	if code != 0 {
		t.Fatalf("hsm info: exit %d: %s", code, errOut)
	}
	var rep hsmInfoReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("hsm info JSON: %v\n%s", err, out)
	}
	return rep
}

func TestHSMInfoAndInitKEK(t *testing.T) {
	cfg, sel := hsmCLIToken(t, "cli-info")
	rep := hsmInfoJSON(t, sel)
	if rep.Token == nil || rep.Token.Label != cfg.TokenLabel || rep.KEKPresent || len(rep.Slots) == 0 {
		t.Fatalf("info before init-kek: %+v", rep)
	}
	if !strings.Contains(strings.Join(rep.Mechanisms, " "), "CKM_AES_GCM") {
		t.Fatalf("mechanisms lack CKM_AES_GCM: %v", rep.Mechanisms)
	}
	code, out, errOut := runCLI(append([]string{"hsm", "init-kek"}, sel...)...)
	if code != 0 || !strings.Contains(out, "extractable=false") {
		t.Fatalf("init-kek: exit %d\n%s%s", code, out, errOut)
	}
	hsmNoPIN(t, cfg.PIN, out, errOut)
	rep = hsmInfoJSON(t, sel)
	if !rep.KEKPresent || rep.KEK == nil || rep.KEK.Extractable || !rep.KEK.NeverExtractable || !rep.KEK.AlwaysSensitive {
		t.Fatalf("info after init-kek: %+v", rep.KEK)
	}
	// A second init-kek fails and leaves the first KEK as it was.
	code, _, errOut = runCLI(append([]string{"hsm", "init-kek"}, sel...)...)
	if code == 0 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("second init-kek: exit %d: %s", code, errOut)
	}
	if again := hsmInfoJSON(t, sel); again.KEK == nil || again.KEK.ID != rep.KEK.ID {
		t.Fatalf("KEK changed after a failed init-kek")
	}
	// Text output, and slots-only info without a selected token.
	code, out, _ = runCLI("hsm", "info", "--module", cfg.Module)
	if code != 0 || !strings.Contains(out, cfg.TokenLabel) {
		t.Fatalf("hsm info without token: exit %d\n%s", code, out)
	}
}

func TestHSMWrongPINChangesNothing(t *testing.T) {
	cfg, sel := hsmCLIToken(t, "cli-pin")
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("not-the-pin-1234\n"), 0o600)
	wrong := append(append([]string{}, sel[:4]...), "--pin-file", bad)
	code, out, errOut := runCLI(append([]string{"hsm", "init-kek"}, wrong...)...)
	if code == 0 || !strings.Contains(errOut, "PIN incorrect") {
		t.Fatalf("init-kek with wrong PIN: exit %d: %s", code, errOut)
	}
	hsmNoPIN(t, "not-the-pin-1234", out, errOut)
	hsmNoPIN(t, cfg.PIN, out, errOut)
	if rep := hsmInfoJSON(t, sel); rep.KEKPresent {
		t.Fatal("a KEK exists after init-kek with a wrong PIN")
	}
	// The PIN from the environment works too; there is no --pin flag at all.
	t.Setenv(hsmPINEnv, cfg.PIN)
	code, out, errOut = runCLI("hsm", "init-kek", "--module", cfg.Module, "--token-label", cfg.TokenLabel)
	if code != 0 {
		t.Fatalf("init-kek with $%s: exit %d: %s", hsmPINEnv, code, errOut)
	}
	hsmNoPIN(t, cfg.PIN, out, errOut)
	code, _, errOut = runCLI("hsm", "info", "--token-label", cfg.TokenLabel, "--pin", cfg.PIN)
	if code == 0 || !strings.Contains(errOut, "unknown flag") {
		t.Fatalf("--pin was accepted: exit %d %s", code, errOut)
	}
	t.Setenv(hsmPINEnv, "")
	code, _, errOut = runCLI("hsm", "info", "--module", cfg.Module, "--token-label", cfg.TokenLabel)
	if code == 0 || !strings.Contains(errOut, "no PIN") {
		t.Fatalf("no PIN: exit %d %s", code, errOut)
	}
}

func TestHSMMissingToken(t *testing.T) {
	cfg, sel := hsmCLIToken(t, "cli-missing")
	args := append([]string{"hsm", "info"}, sel...)
	args[5] = "no-such-token"
	code, _, errOut := runCLI(args...)
	if code == 0 || !strings.Contains(errOut, "token not found") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("missing token: exit %d: %q", code, errOut)
	}
	code, _, errOut = runCLI("hsm", "info", "--module", filepath.Join(t.TempDir(), "nope.so"))
	if code == 0 || !strings.Contains(errOut, "cannot load PKCS#11 module") {
		t.Fatalf("missing module: exit %d: %q", code, errOut)
	}
	_ = cfg
}

func TestHSMSealOpenCLI(t *testing.T) {
	cfg, sel := hsmCLIToken(t, "cli-seal")
	if code, _, errOut := runCLI(append([]string{"hsm", "init-kek"}, sel...)...); code != 0 {
		t.Fatal(errOut)
	}
	dir := t.TempDir()
	in, sealed, opened := filepath.Join(dir, "in"), filepath.Join(dir, "sealed"), filepath.Join(dir, "opened")
	os.WriteFile(in, []byte("share bytes"), 0o600)
	code, _, errOut := runCLI(append([]string{"hsm", "seal", "--in", in, "--out", sealed, "--aad", "w1/p1"}, sel...)...)
	if code != 0 {
		t.Fatalf("seal: %s", errOut)
	}
	if st, err := os.Stat(sealed); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("sealed file: %v %v", st, err)
	}
	// Wrong AAD: error, and no output file.
	code, _, errOut = runCLI(append([]string{"hsm", "open", "--in", sealed, "--out", opened, "--aad", "w1/p2"}, sel...)...)
	if code == 0 || !strings.Contains(errOut, "authentication failed") {
		t.Fatalf("open with wrong AAD: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(opened); !os.IsNotExist(err) {
		t.Fatal("a failed open wrote the output file")
	}
	code, _, errOut = runCLI(append([]string{"hsm", "open", "--in", sealed, "--out", opened, "--aad", "w1/p1"}, sel...)...)
	if got, _ := os.ReadFile(opened); code != 0 || string(got) != "share bytes" {
		t.Fatalf("open: exit %d %s: %q", code, errOut, got)
	}
	// Never overwrites.
	code, _, _ = runCLI(append([]string{"hsm", "seal", "--in", in, "--out", sealed}, sel...)...)
	if code == 0 {
		t.Fatal("seal overwrote an existing file")
	}
	// Garbage in: a clear error.
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not a blob"), 0o600)
	code, _, errOut = runCLI(append([]string{"hsm", "open", "--in", junk, "--out", filepath.Join(dir, "x")}, sel...)...)
	if code == 0 || !strings.Contains(errOut, "malformed sealed blob") {
		t.Fatalf("open junk: exit %d %s", code, errOut)
	}
	_ = cfg
}

func TestHSMKeygenSignVerifyCLI(t *testing.T) {
	_, sel := hsmCLIToken(t, "cli-sign")
	for _, curve := range []string{"secp256k1", "p256"} {
		code, out, errOut := runCLI(append([]string{"hsm", "keygen", "--label", "k-" + curve, "--curve", curve, "-o", "json"}, sel...)...)
		if code != 0 {
			t.Fatalf("keygen %s: %s", curve, errOut)
		}
		var key hsmKeyReport
		if err := json.Unmarshal([]byte(out), &key); err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte(curve))
		code, out, errOut = runCLI(append([]string{"hsm", "sign", "--label", "k-" + curve, "--digest", hex.EncodeToString(d[:]), "-o", "json"}, sel...)...)
		if code != 0 {
			t.Fatalf("sign %s: %s", curve, errOut)
		}
		var sig hsmSignReport
		if err := json.Unmarshal([]byte(out), &sig); err != nil {
			t.Fatal(err)
		}
		if !sig.Verified || sig.PublicKey != key.PublicKey || (curve == "secp256k1" && (!sig.LowS || sig.RecoveryID == nil)) {
			t.Fatalf("sign report: %+v", sig)
		}
		verify := []string{"hsm", "verify", "--curve", curve, "--pubkey", key.PublicKey, "--digest", hex.EncodeToString(d[:]), "--sig", sig.Signature}
		if code, _, errOut := runCLI(verify...); code != 0 {
			t.Fatalf("verify %s: %s", curve, errOut)
		}
		d[0] ^= 1
		verify[7] = hex.EncodeToString(d[:])
		if code, _, _ := runCLI(verify...); code == 0 {
			t.Fatalf("verify %s accepted a signature over another digest", curve)
		}
	}
	for _, bad := range [][]string{
		{"hsm", "sign", "--label", "k-secp256k1", "--digest", "abcd"},
		{"hsm", "sign", "--label", "missing", "--digest", strings.Repeat("00", 32)},
		{"hsm", "keygen", "--label", "k-secp256k1"},
		{"hsm", "keygen", "--label", "x", "--curve", "ed448"},
	} {
		if code, _, errOut := runCLI(append(bad, sel...)...); code == 0 || errOut == "" {
			t.Errorf("%v: exit %d", bad, code)
		}
	}
}
