package custody_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/custody-dev/custody"

// layers is the import layering of the module, top to bottom: each of our
// packages and the packages of ours it may import (non-test imports). A
// package missing from the table fails the test, so a new package is placed
// deliberately. "*" means any package of ours.
//
//	cmd/custody                     the CLI, on top of everything
//	daemon                          node configuration and node run; only cmd imports it
//	api/...                         HTTPS handlers and clients (node RPC): thin, above withdraw, member and ledger
//	withdraw                        the leader's orchestration, above the ledger
//	signer/member                   reads the ledger; the ledger never imports signer code
//	cold                            the offline ceremonies: no raft, no network code of ours
//	signer/...                      tss engine, presign, transport, shares, watermark
//	ledger                          above the genesis document, policy and quorum
//	genesis                         the genesis document (no ledger: the offline side reads it)
//	policy, quorum                  pure rules and approvals
//	chains/..., hsm, pki, amount    import nothing of ours but amount (and chains for adapters)
//	strictdoc, newfile              the strict JSON/YAML reader, the O_EXCL file writer; import nothing of ours
var layers = map[string][]string{
	"cmd/custody": {"*"},

	// The node: its config and `node run`'s wiring (ledger, engine,
	// member, withdraw, chains, node RPC). Nothing imports it but cmd/custody.
	"daemon": {"api/noderpc", "api/rest", "api/webhook", "api/requestid", "withdraw", "signer/member", "signer/tss", "signer/transport", "signer/shares", "signer/watermark",
		"signer/preparams", "chains", "chains/eth", "chains/btc", "genesis", "ledger", "policy", "quorum", "pki", "hsm", "strictdoc", "newfile", "amount"},

	// The devnet: a whole cluster on one machine, driven through the
	// custody binary and the APIs (development tooling; only the CLI
	// imports it); signer/preparams for its pre-params cache.
	"devnet": {"daemon", "api/noderpc", "api/rest", "chains/btc", "chains/btc/btcdproc", "chains/eth", "chains/eth/devtoken", "chains/eth/gethproc",
		"ledger", "policy", "quorum", "pki", "amount", "signer/preparams"},

	// The benchmark of a devnet through its APIs (custody bench) and of
	// plain tss-lib beside it (development tooling; only the CLI imports
	// it).
	"bench": {"devnet", "api/rest", "policy", "quorum", "pki", "amount", "signer/preparams"},

	// The node-to-node RPC: handlers and client over the ledger and the
	// member; no business logic, never the daemon.
	"api/noderpc": {"api/requestid", "ledger", "signer/member", "signer/tss", "pki", "quorum", "amount"},

	// The backend API: handlers over an interface the daemon implements;
	// no business logic, never the daemon or withdraw.
	"api/rest": {"api/requestid", "ledger", "policy", "quorum", "amount", "pki", "chains", "chains/eth", "chains/btc", "cold"},

	// The request ID of an API request, carried through the node RPC into
	// every log line of that request; imports nothing of ours.
	"api/requestid": {},

	// Webhooks: the leader's outbox, derived from the ledger and rendered
	// as the backend API shows a withdrawal; never the daemon.
	"api/webhook": {"api/rest", "ledger"},

	"withdraw":      {"signer/member", "signer/tss", "ledger", "policy", "quorum", "chains", "chains/eth", "chains/btc", "pki", "amount"},
	"signer/member": {"ledger", "policy", "quorum", "signer/tss", "signer/shares", "signer/watermark", "chains", "pki", "amount"},

	// The offline side of cold wallets: ceremony, bundle, offline
	// verification and signing. No raft, no network code of ours (no
	// ledger, api, daemon, withdraw, signer/transport); TestColdOffline
	// checks its whole dependency graph holds no raft.
	"cold": {"genesis", "policy", "quorum", "pki", "amount", "chains", "chains/eth", "chains/btc", "hsm",
		"signer/tss", "signer/preparams", "strictdoc", "newfile"},

	"signer/presign":   {"signer/tss", "pki"},
	"signer/transport": {"signer/tss", "pki"},
	"signer/shares":    {"signer/tss", "hsm", "pki"},
	"signer/tss":       {"signer/preparams", "pki"},
	"signer/watermark": {},
	"signer/preparams": {},

	"genesis": {"policy", "quorum", "pki", "strictdoc", "amount"},

	"ledger": {"genesis", "policy", "quorum", "pki", "amount"},
	"policy": {"quorum", "amount"},
	"quorum": {},

	"chains":     {"amount"},
	"chains/eth": {"chains", "amount"},
	"chains/btc": {"chains", "amount"},
	"hsm":        {"amount"},
	"pki":        {},
	"amount":     {},
	"strictdoc":  {},
	"newfile":    {},

	// Development tooling: the SoftHSM2 provisioning the CLI's "softhsm"
	// command (and the devnet) uses, the btcd and geth process runners of
	// the devnet and the tests, and the fixture generator.
	"softhsm":                          {"hsm"},
	"chains/btc/btcdproc":              {},
	"chains/eth/gethproc":              {},
	"chains/eth/devtoken":              {},
	"signer/preparams/cmd/genfixtures": {"signer/preparams"},

	// Deployment files and their tests (systemd units, examples, the
	// container file, the runbook); no code of its own.
	"deploy": {},

	// Test support: importable from _test.go files only (checked below).
	"ledger/ledgertest":   {"genesis", "ledger", "pki", "quorum"},
	"signer/tss/tsstest":  {"signer/tss", "signer/preparams", "pki"},
	"softhsm/softhsmtest": {"softhsm", "hsm"},
	"amount/amounttest":   {"amount"},
	"cold/coldtest":       {"cold", "genesis", "ledger", "ledger/ledgertest", "pki", "policy", "quorum", "amount", "chains/eth", "chains/btc"},
	"chains/btc/btctest":  {"chains/btc/btcdproc"},
	"leaktest":            {}, // secrets in every encoding, found in captured logs
	"chains/eth/gethtest": {"chains/eth/gethproc"},
	"":                    {}, // this package: documentation and this test
}

