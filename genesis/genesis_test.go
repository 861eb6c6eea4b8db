package genesis_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

func rulesYAML(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func rulesHash(t testing.TB, rules string) string {
	t.Helper()
	r, err := policy.ParseRules([]byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	return r.Hash()
}

// ops are the fixture's operators, with deterministic device keys:
// alice (admin), bob (admin, approver), carol (approver), and the backend.
var ops = []ledgertest.Operator{
	ledgertest.NewOperator("alice", quorum.KindHuman, quorum.RoleAdmin),
	ledgertest.NewOperator("backend", quorum.KindBackend, quorum.RoleInitiator),
	ledgertest.NewOperator("bob", quorum.KindHuman, quorum.RoleApprover, quorum.RoleAdmin),
	ledgertest.NewOperator("carol", quorum.KindHuman, quorum.RoleApprover),
}

// valid is the fixture: a genesis of cluster "prod-1", admin quorum 2, the
// four operators above (one device each), nodes n1..n3 and the test rules.
// Everything in it is deterministic (the golden file is this document).
func valid(t testing.TB) *genesis.Genesis {
	t.Helper()
	rules := rulesYAML(t)
	g := &genesis.Genesis{
		Version:             genesis.Version,
		ClusterID:           "prod-1",
		AdminQuorum:         2,
		MaxApprovalValidity: genesis.Duration(48 * time.Hour),
		Nodes:               ledgertest.Nodes("n1", "n2", "n3"),
		Rules:               rules,
		RulesHash:           rulesHash(t, rules),
	}
	for _, o := range ops {
		g.Operators = append(g.Operators, quorum.Operator{ID: o.ID, Name: strings.ToUpper(o.ID[:1]) + o.ID[1:], Kind: o.Kind, Roles: slices.Clone(o.Roles), Status: quorum.StatusActive})
		d := o.Device()
		d.Label = o.ID + "'s laptop"
		g.Devices = append(g.Devices, d)
	}
	if err := g.Validate(); err != nil {
		t.Fatalf("fixture does not validate: %v", err)
	}
	return g
}

// TestRoundTrip: a genesis encodes to a file that parses back to the same
// canonical encoding and hash; encoding is idempotent.
func TestRoundTrip(t *testing.T) {
	g := valid(t)
	file := g.Encode()
	p, err := genesis.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Canonical(), g.Canonical()) || p.Hash() != g.Hash() {
		t.Fatal("round trip changed the genesis")
	}
	if !bytes.Equal(p.Encode(), file) {
		t.Fatal("Encode is not idempotent")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, file); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(compact.Bytes(), g.Canonical()) {
		t.Fatal("the file is not the indented canonical encoding")
	}
	if !bytes.HasSuffix(file, []byte("}\n")) {
		t.Fatal("the file does not end in a newline")
	}
}

// TestHashDefinition: the hash is SHA-256 over the tag, a zero byte and
// the canonical encoding, in lowercase hex.
func TestHashDefinition(t *testing.T) {
	g := valid(t)
	sum := sha256.Sum256(append([]byte("custody/genesis/v1\x00"), g.Canonical()...))
	if g.Hash() != hex.EncodeToString(sum[:]) {
		t.Fatalf("Hash %s is not SHA-256(tag 0x00 canonical)", g.Hash())
	}
}

// goldenHash is the hash of testdata/golden.json, the fixture's file. A
// change here is a change of the genesis format: every pinned hash breaks.
const goldenHash = "ddc55a175707b6dcc646733d8108d4672f0e56e08126a36fadc79edb3d998b4f"

var update = flag.Bool("update", false, "rewrite testdata/golden.json from the fixture")

// TestGolden: the committed genesis file parses, is exactly what the
// fixture encodes to, and hashes to the committed value.
func TestGolden(t *testing.T) {
	if *update {
		g := valid(t)
		if err := os.WriteFile("testdata/golden.json", g.Encode(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("golden.json written; its hash is %s", g.Hash())
	}
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	g, err := genesis.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := g.Hash(); got != goldenHash {
		t.Errorf("golden.json hashes to %s, want %s", got, goldenHash)
	}
	if !bytes.Equal(valid(t).Encode(), b) {
		t.Error("the fixture no longer encodes to golden.json")
	}
}

// TestHashIndependentOfOrder: the order of operators, devices, roles and
// nodes, the order of keys in objects, whitespace and the spelling of the
// duration do not change the hash; any change of content does.
func TestHashIndependentOfOrder(t *testing.T) {
	g := valid(t)
	want := g.Hash()

	r := valid(t)
	slices.Reverse(r.Operators)
	slices.Reverse(r.Devices)
	slices.Reverse(r.Nodes)
	for i := range r.Operators {
		slices.Reverse(r.Operators[i].Roles)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.Hash() != want {
		t.Fatal("reordering the sets changed the hash")
	}

	// The same document written by hand: keys in another order, spaces,
	// the duration as minutes.
	var doc map[string]any
	if err := json.Unmarshal(g.Encode(), &doc); err != nil {
		t.Fatal(err)
	}
	doc["max_approval_validity"] = "2880m"
	var buf bytes.Buffer
	buf.WriteString("{\n")
	keys := []string{"rules", "nodes", "devices", "operators", "rules_hash", "max_approval_validity", "admin_quorum", "cluster_id", "version"}
	for i, k := range keys {
		v, _ := json.MarshalIndent(doc[k], "    ", "\t")
		buf.WriteString("  " + `"` + k + `" :  ` + string(v))
		if i < len(keys)-1 {
			buf.WriteString(",")
		}
		buf.WriteString("\n")
	}
	buf.WriteString("}")
	p, err := genesis.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if p.Hash() != want {
		t.Fatal("key order, whitespace or duration spelling changed the hash")
	}

	for name, edit := range map[string]func(*genesis.Genesis){
		"cluster id":     func(g *genesis.Genesis) { g.ClusterID = "prod-2" },
		"admin quorum":   func(g *genesis.Genesis) { g.AdminQuorum = 1 },
		"ceiling":        func(g *genesis.Genesis) { g.MaxApprovalValidity = genesis.Duration(24 * time.Hour) },
		"operator name":  func(g *genesis.Genesis) { g.Operators[0].Name = "Alicia" },
		"a role":         func(g *genesis.Genesis) { g.Operators[3].Roles = append(g.Operators[3].Roles, quorum.RoleAuditor) },
		"device label":   func(g *genesis.Genesis) { g.Devices[0].Label = "" },
		"device owner":   func(g *genesis.Genesis) { g.Devices[0].OperatorID = "bob" },
		"node id":        func(g *genesis.Genesis) { g.Nodes[0].ID = "n0" },
		"node key":       func(g *genesis.Genesis) { g.Nodes[0].KeyFingerprint = strings.Repeat("0", 64) },
		"a node more":    func(g *genesis.Genesis) { g.Nodes = append(g.Nodes, ledgertest.Nodes("n4")...) },
		"rules comment":  func(g *genesis.Genesis) { g.Rules += "# a comment\n" },
		"rules hash":     func(g *genesis.Genesis) { g.RulesHash = strings.Repeat("0", 64) },
		"format version": func(g *genesis.Genesis) { g.Version = "custody/genesis/v2" },
	} {
		c := valid(t)
		edit(c)
		if c.Hash() == want {
			t.Errorf("changing the %s did not change the hash", name)
		}
	}
}

// TestCanonicalEncoding: the exact bytes of a small genesis: no
// whitespace, fields in struct order, sets sorted, base64 keys, the
// canonical duration, no HTML escaping.
func TestCanonicalEncoding(t *testing.T) {
	rules := rulesYAML(t)
	a := ledgertest.NewOperator("zed", quorum.KindHuman, quorum.RoleApprover, quorum.RoleAdmin)
	d := a.Device()
	d.Label = "<&>"
	g := &genesis.Genesis{
		Version: genesis.Version, ClusterID: "c", AdminQuorum: 1, MaxApprovalValidity: genesis.Duration(90 * time.Minute),
		Operators: []quorum.Operator{{ID: "zed", Name: "Zed \"Z\" <z@example.com>", Kind: quorum.KindHuman, Roles: a.Roles, Status: quorum.StatusActive}},
		Devices:   []quorum.Device{d},
		Nodes:     []ledger.Node{{ID: "n2", KeyFingerprint: strings.Repeat("b", 64)}, {ID: "n1", KeyFingerprint: strings.Repeat("a", 64)}},
		Rules:     rules, RulesHash: rulesHash(t, rules),
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	rulesJSON, _ := json.Marshal(rules)
	want := `{"version":"custody/genesis/v1","cluster_id":"c","admin_quorum":1,"max_approval_validity":"1h30m0s",` +
		`"operators":[{"id":"zed","name":"Zed \"Z\" <z@example.com>","kind":"human","roles":["admin","approver"],"status":"active"}],` +
		`"devices":[{"id":"` + d.ID + `","operator_id":"zed","kind":"ed25519","public_key":"` + b64(d.PublicKey) + `","label":"<&>","status":"active"}],` +
		`"nodes":[{"id":"n1","key_fingerprint":"` + strings.Repeat("a", 64) + `"},{"id":"n2","key_fingerprint":"` + strings.Repeat("b", 64) + `"}],` +
		`"rules_hash":"` + g.RulesHash + `","rules":` + string(rulesJSON) + `}`
	if got := string(g.Canonical()); got != want {
		t.Fatalf("canonical encoding\n got %s\nwant %s", got, want)
	}
	// The input's own order is left alone: Canonical sorts a copy.
	if g.Nodes[0].ID != "n2" || g.Operators[0].Roles[0] != quorum.RoleApprover {
		t.Fatal("Canonical reordered the genesis it encodes")
	}
}

func b64(b []byte) string {
	s, _ := json.Marshal(b)
	return strings.Trim(string(s), `"`)
}

// TestValidationErrors: every validation rule refuses with an *Error that
// names the JSON path of the offending value.
func TestValidationErrors(t *testing.T) {
	p256 := func() quorum.Device {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		kind, pub, err := quorum.PublicKeyBytes(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return quorum.Device{ID: quorum.DeviceID(kind, pub), OperatorID: "carol", Kind: kind, PublicKey: pub, Status: quorum.DeviceActive}
	}
	cases := []struct {
		name string
		edit func(*genesis.Genesis)
		path string
	}{
		{"wrong version", func(g *genesis.Genesis) { g.Version = "custody/genesis/v0" }, "version"},
		{"no cluster id", func(g *genesis.Genesis) { g.ClusterID = "" }, "cluster_id"},
		{"cluster id with a space", func(g *genesis.Genesis) { g.ClusterID = "prod 1" }, "cluster_id"},
		{"admin quorum 0", func(g *genesis.Genesis) { g.AdminQuorum = 0 }, "admin_quorum"},
		{"admin quorum above the admins", func(g *genesis.Genesis) { g.AdminQuorum = 3 }, "admin_quorum"},
		{"no ceiling", func(g *genesis.Genesis) { g.MaxApprovalValidity = 0 }, "max_approval_validity"},
		{"ceiling below a minute", func(g *genesis.Genesis) { g.MaxApprovalValidity = genesis.Duration(59 * time.Second) }, "max_approval_validity"},
		{"ceiling above 30 days", func(g *genesis.Genesis) {
			g.MaxApprovalValidity = genesis.Duration(ledger.MaxApprovalCeiling + time.Second)
		}, "max_approval_validity"},
		{"negative ceiling", func(g *genesis.Genesis) { g.MaxApprovalValidity = -genesis.Duration(time.Hour) }, "max_approval_validity"},
		{"no operators", func(g *genesis.Genesis) { g.Operators = nil }, "operators"},
		{"bad operator id", func(g *genesis.Genesis) { g.Operators[1].ID = "back/end" }, "operators[1].id"},
		{"duplicate operator", func(g *genesis.Genesis) { g.Operators[2].ID = "alice" }, "operators[2].id"},
		{"no name", func(g *genesis.Genesis) { g.Operators[0].Name = "" }, "operators[0].name"},
		{"name too long", func(g *genesis.Genesis) { g.Operators[0].Name = strings.Repeat("x", 129) }, "operators[0].name"},
		{"unknown kind", func(g *genesis.Genesis) { g.Operators[3].Kind = "robot" }, "operators[3].kind"},
		{"no roles", func(g *genesis.Genesis) { g.Operators[2].Roles = nil }, "operators[2].roles"},
		{"unknown role", func(g *genesis.Genesis) { g.Operators[2].Roles = []quorum.Role{"boss"} }, "operators[2].roles"},
		{"duplicate role", func(g *genesis.Genesis) { g.Operators[2].Roles = []quorum.Role{"admin", "admin"} }, "operators[2].roles"},
		{"backend approver", func(g *genesis.Genesis) { g.Operators[1].Roles = []quorum.Role{"approver"} }, "operators[1].roles"},
		{"backend with two roles", func(g *genesis.Genesis) { g.Operators[1].Roles = append(g.Operators[1].Roles, "auditor") }, "operators[1].roles"},
		{"suspended operator", func(g *genesis.Genesis) { g.Operators[3].Status = quorum.StatusSuspended }, "operators[3].status"},
		{"no status", func(g *genesis.Genesis) { g.Operators[3].Status = "" }, "operators[3].status"},
		{"webauthn device", func(g *genesis.Genesis) { g.Devices[0].Kind = quorum.DeviceWebAuthn }, "devices[0].kind"},
		{"short public key", func(g *genesis.Genesis) { g.Devices[1].PublicKey = g.Devices[1].PublicKey[:31] }, "devices[1].public_key"},
		{"device id of another key", func(g *genesis.Genesis) { g.Devices[2].ID = g.Devices[1].ID }, "devices[2].id"},
		{"no device id", func(g *genesis.Genesis) { g.Devices[2].ID = "" }, "devices[2].id"},
		{"device listed twice", func(g *genesis.Genesis) { g.Devices = append(g.Devices, g.Devices[0]) }, "devices[4].id"},
		{"device of nobody", func(g *genesis.Genesis) { g.Devices[3].OperatorID = "mallory" }, "devices[3].operator_id"},
		{"credential", func(g *genesis.Genesis) { g.Devices[0].Credential = []byte{1} }, "devices[0].credential"},
		{"name with a control character", func(g *genesis.Genesis) { g.Operators[2].Name = "Bob\x1b[2J" }, "operators[2].name"},
		{"label with a newline", func(g *genesis.Genesis) { g.Devices[1].Label = "a\nb" }, "devices[1].label"},
		{"label too long", func(g *genesis.Genesis) { g.Devices[0].Label = strings.Repeat("l", 129) }, "devices[0].label"},
		{"revoked device", func(g *genesis.Genesis) { g.Devices[0].Status = quorum.DeviceRevoked }, "devices[0].status"},
		{"revocation time", func(g *genesis.Genesis) { g.Devices[0].RevokedAt = time.Unix(1, 0) }, "devices[0].revoked_at"},
		{"operator without a device", func(g *genesis.Genesis) { g.Devices = slices.Delete(g.Devices, 3, 4) }, "operators[3]"},
		{"backend without a device", func(g *genesis.Genesis) { g.Devices = slices.Delete(g.Devices, 1, 2) }, "operators[1]"},
		{"no nodes", func(g *genesis.Genesis) { g.Nodes = nil }, "nodes"},
		{"bad node id", func(g *genesis.Genesis) { g.Nodes[1].ID = "n 2" }, "nodes[1].id"},
		{"empty node id", func(g *genesis.Genesis) { g.Nodes[0].ID = "" }, "nodes[0].id"},
		{"duplicate node", func(g *genesis.Genesis) { g.Nodes[2].ID = "n1" }, "nodes[2].id"},
		{"fingerprint not hex", func(g *genesis.Genesis) { g.Nodes[0].KeyFingerprint = strings.Repeat("x", 64) }, "nodes[0].key_fingerprint"},
		{"fingerprint of 31 bytes", func(g *genesis.Genesis) { g.Nodes[0].KeyFingerprint = g.Nodes[0].KeyFingerprint[:62] }, "nodes[0].key_fingerprint"},
		{"uppercase fingerprint", func(g *genesis.Genesis) { g.Nodes[2].KeyFingerprint = strings.ToUpper(g.Nodes[2].KeyFingerprint) }, "nodes[2].key_fingerprint"},
		{"two nodes, one key", func(g *genesis.Genesis) { g.Nodes[2].KeyFingerprint = g.Nodes[0].KeyFingerprint }, "nodes[2].key_fingerprint"},
		{"rules do not parse", func(g *genesis.Genesis) { g.Rules = "version: 1\nwallets: {}\n" }, "rules"},
		{"no rules", func(g *genesis.Genesis) { g.Rules = "" }, "rules"},
		{"rules not UTF-8", func(g *genesis.Genesis) { g.Rules = "version: 1 \xff" }, "rules"},
		{"rules hash of other rules", func(g *genesis.Genesis) { g.RulesHash = strings.Repeat("0", 64) }, "rules_hash"},
		{"no rules hash", func(g *genesis.Genesis) { g.RulesHash = "" }, "rules_hash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := valid(t)
			c.edit(g)
			err := g.Validate()
			var e *genesis.Error
			if !errors.As(err, &e) || !errors.Is(err, genesis.ErrInvalid) {
				t.Fatalf("Validate = %v, want a *genesis.Error", err)
			}
			if e.Path != c.path || !strings.Contains(err.Error(), "genesis: "+c.path+": ") {
				t.Fatalf("error %q names %q, want %q", err, e.Path, c.path)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line", err)
			}
		})
	}

	// A P-256 device is a genesis device as well.
	g := valid(t)
	g.Devices = append(g.Devices, p256())
	if err := g.Validate(); err != nil {
		t.Fatalf("P-256 device refused: %v", err)
	}
	if _, err := genesis.Parse(g.Encode()); err != nil {
		t.Fatalf("P-256 device does not round-trip: %v", err)
	}
}

// TestParseStrict: what the strict reader refuses, each with its path.
func TestParseStrict(t *testing.T) {
	good := string(valid(t).Encode())
	replace := func(old, new string) string {
		t.Helper()
		if !strings.Contains(good, old) {
			t.Fatalf("fixture has no %q", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	cases := []struct {
		name, doc, path, msg string
	}{
		{"unknown top-level field", replace(`"cluster_id"`, `"colour": "red", "cluster_id"`), "colour", "unknown field"},
		{"unknown operator field", replace(`"name": "Bob"`, `"name": "Bob", "email": "b@x"`), "operators[2].email", "unknown field"},
		{"unknown node field", replace(`"id": "n3"`, `"id": "n3", "addr": "x"`), "nodes[2].addr", "unknown field"},
		{"a quoted key", replace(`"cluster_id"`, `"a b\u0000": 1, "cluster_id"`), `"a b\x00"`, "unknown field"},
		{"duplicate key", replace(`"cluster_id": "prod-1"`, `"cluster_id": "prod-1", "cluster_id": "prod-2"`), "cluster_id", "duplicate key"},
		{"duplicate nested key", replace(`"id": "n3"`, `"id": "n3", "id": "n4"`), "nodes[2].id", "duplicate key"},
		{"null", replace(`"admin_quorum": 2`, `"admin_quorum": null`), "admin_quorum", "null"},
		{"quoted integer", replace(`"admin_quorum": 2`, `"admin_quorum": "2"`), "admin_quorum", "integer"},
		{"fractional integer", replace(`"admin_quorum": 2`, `"admin_quorum": 2.0`), "admin_quorum", "integer"},
		{"huge integer", replace(`"admin_quorum": 2`, `"admin_quorum": 99999999999999999999`), "admin_quorum", "integer"},
		{"roles not a list", replace(`"roles": [
        "admin"
      ]`, `"roles": "admin"`), "operators[0].roles", "list"},
		{"bad duration", replace(`"48h0m0s"`, `"two days"`), "max_approval_validity", "duration"},
		{"public key not base64", replace(`"public_key": "`, `"public_key": "!`), "devices[0].public_key", "base64"},
		{"operators an object", replace(`"operators": [`, `"operators": {"x": [`), "", "JSON"},
		{"trailing data", good + "{}", "", "trailing"},
		{"two documents", good + good, "", "trailing"},
		{"empty", "", "", "empty"},
		{"not JSON", "version: 1", "", "JSON"},
		{"array at the top", "[]", "", "mapping"},
		{"invalid UTF-8", replace(`"Bob"`, "\"B\xffb\""), "", "UTF-8"},
		{"too deep", `{"operators":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}", "operators" + strings.Repeat("[0]", 16), "deeper"},
		{"too large", good + strings.Repeat(" ", genesis.MaxSize), "", "larger"},
		{"validation after parsing", replace(`"admin_quorum": 2`, `"admin_quorum": 5`), "admin_quorum", "admins"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := genesis.Parse([]byte(c.doc))
			var e *genesis.Error
			if !errors.As(err, &e) || !errors.Is(err, genesis.ErrInvalid) {
				t.Fatalf("Parse = %v, want a *genesis.Error", err)
			}
			if e.Path != c.path || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q (path %q), want path %q mentioning %q", err, e.Path, c.path, c.msg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line", err)
			}
		})
	}
}

// TestCommand: the ledger command carries the sorted document and its
// hash; FromCommand rebuilds the same document; VerifyCommand accepts it
// against its hash only; a command edited under the same hash is refused;
// the command initialises a real FSM, which records the hash and node set.
func TestCommand(t *testing.T) {
	g := valid(t)
	slices.Reverse(g.Operators)
	c := ledger.GenesisCommand(g)
	if c.Hash != g.Hash() || c.ClusterID != "prod-1" || c.AdminQuorum != 2 || c.MaxApprovalValidity != 48*time.Hour ||
		string(c.Rules) != g.Rules || len(c.Nodes) != 3 || len(c.Devices) != 4 {
		t.Fatalf("command %+v", c)
	}
	if !slices.IsSortedFunc(c.Operators, func(a, b quorum.Operator) int { return strings.Compare(a.ID, b.ID) }) {
		t.Fatal("command operators not in canonical order")
	}
	back, err := ledger.GenesisDocument(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Canonical(), g.Canonical()) {
		t.Fatal("FromCommand did not rebuild the document")
	}
	if err := ledger.VerifyGenesisCommand(c, g.Hash()); err != nil {
		t.Fatal(err)
	}
	if err := ledger.VerifyGenesisCommand(c, strings.Repeat("0", 64)); !errors.Is(err, genesis.ErrHashMismatch) {
		t.Fatalf("VerifyCommand against another hash: %v", err)
	}
	for name, edit := range map[string]func(*ledger.Genesis){
		"an added node":   func(c *ledger.Genesis) { c.Nodes = append(c.Nodes, ledgertest.Nodes("n9")...) },
		"a promoted role": func(c *ledger.Genesis) { c.Operators[3].Roles = []quorum.Role{quorum.RoleAdmin} },
		"a swapped key": func(c *ledger.Genesis) {
			d := ledgertest.NewOperator("mallory", quorum.KindHuman).Device()
			d.OperatorID, d.Label = c.Devices[0].OperatorID, c.Devices[0].Label
			c.Devices[0] = d
		},
		"a lower quorum":    func(c *ledger.Genesis) { c.AdminQuorum = 1 },
		"a longer ceiling":  func(c *ledger.Genesis) { c.MaxApprovalValidity = 72 * time.Hour },
		"other rules":       func(c *ledger.Genesis) { c.Rules = append(slices.Clone(c.Rules), "# x\n"...) },
		"an invalid ledger": func(c *ledger.Genesis) { c.Nodes = nil },
	} {
		bad := ledger.GenesisCommand(g)
		edit(&bad)
		want := genesis.ErrHashMismatch
		if name == "an invalid ledger" {
			want = genesis.ErrInvalid
		}
		if err := ledger.VerifyGenesisCommand(bad, g.Hash()); !errors.Is(err, want) {
			t.Errorf("%s under the pinned hash: %v, want %v", name, err, want)
		}
	}

	f := ledger.NewFSM(nil, nil)
	entry, err := ledger.EncodeCommand("ceremony", time.Now(), c)
	if err != nil {
		t.Fatal(err)
	}
	res := f.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: entry})
	if err, ok := res.(error); ok {
		t.Fatal(err)
	}
	_ = f.Read(func(st *ledger.State) error {
		if st.GenesisHash != g.Hash() || len(st.Nodes) != 3 || st.Nodes["n2"].KeyFingerprint != g.Nodes[1].KeyFingerprint ||
			st.Registry.ClusterID != "prod-1" || st.ActiveRules != g.RulesHash || st.MaxApprovalValidity != 48*time.Hour {
			t.Fatalf("the FSM did not take the genesis: hash %q nodes %v", st.GenesisHash, st.Nodes)
		}
		return nil
	})
}

// TestLedgertestGenesis: the test harness's genesis command is the command
// of a valid genesis document and names its hash.
func TestLedgertestGenesis(t *testing.T) {
	c := ledgertest.Genesis("ledger-test", 2, rulesYAML(t), ops...)
	g, err := ledger.GenesisDocument(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.VerifyGenesisCommand(c, g.Hash()); err != nil {
		t.Fatal(err)
	}
}
