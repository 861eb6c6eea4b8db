package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/pki"
)

// genesisCeremony lays out a genesis ceremony in a fresh directory: key
// files made by "custody operator keygen", node certificates from a
// throw-away cluster CA, the rules file and genesis.yaml naming them by
// relative names. It returns the config's path.
func genesisCeremony(t *testing.T) (dir, config string, fingerprints map[string]string) {
	t.Helper()
	dir = t.TempDir()
	t.Setenv(operatorPassphraseEnv, "")
	for _, name := range []string{"alice", "bob", "exchange"} {
		code, _, errOut := runCLI("operator", "keygen", "--out", filepath.Join(dir, name+".key"))
		if code != 0 {
			t.Fatalf("operator keygen: %d %s", code, errOut)
		}
	}
	ca, err := pki.NewCA("genesis cli test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fingerprints = map[string]string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		certPEM, _, err := ca.IssueNode(pki.NodeID(id), time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id+".pem"), certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(certPEM)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		fingerprints[id] = pki.KeyFingerprint(c)
	}
	rules, err := os.ReadFile("../../genesis/testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	config = filepath.Join(dir, "genesis.yaml")
	yaml := `cluster_id: prod-1
admin_quorum: 2
max_approval_validity: 48h
rules: rules.yaml
operators:
  - id: alice
    name: Alice
    roles: [admin]
    devices:
      - key_file: alice.key
  - id: bob
    name: Bob
    roles: [admin, approver]
    devices:
      - key_file: bob.key
        label: laptop
backends:
  - id: exchange
    name: Exchange backend
    devices:
      - key_file: exchange.key
nodes:
  - cert: n1.pem
  - cert: n2.pem
  - cert: n3.pem
`
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, config, fingerprints
}

var hashLine = regexp.MustCompile(`(?m)^genesis hash: ([0-9a-f]{64})$`)

// TestGenesisCLI: create writes the file once and prints its hash; verify
// passes with that hash and fails with one line otherwise; show prints it
// for people and as JSON; the same config gives the same hash again.
func TestGenesisCLI(t *testing.T) {
	dir, config, fingerprints := genesisCeremony(t)
	out := filepath.Join(dir, "genesis.json")

	code, stdout, errOut := runCLI("genesis", "create", "--config", config, "--out", out)
	if code != 0 || errOut != "" {
		t.Fatalf("create: exit %d, stderr %q", code, errOut)
	}
	m := hashLine.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("create printed no hash: %q", stdout)
	}
	hash := m[1]
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("genesis file: %v %v", fi, err)
	}
	written, _ := os.ReadFile(out)
	g, err := genesis.Parse(written)
	if err != nil || g.Hash() != hash {
		t.Fatalf("the written file: %v (hash %s)", err, hash)
	}
	for _, n := range g.Nodes {
		if n.KeyFingerprint != fingerprints[string(n.ID)] {
			t.Fatalf("node %s: fingerprint %s, want %s", n.ID, n.KeyFingerprint, fingerprints[string(n.ID)])
		}
	}

	// Never overwrite: the file is left as it was.
	code, _, errOut = runCLI("genesis", "create", "--config", config, "--out", out)
	oneLineErr(t, code, errOut, "exists")
	if again, _ := os.ReadFile(out); string(again) != string(written) {
		t.Fatal("a refused create changed the existing file")
	}

	// The same ceremony again is the same genesis, reported as JSON.
	out2 := filepath.Join(dir, "genesis-2.json")
	code, stdout, errOut = runCLI("genesis", "create", "--config", config, "--out", out2, "-o", "json")
	var created genesisCreateReport
	if code != 0 || json.Unmarshal([]byte(stdout), &created) != nil || created.GenesisHash != hash || created.ClusterID != "prod-1" || created.File != out2 {
		t.Fatalf("create -o json: %d %q %q", code, stdout, errOut)
	}

	code, stdout, errOut = runCLI("genesis", "verify", "--genesis", out, "--hash", hash)
	if code != 0 || !strings.HasPrefix(stdout, "ok: ") || errOut != "" {
		t.Fatalf("verify: %d %q %q", code, stdout, errOut)
	}
	code, stdout, _ = runCLI("genesis", "verify", "--genesis", out, "--hash", strings.ToUpper(hash), "-o", "json")
	var verified genesisVerifyReport
	if code != 0 || json.Unmarshal([]byte(stdout), &verified) != nil || !verified.OK || verified.GenesisHash != hash {
		t.Fatalf("verify -o json: %d %q", code, stdout)
	}
	wrong := strings.Repeat("0", 64)
	code, stdout, errOut = runCLI("genesis", "verify", "--genesis", out, "--hash", wrong)
	oneLineErr(t, code, errOut, "hashes to "+hash+", not "+wrong)
	if stdout != "" {
		t.Fatalf("a failed verify printed %q", stdout)
	}
	code, _, errOut = runCLI("genesis", "verify", "--genesis", out, "--hash", hash[:63])
	oneLineErr(t, code, errOut, "64 hex digits")
	code, _, errOut = runCLI("genesis", "verify", "--genesis", filepath.Join(dir, "nope.json"), "--hash", hash)
	oneLineErr(t, code, errOut, "nope.json")

	// A tampered file: another cluster ID hashes differently; an invalid
	// one names the path of the problem.
	renamed := writeTemp(t, "renamed.json", strings.Replace(string(written), `"prod-1"`, `"prod-2"`, 1))
	code, _, errOut = runCLI("genesis", "verify", "--genesis", renamed, "--hash", hash)
	oneLineErr(t, code, errOut, "hash mismatch")
	invalid := writeTemp(t, "invalid.json", strings.Replace(string(written), `"admin_quorum": 2`, `"admin_quorum": 3`, 1))
	code, _, errOut = runCLI("genesis", "verify", "--genesis", invalid, "--hash", hash)
	oneLineErr(t, code, errOut, "admin_quorum")

	code, stdout, errOut = runCLI("genesis", "show", "--genesis", out)
	if code != 0 || errOut != "" {
		t.Fatalf("show: %d %q", code, errOut)
	}
	for _, want := range []string{hash, "prod-1", `alice "Alice", human: admin`, `exchange "Exchange backend", backend: initiator`, `"laptop"`, "n2  key " + fingerprints["n2"], g.RulesHash} {
		if !strings.Contains(stdout, want) {
			t.Errorf("show does not print %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runCLI("genesis", "show", "--genesis", out, "-o", "json")
	var shown struct {
		GenesisHash string          `json:"genesis_hash"`
		Genesis     json.RawMessage `json:"genesis"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &shown) != nil || shown.GenesisHash != hash {
		t.Fatalf("show -o json: %d %q", code, stdout)
	}
	if doc, err := genesis.Parse(shown.Genesis); err != nil || doc.Hash() != hash {
		t.Fatalf("show -o json's document: %v", err)
	}
	code, _, errOut = runCLI("genesis", "show", "--genesis", invalid)
	oneLineErr(t, code, errOut, "admin_quorum")
}

// TestGenesisCreateRefuses: a config with an unknown key, or naming a
// file that is not there, fails with one line naming the YAML path, and
// writes nothing.
func TestGenesisCreateRefuses(t *testing.T) {
	dir, config, _ := genesisCeremony(t)
	orig, _ := os.ReadFile(config)
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"unknown key", "        label: laptop", "        lable: laptop", "operators[1].devices[0].lable (line 16): unknown field"},
		{"unknown top-level key", "admin_quorum: 2", "admin_quorum: 2\nquorum: 2", "quorum (line 3): unknown field"},
		{"missing key file", "key_file: bob.key", "key_file: carol.key", "operators[1].devices[0].key_file"},
		{"a key twice", "key_file: exchange.key", "key_file: alice.key", "backends[0].devices[0].id"},
		{"admin quorum too high", "admin_quorum: 2", "admin_quorum: 3", "admin_quorum"},
		{"node twice", "cert: n3.pem", "cert: n1.pem", "nodes[2].id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(orig), c.old) {
				t.Fatalf("config has no %q", c.old)
			}
			cfg := filepath.Join(dir, "bad.yaml")
			if err := os.WriteFile(cfg, []byte(strings.Replace(string(orig), c.old, c.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "never.json")
			code, stdout, errOut := runCLI("genesis", "create", "--config", cfg, "--out", out)
			oneLineErr(t, code, errOut, c.want)
			if stdout != "" {
				t.Fatalf("a refused create printed %q", stdout)
			}
			if _, err := os.Lstat(out); !os.IsNotExist(err) {
				t.Fatalf("a refused create left %s: %v", out, err)
			}
		})
	}
	code, _, errOut := runCLI("genesis", "create", "--config", filepath.Join(dir, "nope.yaml"), "--out", filepath.Join(dir, "x.json"))
	oneLineErr(t, code, errOut, "--config")
	code, _, errOut = runCLI("genesis", "create", "--config", config)
	oneLineErr(t, code, errOut, "out")
}

// TestGenesisHelp: the group and each subcommand answer --help.
func TestGenesisHelp(t *testing.T) {
	for _, args := range [][]string{{"genesis"}, {"genesis", "--help"}, {"genesis", "create", "--help"}, {"genesis", "verify", "--help"}, {"genesis", "show", "--help"}} {
		code, out, errOut := runCLI(args...)
		if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}
