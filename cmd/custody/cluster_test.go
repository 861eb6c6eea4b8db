package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

var clusterOps = []string{"--operator", "alice=admin,approver", "--operator", "bob=admin,approver", "--operator", "carol=approver,auditor"}

func clusterInit(t *testing.T, out string, extra ...string) clusterInitReport {
	t.Helper()
	args := append([]string{"cluster", "init", "--nodes", "3", "--out", out, "--cluster-id", "test-1", "-o", "json"}, clusterOps...)
	code, stdout, stderr := runCLI(append(args, extra...)...)
	if code != 0 {
		t.Fatalf("cluster init: exit %d: %s", code, stderr)
	}
	var rep clusterInitReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	return rep
}

func parseCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClusterInit: a 3-node cluster init writes every file with the right
// mode, configs that load and pin a genesis that verifies and names every
// node's key, and certificates of the right roles.
func TestClusterInit(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cluster")
	rep := clusterInit(t, out)

	want := map[string]fs.FileMode{
		"ca/ca.pem": 0o644, "ca/ca.key": 0o600, "rules.yaml": 0o644, "genesis.yaml": 0o644, "genesis.json": 0o644,
		"backend/exchange/cert.pem": 0o644, "backend/exchange/cert.key": 0o600, "backend/exchange/device.key": 0o600,
	}
	for _, o := range []string{"alice", "bob", "carol"} {
		want["operators/"+o+"/cert.pem"], want["operators/"+o+"/cert.key"], want["operators/"+o+"/device.key"] = 0o644, 0o600, 0o600
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		want["nodes/"+n+"/node.pem"], want["nodes/"+n+"/node.key"], want["nodes/"+n+"/config.yaml"] = 0o644, 0o600, 0o644
	}
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		got[filepath.ToSlash(rel)] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range want {
		if g, ok := got[name]; !ok || g != mode {
			t.Errorf("%s: mode %v, want %v", name, g, mode)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected file %s", name)
		}
	}

	// The genesis verifies against the hash every config pins, and its
	// node set holds each node certificate's key.
	gfile := filepath.Join(out, "genesis.json")
	if code, _, stderr := runCLI("genesis", "verify", "--genesis", gfile, "--hash", rep.GenesisHash); code != 0 {
		t.Fatalf("genesis verify: %s", stderr)
	}
	g, err := genesisLoad(gfile)
	if err != nil {
		t.Fatal(err)
	}
	var configs []*daemon.Config
	for i, n := range []pki.NodeID{"n1", "n2", "n3"} {
		c, err := daemon.LoadConfig(filepath.Join(out, "nodes", string(n), "config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if c.NodeID != n || c.Genesis.Hash != rep.GenesisHash || len(c.Peers) != 2 || c.Chains.ETH == nil || c.Chains.ETH.RPC != daemon.EmbeddedETH {
			t.Errorf("%s: %+v", n, c)
		}
		if _, err := c.LoadGenesis(); err != nil {
			t.Errorf("%s: LoadGenesis: %v", n, err)
		}
		configs = append(configs, c)
		fp := pki.KeyFingerprint(parseCertFile(t, c.TLS.Cert))
		if !slices.ContainsFunc(g.Nodes, func(gn ledger.Node) bool { return gn.ID == n && gn.KeyFingerprint == fp }) {
			t.Errorf("%s: key %s not in the genesis node set %+v", n, fp, g.Nodes)
		}
		if rep.Nodes[i].KeyFingerprint != fp {
			t.Errorf("%s: reported fingerprint %s, certificate has %s", n, rep.Nodes[i].KeyFingerprint, fp)
		}
	}
	if err := daemon.CheckDistinct(configs...); err != nil {
		t.Errorf("the generated configs are not distinct: %v", err)
	}

	// Certificates carry their roles and chain to the CA.
	caPool := x509.NewCertPool()
	caPool.AddCert(parseCertFile(t, filepath.Join(out, "ca", "ca.pem")))
	for path, role := range map[string]pki.Role{
		"nodes/n2/node.pem": pki.RoleNode, "backend/exchange/cert.pem": pki.RoleBackend, "operators/bob/cert.pem": pki.RoleOperator,
	} {
		p, err := pki.VerifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{parseCertFile(t, filepath.Join(out, path))}}, caPool, role)
		if err != nil || p.Role != role {
			t.Errorf("%s: %+v %v", path, p, err)
		}
	}

	// Operators and the backend are in the genesis with their roles and
	// their device keys.
	roles := map[string][]quorum.Role{}
	for _, o := range g.Operators {
		roles[o.ID] = o.Roles
	}
	if !slices.Equal(roles["carol"], []quorum.Role{quorum.RoleApprover, quorum.RoleAuditor}) || !slices.Equal(roles["exchange"], []quorum.Role{quorum.RoleInitiator}) {
		t.Errorf("genesis roles: %v", roles)
	}
	kf, err := quorum.ParseKeyFile(mustRead(t, filepath.Join(out, "operators", "alice", "device.key")))
	if err != nil || !slices.ContainsFunc(g.Devices, func(d quorum.Device) bool { return d.ID == kf.DeviceID && d.OperatorID == "alice" }) {
		t.Errorf("alice's device key is not in the genesis: %v", err)
	}

	// The ceremony config it wrote rebuilds the same genesis.
	code, stdout, stderr := runCLI("genesis", "create", "--config", filepath.Join(out, "genesis.yaml"), "--out", filepath.Join(t.TempDir(), "g.json"), "-o", "json")
	if code != 0 || !strings.Contains(stdout, rep.GenesisHash) {
		t.Errorf("genesis create from genesis.yaml: %d %s %s", code, stdout, stderr)
	}

	// No private key reaches the output.
	for name := range want {
		if strings.HasSuffix(name, ".key") {
			if key := mustRead(t, filepath.Join(out, name)); strings.Contains(stdout, string(key[:40])) {
				t.Errorf("%s printed", name)
			}
		}
	}

	// A second init into the same directory is refused and changes nothing.
	args := append([]string{"cluster", "init", "--nodes", "3", "--out", out}, clusterOps...)
	code, _, stderr = runCLI(args...)
	oneLineErr(t, code, stderr, "not empty")
	if g2, err := genesisLoad(gfile); err != nil || g2.Hash() != rep.GenesisHash {
		t.Errorf("the second init changed the genesis: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClusterInitRefusesBadFlags: bad flags exit 1 with one line and write
// nothing.
func TestClusterInitRefusesBadFlags(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"zero nodes":         {[]string{"--nodes", "0", "--operator", "a=admin"}, "--nodes must be 1..64"},
		"duplicate operator": {[]string{"--nodes", "3", "--operator", "a=admin", "--operator", "a=approver"}, `--operator "a" given twice`},
		"unknown role":       {[]string{"--nodes", "3", "--operator", "a=admin,root"}, `unknown role "root"`},
		"no admin":           {[]string{"--nodes", "3", "--operator", "a=approver"}, "admin role"},
		"no roles":           {[]string{"--nodes", "3", "--operator", "a"}, "NAME=ROLE"},
		"path as a name":     {[]string{"--nodes", "3", "--operator", "../a=admin"}, "a name is"},
		"backend collides":   {[]string{"--nodes", "3", "--operator", "a=admin", "--backend", "a"}, "also an --operator"},
		"quorum too large":   {[]string{"--nodes", "3", "--operator", "a=admin", "--admin-quorum", "2"}, "--admin-quorum"},
		"ports overflow":     {[]string{"--nodes", "3", "--operator", "a=admin", "--base-port", "65530"}, "--base-port"},
		"eth url without id": {[]string{"--nodes", "3", "--operator", "a=admin", "--eth-rpc", "http://127.0.0.1:8545"}, "chain_id"},
		"bad btc network":    {[]string{"--nodes", "3", "--operator", "a=admin", "--btc-rpc", "127.0.0.1:18334", "--btc-network", "moon"}, "chains.btc.network"},
	} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "cluster")
			code, _, stderr := runCLI(append([]string{"cluster", "init", "--out", out}, tc.args...)...)
			oneLineErr(t, code, stderr, tc.want)
			if _, err := os.Lstat(out); err == nil {
				t.Fatalf("%s was written", out)
			}
		})
	}
}
