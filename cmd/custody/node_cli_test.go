package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/daemon"
)

// TestNodeQuarantine: the failure budget of a stopped node is listed and a
// party's quarantine cleared; an unknown party and a damaged file are
// refused with one line and leave the file as it was.
func TestNodeQuarantine(t *testing.T) {
	rep := clusterInit(t, filepath.Join(t.TempDir(), "cluster"))
	config := rep.Nodes[0].Config
	code, out, errOut := runCLI("node", "quarantine", "--config", config)
	if code != 0 || !strings.Contains(out, "no failures recorded (limit 3)") {
		t.Fatalf("empty budget: exit %d %q %q", code, out, errOut)
	}
	data := filepath.Join(filepath.Dir(config), "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	budget := filepath.Join(data, "tss-budget.json")
	if err := os.WriteFile(budget, []byte(`{"limit":3,"failures":{"n2":1,"n3":3}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI("node", "quarantine", "--config", config)
	if code != 0 || !strings.Contains(out, "n2           1 of 3 failures\n") || !strings.Contains(out, "n3           3 of 3 failures  QUARANTINED") {
		t.Fatalf("list: exit %d %q", code, out)
	}
	code, _, errOut = runCLI("node", "quarantine", "--config", config, "--clear", "n4")
	oneLineErr(t, code, errOut, `no failures recorded for "n4"`)
	if code, out, _ = runCLI("node", "quarantine", "--config", config, "--clear", "n3"); code != 0 || !strings.Contains(out, "cleared the failures of n3") {
		t.Fatalf("clear: exit %d %q", code, out)
	}
	code, out, _ = runCLI("node", "quarantine", "--config", config, "-o", "json")
	if code != 0 || strings.Contains(out, "n3") || !strings.Contains(out, `"node": "n2"`) {
		t.Fatalf("after clearing n3: %q", out)
	}
	if err := os.WriteFile(budget, []byte(`{"limit":3`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI("node", "quarantine", "--config", config, "--clear", "n2")
	oneLineErr(t, code, errOut, "damaged")
	if b, _ := os.ReadFile(budget); string(b) != `{"limit":3` {
		t.Fatalf("a refused clear rewrote the file: %q", b)
	}
}

// TestNodeRunRefusesBadConfig: node run without a config, or with one that
// does not load, exits 1 with one line.
func TestNodeRunRefusesBadConfig(t *testing.T) {
	code, _, errOut := runCLI("node", "run")
	oneLineErr(t, code, errOut, "--config is required")
	code, _, errOut = runCLI("node", "run", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	oneLineErr(t, code, errOut, "no such file")
	code, _, errOut = runCLI("node", "run", "--config", writeTemp(t, "c.yaml", "node_id: n1\nbogus: 1\n"), "--log-level", "info")
	oneLineErr(t, code, errOut, "bogus")
	code, _, errOut = runCLI("node", "run", "--config", writeTemp(t, "c.yaml", "node_id: n1\n"), "--log-level", "loud")
	oneLineErr(t, code, errOut, "--log-level")
}

// TestClusterInitNodeKeyInHSM: --node-hsm-key issues the node's certificate
// for the given P-256 key, writes no key file, and its config names the key
// label; bad specs are refused with one line before anything is written.
func TestClusterInitNodeKeyInHSM(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecdhKey, err := k.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	pubHex := hex.EncodeToString(ecdhKey.Bytes())
	out := filepath.Join(t.TempDir(), "cluster")
	rep := clusterInit(t, out, "--node-hsm-key", "n2="+pubHex, "--node-key-label", "node-key")
	n2 := filepath.Join(out, "nodes", "n2")
	if _, err := os.Stat(filepath.Join(n2, "node.key")); !os.IsNotExist(err) {
		t.Fatalf("a key file was written for an HSM-held key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "nodes", "n1", "node.key")); err != nil {
		t.Fatalf("n1's key file: %v", err)
	}
	cert := parseCertFile(t, filepath.Join(n2, "node.pem"))
	if !k.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("n2's certificate is not for the given key")
	}
	cfg, err := daemon.LoadConfig(rep.Nodes[1].Config)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS.KeyLabel != "node-key" || cfg.TLS.Key != "" {
		t.Fatalf("n2's tls: %+v", cfg.TLS)
	}
	for _, bad := range []struct{ spec, want string }{
		{"n9=" + pubHex, "K in 1..3"},
		{"n2=zz", "not hex"},
		{"n2=0411", "not a P-256 public key"},
	} {
		dir := filepath.Join(t.TempDir(), "c")
		code, _, errOut := runCLI(append([]string{"cluster", "init", "--nodes", "3", "--out", dir, "--node-hsm-key", bad.spec}, clusterOps...)...)
		oneLineErr(t, code, errOut, bad.want)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: the directory was created", bad.spec)
		}
	}
}
