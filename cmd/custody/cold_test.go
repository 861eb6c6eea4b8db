package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/cold"
	"github.com/custody-dev/custody/cold/coldtest"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

// coldCLI is one ceremony run through `custody ceremony keygen` (1-of-2:
// any two custodians sign) and an ETH bundle for its wallet.
type coldCLI struct {
	ceremonyRun
	fixture *coldtest.Fixture
	bundle  string
}

// withPINFile is args with custodian's --pin-file replaced by file.
func (c *coldCLI) withPINFile(args []string, custodian, file string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == custodian+"="+c.pinFiles[custodian] {
			out[i] = custodian + "=" + file
		}
	}
	return out
}

func (c *coldCLI) signArgs(bundle, out string, names ...string) []string {
	args := []string{"cold", "sign", "--bundle", bundle, "--genesis-hash", c.fixture.GenesisHash, "--out", out, "--module", c.module, "--yes"}
	for _, n := range names {
		args = append(args, "--share", filepath.Join(c.dir, cold.ShareFileName(n)))
	}
	return append(args, c.pinArgs(names...)...)
}

func newColdCLI(t *testing.T) *coldCLI {
	t.Helper()
	coldKeygenOptions = cold.KeygenOptions{PreParams: func(i int) preparams.Generator { return tsstest.FixtureSource(i, 6) }}
	t.Cleanup(func() { coldKeygenOptions = cold.KeygenOptions{} })
	c := &coldCLI{ceremonyRun: cliCeremony(t, filepath.Join(t.TempDir(), "ceremony"), "wallet: cold-cli\nchain: eth\nchain_id: 1337\nnetwork: devnet\n")}
	if !strings.Contains(c.stdout, "test-signed by [[ann ben] [ann ben]]") {
		t.Fatalf("ceremony keygen printed %q", c.stdout)
	}
	// Run again into the same directory: refused before any token is
	// opened, nothing overwritten.
	before, _ := os.ReadFile(filepath.Join(c.dir, "wallet.json"))
	code, _, stderr := runCLI(append([]string{"ceremony", "keygen", "--config", c.config, "--out", c.dir}, c.pinArgs("ann", "ben")...)...)
	oneLineErr(t, code, stderr, "exists")
	if after, _ := os.ReadFile(filepath.Join(c.dir, "wallet.json")); string(after) != string(before) {
		t.Fatal("a second keygen changed wallet.json")
	}

	var pw cold.PublicWallet
	wb, err := os.ReadFile(filepath.Join(c.dir, "wallet.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(wb, &pw); err != nil {
		t.Fatal(err)
	}
	tb, err := os.ReadFile(filepath.Join(c.dir, "transcript.json"))
	if err != nil {
		t.Fatal(err)
	}
	c.fixture = coldtest.NewFixture(t, coldtest.Spec(pw.Spec, "eth"), fmt.Sprintf("%x", sha256.Sum256(tb)))
	c.bundle = writeTemp(t, "bundle.json", string(c.fixture.Bundle.Encode()))
	return c
}

// TestColdCLI: `custody ceremony keygen` over two SoftHSM tokens, then
// `custody cold sign` refusals (each exits 1 with one line and writes
// nothing), then the signing itself as a child process inside a network
// namespace with only loopback (`unshare -rn`), without --allow-network;
// `custody cold verify` accepts the signed bundle.
func TestColdCLI(t *testing.T) {
	c := newColdCLI(t)
	out := filepath.Join(t.TempDir(), "signed.json")
	noOutput := func(t *testing.T) {
		t.Helper()
		noFile(t, out)
		noFile(t, out+".transcript.json")
	}
	tampered := func(edit func(b *cold.Bundle)) string {
		b, err := cold.ParseBundle(c.fixture.Bundle.Encode())
		if err != nil {
			t.Fatal(err)
		}
		edit(b)
		return writeTemp(t, "tampered.json", string(b.Encode()))
	}
	wrongPIN := writeTemp(t, "wrong.pin", "000000\n")
	existing := writeTemp(t, "existing.json", "keep")
	for _, tc := range []struct {
		name    string
		args    []string
		upIface bool
		want    string
	}{
		{"a non-loopback interface up", c.signArgs(c.bundle, out, "ann", "ben"), true, "eth9"},
		{"the output exists", c.signArgs(c.bundle, existing, "ann", "ben"), false, "exists"},
		{"a bundle edited after export", c.signArgs(tampered(func(b *cold.Bundle) { b.Request.Amount = coldtest.Amount(t, "4000000000000000000") }), out, "ann", "ben"), false, "not attested"},
		{"a changed amount, attested again", c.signArgs(tampered(func(b *cold.Bundle) {
			b.Request.Amount = coldtest.Amount(t, "4000000000000000000")
			coldtest.Attest(t, b, ledgertest.GenesisNodes...)
		}), out, "ann", "ben"), false, "amount"},
		{"another genesis pinned", append(c.signArgs(c.bundle, out, "ann", "ben"), "--genesis-hash", strings.Repeat("ab", 32)), false, "pinned"},
		{"too few custodians", c.signArgs(c.bundle, out, "ann"), false, "needs 2"},
		{"the same custodian twice", c.signArgs(c.bundle, out, "ann", "ann"), false, "twice"},
		{"a wrong PIN", c.withPINFile(c.signArgs(c.bundle, out, "ann", "ben"), "ben", wrongPIN), false, "PIN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.upIface {
				coldInterfaces = func() ([]net.Interface, error) {
					return []net.Interface{{Name: "lo", Flags: net.FlagUp | net.FlagLoopback}, {Name: "eth9", Flags: net.FlagUp}}, nil
				}
				defer func() { coldInterfaces = net.Interfaces }()
			} else {
				args = append(args, "--allow-network")
			}
			code, _, stderr := runCLI(args...)
			oneLineErr(t, code, stderr, tc.want)
			noOutput(t)
			if b, _ := os.ReadFile(existing); string(b) != "keep" {
				t.Fatal("the existing output was changed")
			}
		})
	}

	// The signing, offline: a child process in a network namespace with
	// only loopback.
	if _, err := exec.LookPath("unshare"); err != nil {
		unavailable(t, "unshare: "+err.Error())
	}
	if err := exec.Command("unshare", "-rn", "true").Run(); err != nil {
		unavailable(t, "user namespaces unavailable (unshare -rn true: "+err.Error()+")")
	}
	cmd := exec.Command("unshare", append([]string{"-rn", os.Args[0]}, c.signArgs(c.bundle, out, "ann", "ben")...)...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	outb, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cold sign in a network namespace: %v\n%s", err, outb)
	}
	if !strings.Contains(string(outb), "signed request w-eth-1") {
		t.Fatalf("cold sign printed %q", outb)
	}
	code, stdout, stderr := runCLI("cold", "verify", "--bundle", out, "--genesis-hash", c.fixture.GenesisHash)
	if code != 0 || !strings.Contains(stdout, "verifies") {
		t.Fatalf("cold verify of the signed bundle: exit %d: %s%s", code, stdout, stderr)
	}
	var tr coldSignTranscript
	tb, err := os.ReadFile(out + ".transcript.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(tb, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.BundleHash != c.fixture.Bundle.Hash() || tr.GenesisHash != c.fixture.GenesisHash || strings.Join(tr.Custodians, ",") != "ann,ben" {
		t.Fatalf("transcript %+v", tr)
	}
}

// unavailable skips where a sandbox lacks user namespaces, but fails under
// CI=true, where they must be available.
func unavailable(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: the offline signing test must run)", why)
	}
	t.Skip(why)
}