// testSupport are packages only tests may import.
func testSupport(pkg string) bool {
	return strings.HasSuffix(pkg, "test") && pkg != ""
}

// mayImportSoftHSM are the only production packages that may provision
// SoftHSM2 tokens (development tooling, never a signing path).
// TestColdOffline: nothing the offline cold signer links pulls in raft
// or custody's network packages.
func TestColdOffline(t *testing.T) {
	for _, p := range goList(t, "-deps", module+"/cold") {
		for _, banned := range []string{"github.com/hashicorp/raft", module + "/ledger", module + "/api/", module + "/daemon", module + "/signer/transport", module + "/withdraw"} {
			if p.ImportPath == banned || strings.HasPrefix(p.ImportPath, banned+"/") || (strings.HasSuffix(banned, "/") && strings.HasPrefix(p.ImportPath, banned)) {
				t.Errorf("cold depends on %s", p.ImportPath)
			}
		}
	}
}

var mayImportSoftHSM = []string{"cmd/custody", "softhsm/softhsmtest", "devnet"}

// testingImporters are third-party packages known to import "testing" from
// non-test code; nothing else in the binary may. hashicorp/raft v1.7.3 keeps
// its in-memory test cluster helpers in testing.go of package raft, so the
// linker keeps testing's init (its functions are dead-code eliminated).
//
// signer/preparams is ours and imports testing for testing.Testing() only:
// it is how the committed pre-param fixtures (public, test-only) are refused
// in every binary that is not a test binary, the custody node included.
var testingImporters = []string{"github.com/hashicorp/raft", module + "/signer/preparams"}

type listed struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Standard   bool
}

func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-json"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if ok := asExit(err, &ee); ok {
			t.Fatalf("go list %v: %v: %s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

func ours(path string) (string, bool) {
	if path == module {
		return "", true
	}
	rest, ok := strings.CutPrefix(path, module+"/")
	return rest, ok
}

// TestLayering fails on any import that runs against the table.
func TestLayering(t *testing.T) {
	for _, p := range goList(t, "./...") {
		pkg, _ := ours(p.ImportPath)
		may, known := layers[pkg]
		if !known {
			t.Errorf("package %q is not in the layering table (layering_test.go): place it", pkg)
			continue
		}
		for _, imp := range p.Imports {
			dep, isOurs := ours(imp)
			if !isOurs {
				continue
			}
			if testSupport(dep) && !testSupport(pkg) {
				t.Errorf("%s imports the test-support package %s outside tests", pkg, dep)
			}
			if dep == "softhsm" && !slices.Contains(mayImportSoftHSM, pkg) {
				t.Errorf("%s imports softhsm; only development tooling may", pkg)
			}
			if !slices.Contains(may, "*") && !slices.Contains(may, dep) {
				t.Errorf("%s imports %s, which the layering does not allow (may import %v)", pkg, dep, may)
			}
		}
	}
}

// TestBinaryLinksNoTestCode: nothing the custody binary is built from
// imports "testing" or a test-support package, except the known third-party
// importers.
func TestBinaryLinksNoTestCode(t *testing.T) {
	deps := goList(t, "-deps", "./cmd/custody")
	if !slices.ContainsFunc(deps, func(p listed) bool { return p.ImportPath == module+"/ledger" }) {
		t.Fatal("go list -deps did not list the binary's dependencies")
	}
	for _, p := range deps {
		if pkg, isOurs := ours(p.ImportPath); isOurs && testSupport(pkg) {
			t.Errorf("the binary links the test-support package %s", pkg)
		}
		if p.Standard || !slices.Contains(p.Imports, "testing") {
			continue
		}
		if !slices.Contains(testingImporters, p.ImportPath) {
			t.Errorf("%s imports testing and the custody binary links it", p.ImportPath)
		}
	}
}
