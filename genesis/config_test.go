package genesis_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// ceremony is a genesis ceremony's directory: key files, node certificates
// and the rules file, and a config naming them (relative names).
type ceremony struct {
	dir    string
	yaml   string
	certs  map[pki.NodeID]*x509.Certificate
	p256   string // hex public key of carol's token key
	keys   map[string]string
	ca     *pki.CA
	sealed string // device ID of dave's sealed key file
}

func (c *ceremony) write(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(c.dir, name)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (c *ceremony) read(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(c.dir, name))
}

// keyFile writes an operator key file as `custody operator keygen` does
// and returns its device ID.
func (c *ceremony) keyFile(t *testing.T, name string, pass []byte) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := quorum.NewKeyFile(priv, pass, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.write(t, name, b)
	kf, err := quorum.ParseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return kf.DeviceID
}

func newCeremony(t *testing.T) *ceremony {
	t.Helper()
	c := &ceremony{dir: t.TempDir(), certs: map[pki.NodeID]*x509.Certificate{}, keys: map[string]string{}}
	c.write(t, "rules.yaml", []byte(rulesYAML(t)))
	for _, name := range []string{"alice", "bob", "backend"} {
		c.keys[name] = c.keyFile(t, "keys/"+name+".key", nil)
	}
	c.sealed = c.keyFile(t, "keys/dave.key", []byte("a long passphrase"))
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, pub, err := quorum.PublicKeyBytes(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	c.p256 = hex.EncodeToString(pub)
	c.ca, err = pki.NewCA("genesis test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []pki.NodeID{"n1", "n2", "n3"} {
		certPEM, _, err := c.ca.IssueNode(id, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c.write(t, "certs/"+string(id)+".pem", certPEM)
		blk, _ := pem.Decode(certPEM)
		if c.certs[id], err = x509.ParseCertificate(blk.Bytes); err != nil {
			t.Fatal(err)
		}
	}
	c.yaml = `# The genesis of the test cluster.
cluster_id: prod-1
admin_quorum: 2
max_approval_validity: 48h
rules: rules.yaml
operators:
  - id: alice
    name: Alice Example
    roles: [admin]
    devices:
      - key_file: keys/alice.key
        label: laptop
  - id: bob
    name: Bob Example
    roles: [admin, approver]
    devices:
      - key_file: keys/bob.key
        device_id: ` + c.keys["bob"] + `
  - id: carol
    name: Carol Example
    roles: [approver]
    devices:
      - kind: ecdsa-p256
        public_key: ` + c.p256 + `
        label: token
  - id: dave
    name: Dave Example
    roles: [auditor]
    devices:
      - key_file: keys/dave.key
backends:
  - id: exchange
    name: Exchange backend
    devices:
      - key_file: keys/backend.key
nodes:
  - cert: certs/n1.pem
  - cert: certs/n2.pem
    id: n2
  - cert: certs/n3.pem
`
	return c
}

func (c *ceremony) config(t *testing.T) *genesis.Config {
	t.Helper()
	cfg, err := genesis.ParseConfig([]byte(c.yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestConfigBuild: a ceremony config with key files (one sealed), a token
// key, a backend and three node certificates builds the genesis it
// describes.
func TestConfigBuild(t *testing.T) {
	c := newCeremony(t)
	g, err := c.config(t).Build(c.read)
	if err != nil {
		t.Fatal(err)
	}
	if g.Version != genesis.Version || g.ClusterID != "prod-1" || g.AdminQuorum != 2 || g.MaxApprovalValidity != genesis.Duration(48*time.Hour) ||
		g.Rules != rulesYAML(t) || g.RulesHash != rulesHash(t, g.Rules) {
		t.Fatalf("genesis header %+v", g)
	}
	kinds := map[string]quorum.OperatorKind{}
	for _, o := range g.Operators {
		kinds[o.ID] = o.Kind
		if o.Kind == quorum.KindBackend && !slices.Equal(o.Roles, []quorum.Role{quorum.RoleInitiator}) {
			t.Fatalf("backend roles %v", o.Roles)
		}
	}
	if len(kinds) != 5 || kinds["exchange"] != quorum.KindBackend || kinds["alice"] != quorum.KindHuman {
		t.Fatalf("operators %v", kinds)
	}
	devs := map[string]quorum.Device{}
	for _, d := range g.Devices {
		devs[d.OperatorID] = d
	}
	if devs["alice"].ID != c.keys["alice"] || devs["alice"].Label != "laptop" || devs["exchange"].ID != c.keys["backend"] ||
		devs["dave"].ID != c.sealed || devs["carol"].Kind != quorum.DeviceP256 || hex.EncodeToString(devs["carol"].PublicKey) != c.p256 {
		t.Fatalf("devices %+v", devs)
	}
	for _, n := range g.Nodes {
		if want := pki.KeyFingerprint(c.certs[n.ID]); n.KeyFingerprint != want {
			t.Fatalf("node %s fingerprint %s, want %s", n.ID, n.KeyFingerprint, want)
		}
	}
	if len(g.Nodes) != 3 {
		t.Fatalf("nodes %v", g.Nodes)
	}

	// The same ceremony listed in another order is the same genesis.
	cfg := c.config(t)
	slices.Reverse(cfg.Operators)
	slices.Reverse(cfg.Nodes)
	cfg.Operators[0].Roles = []quorum.Role{quorum.RoleAuditor}
	r, err := cfg.Build(c.read)
	if err != nil {
		t.Fatal(err)
	}
	if r.Hash() != g.Hash() {
		t.Fatal("the order of the config changed the genesis hash")
	}
}

// TestParseConfigStrict: unknown keys and everything else the strict
// reader refuses name their YAML path and line.
func TestParseConfigStrict(t *testing.T) {
	c := newCeremony(t)
	replace := func(old, new string) string {
		t.Helper()
		if !strings.Contains(c.yaml, old) {
			t.Fatalf("config has no %q", old)
		}
		return strings.Replace(c.yaml, old, new, 1)
	}
	cases := []struct {
		name, doc, where, msg string
	}{
		{"unknown top-level key", replace("admin_quorum: 2", "admin_quorum: 2\nquorum: 3"), "quorum (line 4)", "unknown field"},
		{"unknown device key", replace("label: laptop", "lable: laptop"), "operators[0].devices[0].lable (line 12)", "unknown field"},
		{"unknown backend key", replace("name: Exchange backend", "name: Exchange backend\n    roles: [admin]"), "backends[0].roles (line 34)", "unknown field"},
		{"unknown node key", replace("id: n2", "node_id: n2"), "nodes[1].node_id (line 39)", "unknown field"},
		{"duplicate key", replace("cluster_id: prod-1", "cluster_id: prod-1\ncluster_id: prod-2"), "cluster_id (line 3)", "duplicate key"},
		{"alias", replace("roles: [admin]", "roles: &r [admin]\n    x: *r"), "", "alias"},
		{"merge key", replace("  - id: alice", "  - <<: {id: x}\n    id: alice"), "operators[0] (line 7)", "merge"},
		{"string for an integer", replace("admin_quorum: 2", "admin_quorum: two"), "admin_quorum (line 3)", "integer"},
		{"hex integer", replace("admin_quorum: 2", "admin_quorum: 0x2"), "admin_quorum (line 3)", "decimal"},
		{"number for a string", replace("cluster_id: prod-1", "cluster_id: 12"), "cluster_id (line 2)", "quote it"},
		{"null", replace("rules: rules.yaml", "rules:"), "rules (line 5)", "null"},
		{"list for a mapping", replace("nodes:\n  - cert: certs/n1.pem", "nodes:\n  - [certs/n1.pem]"), "nodes[0] (line 37)", "mapping"},
		{"bad duration", replace("48h", "2 days"), "max_approval_validity (line 4)", "duration"},
		{"two documents", c.yaml + "---\ncluster_id: x\n", "", "one YAML document"},
		{"empty", "", "", "empty"},
		{"not YAML", "cluster_id: [", "", "not YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := genesis.ParseConfig([]byte(tc.doc))
			if !errors.Is(err, genesis.ErrInvalid) || !strings.Contains(err.Error(), tc.where) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ParseConfig = %v, want it to name %q and mention %q", err, tc.where, tc.msg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line", err)
			}
		})
	}
}

// TestConfigBuildErrors: every problem Build finds names the config path
// it came from, including problems the genesis validation finds.
func TestConfigBuildErrors(t *testing.T) {
	c := newCeremony(t)
	c.write(t, "bad-rules.yaml", []byte("version: 2\n"))
	c.write(t, "garbage.key", []byte("{}"))
	backendCert, backendKey, err := c.ca.Issue(pki.RoleBackend, "exchange", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.write(t, "certs/backend.pem", backendCert)
	n1, _ := c.read("certs/n1.pem")
	c.write(t, "certs/n1-and-key.pem", append(n1, backendKey...))
	c.write(t, "certs/two.pem", append(n1, n1...))

	cases := []struct {
		name string
		edit func(*genesis.Config)
		path string
	}{
		{"no cluster id", func(g *genesis.Config) { g.ClusterID = "" }, "cluster_id"},
		{"no ceiling", func(g *genesis.Config) { g.MaxApprovalValidity = 0 }, "max_approval_validity"},
		{"admin quorum above the admins", func(g *genesis.Config) { g.AdminQuorum = 3 }, "admin_quorum"},
		{"no rules file", func(g *genesis.Config) { g.Rules = "" }, "rules"},
		{"missing rules file", func(g *genesis.Config) { g.Rules = "nope.yaml" }, "rules"},
		{"bad rules", func(g *genesis.Config) { g.Rules = "bad-rules.yaml" }, "rules"},
		{"no operators", func(g *genesis.Config) { g.Operators = nil; g.Backends = nil }, "operators"},
		{"unknown role", func(g *genesis.Config) { g.Operators[1].Roles = []quorum.Role{"boss"} }, "operators[1].roles"},
		{"operator name missing", func(g *genesis.Config) { g.Operators[2].Name = "" }, "operators[2].name"},
		{"operator without devices", func(g *genesis.Config) { g.Operators[1].Devices = nil }, "operators[1].devices"},
		{"backend without devices", func(g *genesis.Config) { g.Backends[0].Devices = nil }, "backends[0].devices"},
		{"backend named like an operator", func(g *genesis.Config) { g.Backends[0].ID = "bob" }, "backends[0].id"},
		{"device without a key", func(g *genesis.Config) { g.Operators[0].Devices[0] = genesis.ConfigDevice{} }, "operators[0].devices[0]"},
		{"key file and public key", func(g *genesis.Config) { g.Operators[0].Devices[0].PublicKey = c.p256 }, "operators[0].devices[0].key_file"},
		{"missing key file", func(g *genesis.Config) { g.Operators[0].Devices[0].KeyFile = "keys/nope.key" }, "operators[0].devices[0].key_file"},
		{"not a key file", func(g *genesis.Config) { g.Operators[0].Devices[0].KeyFile = "garbage.key" }, "operators[0].devices[0].key_file"},
		{"public key without kind", func(g *genesis.Config) { g.Operators[2].Devices[0].Kind = "" }, "operators[2].devices[0].kind"},
		{"public key not hex", func(g *genesis.Config) { g.Operators[2].Devices[0].PublicKey = "xyz" }, "operators[2].devices[0].public_key"},
		{"public key of the wrong kind", func(g *genesis.Config) { g.Operators[2].Devices[0].Kind = quorum.DeviceEd25519 }, "operators[2].devices[0].public_key"},
		{"webauthn key", func(g *genesis.Config) { g.Operators[2].Devices[0].Kind = quorum.DeviceWebAuthn }, "operators[2].devices[0].kind"},
		{"device id of another key", func(g *genesis.Config) { g.Operators[1].Devices[0].DeviceID = c.keys["alice"] }, "operators[1].devices[0].device_id"},
		{"one key for two operators", func(g *genesis.Config) { g.Operators[1].Devices[0] = g.Operators[0].Devices[0] }, "operators[1].devices[0].id"},
		{"backend key shared with alice", func(g *genesis.Config) { g.Backends[0].Devices[0].KeyFile = "keys/alice.key" }, "backends[0].devices[0].id"},
		{"no nodes", func(g *genesis.Config) { g.Nodes = nil }, "nodes"},
		{"node without cert", func(g *genesis.Config) { g.Nodes[0].Cert = "" }, "nodes[0].cert"},
		{"missing cert", func(g *genesis.Config) { g.Nodes[0].Cert = "certs/nope.pem" }, "nodes[0].cert"},
		{"not a PEM file", func(g *genesis.Config) { g.Nodes[0].Cert = "rules.yaml" }, "nodes[0].cert"},
		{"backend certificate", func(g *genesis.Config) { g.Nodes[1].Cert = "certs/backend.pem" }, "nodes[1].cert"},
		{"certificate and a private key", func(g *genesis.Config) { g.Nodes[0].Cert = "certs/n1-and-key.pem" }, "nodes[0].cert"},
		{"two certificates", func(g *genesis.Config) { g.Nodes[0].Cert = "certs/two.pem" }, "nodes[0].cert"},
		{"id of another node", func(g *genesis.Config) { g.Nodes[1].ID = "n3" }, "nodes[1].id"},
		{"one node twice", func(g *genesis.Config) { g.Nodes[2].Cert = "certs/n1.pem" }, "nodes[2].id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := c.config(t)
			tc.edit(cfg)
			_, err := cfg.Build(c.read)
			var e *genesis.Error
			if !errors.As(err, &e) || !errors.Is(err, genesis.ErrInvalid) {
				t.Fatalf("Build = %v, want a *genesis.Error", err)
			}
			if e.Path != tc.path {
				t.Fatalf("error %q names %q, want %q", err, e.Path, tc.path)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line", err)
			}
		})
	}
}
