package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/cold"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/devnet"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/tss/tsstest"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

// coldWait bounds each wait of the cold path on the devnet (a
// confirmation needs a few of the kept devnet's blocks: an Ethereum block
// every 2 s); it only limits hangs.
const coldWait = 2 * time.Minute

// coldLeg is one chain's cold wallet on the devnet: its ceremony, the hot
// wallet that funds it, and the withdrawal it signs offline.
type coldLeg struct {
	chain, network, wallet, hot, asset string
	decimals                           int
	// ceremony is the ceremony file's chain lines.
	ceremony string
	// fund is what the hot wallet sends the cold one, send what the cold
	// one sends the destination (whole units).
	fund, send string
	// Filled in as the flow goes.
	run                      ceremonyRun
	address, dest            string
	fundID, id               string
	bundle, signed, exporter string
	// txHash is the transaction `cold sign` signed (its transcript's).
	txHash string
}

// coldDevnet is the kept devnet as the cold path sees it: devnet.json,
// the genesis hash a node pins, the backend's HTTPS client, the chains'
// own RPC clients.
type coldDevnet struct {
	info    devnet.Info
	genesis string
	backend *http.Client
	eth     *ethclient.Client
	btc     *rpcclient.Client
	btcNet  *chaincfg.Params
}

// coldOnDevnet is issue #15's whole cold path on TestDevnetStory's kept
// devnet (four node processes, the embedded Ethereum chain over JSON-RPC,
// btcd regtest), for ETH and BTC side by side, everything through the
// CLI: `custody ceremony keygen` over two fresh SoftHSM tokens per wallet
// (1-of-2); `custody wallet register` by alice and `custody changes
// approve` by bob; the cold addresses and two fresh destinations
// allowlisted by both; the cold wallets funded by the product itself
// (`custody initiate` for the backend's signed create, `custody approve`
// by alice and bob, signed and broadcast by the hot committees, confirmed);
// from each cold wallet a withdrawal to its destination, approved, routed
// cold; `custody cold export`, `custody cold verify` pinned to a node
// config's genesis hash, `custody cold sign` as a child process in a
// network namespace with only loopback (`unshare -rn`, no
// --allow-network), `custody cold import`; the ETH transaction mined with
// a successful receipt on the chain's JSON-RPC and the BTC one confirmed
// on btcd, each destination paid exactly the amount. On the way, refusals
// on the real cluster, each exit 1 with one line and nothing written or
// changed: an export to a file that exists, an export of a hot request, a
// second export, an import of the unsigned bundle.
//
// ceremonies are the keygen ceremonies startColdCeremonies started while
// the story ran; nil starts them here.
func coldOnDevnet(t *testing.T, dir string, ceremonies *coldCeremonies) {
	t.Run("cold path", func(t *testing.T) {
		if why := coldPathUnavailable(); why != "" {
			unavailable(t, why)
		}
		start := time.Now()
		phase := func(what string) { t.Logf("%5.1fs %s", time.Since(start).Seconds(), what) }
		d := openColdDevnet(t, dir)
		// The operators' profiles (custody login, written by the devnet):
		// alice against n1's API, bob against n2's.
		t.Setenv(configDirEnv, filepath.Join(dir, "operators"))
		if ceremonies == nil {
			ceremonies = startColdCeremonies(t, dir)
		}

		// 1. The keygen ceremonies, offline (in-process here: no network
		// is used).
		legs := ceremonies.wait(t)
		for _, l := range legs {
			var tr cold.Transcript
			if err := json.Unmarshal([]byte(l.run.stdout), &tr); err != nil || tr.Address == "" {
				t.Fatalf("ceremony keygen's report %q: %v", l.run.stdout, err)
			}
			l.address, l.dest = tr.Address, d.freshAddress(t, l.chain)
		}
		phase("keygen ceremonies done")

		// 2. Registration: alice proposes, bob approves after reading it.
		for _, l := range legs {
			var v rest.ChangeView
			cliJSON(t, &v, "wallet", "register", "--profile", "alice", "--wallet-file", filepath.Join(l.run.dir, "wallet.json"),
				"--transcript", filepath.Join(l.run.dir, "transcript.json"), "--id", "register-"+l.wallet, "--yes")
			if v.Status != rest.ChangeCollecting {
				t.Fatalf("wallet register %s: %s, want %s", l.wallet, v.Status, rest.ChangeCollecting)
			}
			cliJSON(t, &v, "changes", "show", "register-"+l.wallet, "--profile", "bob")
			if !strings.Contains(v.Description, "custodians [ann ben], any 2 sign; ceremony transcript sha256 "+fileSHA256(t, filepath.Join(l.run.dir, "transcript.json"))) {
				t.Fatalf("bob reads %q: not the ceremony's custodians and transcript", v.Description)
			}
			approveChange(t, "register-"+l.wallet)
		}
		for _, l := range legs {
			ledgertest.PollFor(t, coldWait, l.wallet+" active on alice's node", every(250*time.Millisecond, func() error {
				var w rest.WalletView
				if err := runJSON(&w, "wallet", "show", l.wallet, "--profile", "alice"); err != nil {
					return err
				}
				if w.Status != "active" || w.Address != l.address {
					return fmt.Errorf("%s is %s at %q, the ceremony printed %s", l.wallet, w.Status, w.Address, l.address)
				}
				return nil
			}))
		}
		phase("wallets registered")

		// 3. The allowlist: each cold address (the hot wallets pay them)
		// and each destination, by alice and bob. The story leaves
		// eth-hot-1's next nonces held by requests it never signs (one
		// routed cold, one waiting): alice rejects them while the entries
		// cool off, so the hot wallet's next transaction can be mined.
		var allowed, changes []string
		for _, l := range legs {
			for i, addr := range []string{l.address, l.dest} {
				id := fmt.Sprintf("allow-%s-%d", l.wallet, i)
				var v rest.ChangeView
				cliJSON(t, &v, "allowlist", "add", "--profile", "alice", "--chain", l.chain, "--network", l.network, "--address", addr,
					"--label", "cold path", "--id", id, "--yes")
				approveChange(t, id)
				allowed, changes = append(allowed, addr), append(changes, id)
			}
		}
		for _, l := range legs {
			var open requestsList
			cliJSON(t, &open, "requests", "list", "--profile", "alice", "--wallet", l.hot, "--all")
			for _, r := range open.Requests {
				if !slices.Contains([]string{"pending_approval", "approved", "awaiting_ceremony"}, r.Withdrawal.Status) {
					continue
				}
				var v rest.RequestView
				cliJSON(t, &v, "reject", r.Withdrawal.ID, "--profile", "alice", "--reason", "clears the hot wallet's nonces for the cold path test")
				if v.Withdrawal.Status != "rejected" {
					t.Fatalf("reject %s: %s", r.Withdrawal.ID, v.Withdrawal.Status)
				}
			}
		}
		d.waitCooledOff(t, changes)
		for id := range d.info.APIs {
			ledgertest.PollFor(t, coldWait, "the cold path's allowlist entries active on "+string(id), every(250*time.Millisecond, func() error {
				var list struct {
					Allowlist []rest.AllowlistView `json:"allowlist"`
				}
				if err := runJSON(&list, "allowlist", "list", "--profile", "bob", "--server", d.info.APIs[id]); err != nil {
					return err
				}
				for _, a := range allowed {
					if !slices.ContainsFunc(list.Allowlist, func(e rest.AllowlistView) bool { return e.Address == a && e.Active }) {
						return fmt.Errorf("%s not active", a)
					}
				}
				return nil
			}))
		}
		phase("allowlist entries cooled off")

		// 4. Funding by the product: the hot wallets pay the cold ones.
		for _, l := range legs {
			l.fundID = "fund-" + l.wallet
			d.createApproved(t, l.fundID, l.hot, l.asset, l.address, l.fund, "hot")
		}
		for _, l := range legs {
			v := d.waitConfirmed(t, l.fundID)
			d.checkPaid(t, l, v.Signed.TxHash, l.address, l.fund)
		}
		phase("cold wallets funded, confirmed")

		// 5. From each cold wallet: a withdrawal to its destination,
		// approved, routed cold.
		for _, l := range legs {
			l.id = "wd-" + l.wallet
			d.createApproved(t, l.id, l.wallet, l.asset, l.dest, l.send, "cold")
		}
		for _, l := range legs {
			ledgertest.PollFor(t, coldWait, l.id+" awaiting its ceremony", every(250*time.Millisecond, func() error {
				if v := d.get(t, l.id); v.Status != "awaiting_ceremony" || v.LedgerStatus != "approved" {
					return fmt.Errorf("%s is %s (ledger %s)", l.id, v.Status, v.LedgerStatus)
				}
				return nil
			}))
		}
		phase("cold withdrawals approved")

		// 6. Export, each through another node than the profile's.
		existing := writeTemp(t, "existing.json", "keep")
		for i, l := range legs {
			l.exporter = d.info.APIs[[]pki.NodeID{"n3", "n4"}[i]]
			l.bundle = filepath.Join(t.TempDir(), "bundle.json")
			l.signed = filepath.Join(filepath.Dir(l.bundle), "signed.json")
			// Refused before anything is asked of the node: the file
			// exists. The request stays exportable (below).
			code, _, stderr := runCLI("cold", "export", l.id, "--out", existing, "--profile", "bob", "--server", l.exporter)
			oneLineErr(t, code, stderr, "exists")
			if b, _ := os.ReadFile(existing); string(b) != "keep" {
				t.Fatal("cold export changed a file that existed")
			}
			// A hot request has nothing to export: the node refuses, no
			// file, the request unchanged.
			hot := filepath.Join(t.TempDir(), "hot.json")
			code, _, stderr = runCLI("cold", "export", l.fundID, "--out", hot, "--profile", "bob", "--server", l.exporter)
			oneLineErr(t, code, stderr, "export needs an approved cold request")
			noFile(t, hot)
			if v := d.get(t, l.fundID); v.Status != "confirmed" {
				t.Fatalf("%s is %s after a refused export", l.fundID, v.Status)
			}

			var ex map[string]string
			cliJSON(t, &ex, "cold", "export", l.id, "--out", l.bundle, "--profile", "bob", "--server", l.exporter)
			b, err := readBundle(l.bundle)
			if err != nil {
				t.Fatal(err)
			}
			if ex["bundle_hash"] != b.Hash() || ex["file"] != l.bundle || b.Request.ID != l.id {
				t.Fatalf("cold export reported %v; the file holds request %s hashing to %s", ex, b.Request.ID, b.Hash())
			}
			// Exported once: exporting again (another operator, another
			// node) fetches the same bundle, attestations included, and
			// changes nothing in the ledger.
			again := filepath.Join(t.TempDir(), "again.json")
			var ex2 map[string]string
			cliJSON(t, &ex2, "cold", "export", l.id, "--out", again, "--profile", "alice")
			b2, err := readBundle(again)
			if err != nil {
				t.Fatal(err)
			}
			if ex2["bundle_hash"] != b.Hash() || b2.Hash() != b.Hash() || len(b2.Attestations) < 3 {
				t.Fatalf("a second export answered bundle %s with %d attestations, the first %s", b2.Hash(), len(b2.Attestations), b.Hash())
			}
			// The unsigned bundle is refused by import, the request stays
			// exported.
			code, _, stderr = runCLI("cold", "import", "--bundle", l.bundle, "--profile", "bob")
			oneLineErr(t, code, stderr, "not signed")
			if v := d.get(t, l.id); v.Status != "awaiting_ceremony" || v.LedgerStatus != "exported" || v.Signed != nil {
				t.Fatalf("%s after a refused import: %s (ledger %s)", l.id, v.Status, v.LedgerStatus)
			}
			out := cliOK(t, "cold", "verify", "--bundle", l.bundle, "--genesis-hash", d.genesis)
			if !strings.Contains(out, "bundle "+b.Hash()+" verifies") {
				t.Fatalf("cold verify printed %q", out)
			}
		}
		phase("exported, refusals checked, verified")

		// 7. The signing, offline: the test binary as `custody cold sign`
		// in a network namespace with only loopback.
		for _, l := range legs {
			args := []string{"-rn", os.Args[0], "cold", "sign", "--bundle", l.bundle, "--genesis-hash", d.genesis, "--out", l.signed,
				"--module", l.run.module, "--yes"}
			for _, n := range []string{"ann", "ben"} {
				args = append(args, "--share", filepath.Join(l.run.dir, cold.ShareFileName(n)), "--pin-file", n+"="+l.run.pinFiles[n])
			}
			cmd := exec.Command("unshare", args...)
			cmd.Env = append(os.Environ(), execEnv+"=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("cold sign in a network namespace: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "signed request "+l.id+": transaction ") {
				t.Fatalf("cold sign printed %q", out)
			}
		}
		phase("signed offline")

		// 8. Import through the other exporter; the leader broadcasts.
		for i, l := range legs {
			var tr coldSignTranscript
			if err := json.Unmarshal(mustRead(t, l.signed+".transcript.json"), &tr); err != nil {
				t.Fatal(err)
			}
			var v rest.RequestView
			cliJSON(t, &v, "cold", "import", "--bundle", l.signed, "--profile", "bob", "--server", legs[1-i].exporter)
			if v.Withdrawal.ID != l.id || v.Withdrawal.Signed == nil || v.Withdrawal.Signed.TxHash != tr.TxHash || tr.GenesisHash != d.genesis {
				t.Fatalf("cold import answered %+v; the signing transcript says %+v", v.Withdrawal, tr)
			}
			l.txHash = tr.TxHash
		}
		for _, l := range legs {
			if v := d.waitConfirmed(t, l.id); v.Signed.TxHash != l.txHash {
				t.Fatalf("%s confirmed with %s, cold sign signed %s", l.id, v.Signed.TxHash, l.txHash)
			}
			d.checkPaid(t, l, l.txHash, l.dest, l.send)
		}
		phase("imported, confirmed, paid")
	})
}

// coldPathUnavailable says why the cold path cannot run here ("" when it
// can): it signs in a network namespace (unshare -rn).
func coldPathUnavailable() string {
	if _, err := exec.LookPath("unshare"); err != nil {
		return "unshare: " + err.Error()
	}
	if err := exec.Command("unshare", "-rn", "true").Run(); err != nil {
		return "user namespaces unavailable (unshare -rn true: " + err.Error() + ")"
	}
	return ""
}

// coldCeremonies are the cold path's keygen ceremonies, one per leg, run
// one after the other in the background.
type coldCeremonies struct {
	legs []*coldLeg
	done chan struct{}
	err  error // the first ceremony that failed; read after done
}

// startColdCeremonies starts the cold path's keygen ceremonies (1-of-2
// ETH and BTC wallets over fresh SoftHSM tokens, the CLI in-process on
// committed pre-params fixtures) for the devnet in dir, whose devnet.json
// and node configs exist. They are offline and need nothing of the devnet
// but its chains' parameters: TestDevnetStory starts them as soon as the
// story's own keygens are done, so they use the CPU the story leaves idle
// while it waits (cooling-off, confirmations, the unlock delay).
// Cleanup waits for them.
func startColdCeremonies(t *testing.T, dir string) *coldCeremonies {
	t.Helper()
	info, _ := readDevnetInfo(t, dir)
	cfg := (&coldDevnet{info: info}).nodeConfig(t, "n1")
	if cfg.Chains.ETH == nil || cfg.Chains.BTC == nil {
		t.Fatalf("n1's chains %+v: want Ethereum and Bitcoin", cfg.Chains)
	}
	c := &coldCeremonies{done: make(chan struct{}), legs: []*coldLeg{
		{chain: "eth", network: cfg.Chains.ETH.Network, wallet: devnet.ETHColdWallet, hot: devnet.ETHWallet, asset: "ETH", decimals: 18,
			ceremony: fmt.Sprintf("chain: eth\nchain_id: %d\nnetwork: %s\n", cfg.Chains.ETH.ChainID, cfg.Chains.ETH.Network), fund: "1", send: "0.25"},
		{chain: "btc", network: cfg.Chains.BTC.Network, wallet: devnet.BTCColdWallet, hot: devnet.BTCWallet, asset: "BTC", decimals: 8,
			ceremony: fmt.Sprintf("chain: btc\nbtc_params: %s\nnetwork: %s\n", cfg.Chains.BTC.Network, cfg.Chains.BTC.Network), fund: "1", send: "0.3"},
	}}
	for _, l := range c.legs {
		l.run = newCeremony(t, filepath.Join(t.TempDir(), l.wallet), "wallet: "+l.wallet+"\n"+l.ceremony)
	}
	coldKeygenOptions = cold.KeygenOptions{PreParams: func(i int) preparams.Generator { return tsstest.FixtureSource(i, 6) }}
	// Registered after the tokens' cleanups: runs before them.
	t.Cleanup(func() {
		<-c.done
		coldKeygenOptions = cold.KeygenOptions{}
	})
	go func() {
		defer close(c.done)
		for _, l := range c.legs {
			if err := l.run.keygen("-o", "json"); err != nil {
				c.err = fmt.Errorf("%s: %w", l.wallet, err)
				return
			}
		}
	}()
	return c
}

// wait waits for the ceremonies and returns the legs, each with its
// ceremony's outputs; a failed ceremony fails t.
func (c *coldCeremonies) wait(t *testing.T) []*coldLeg {
	t.Helper()
	<-c.done
	if c.err != nil {
		t.Fatal(c.err)
	}
	return c.legs
}

// ceremonyRun is one `custody ceremony keygen`: a 1-of-2 wallet over two
// fresh SoftHSM tokens, custodians ann and ben, with a PIN file each.
type ceremonyRun struct {
	dir, config, module string
	pinFiles            map[string]string
	stdout              string
}

func (r ceremonyRun) pinArgs(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, "--pin-file", n+"="+r.pinFiles[n])
	}
	return out
}

// cliCeremony runs `custody ceremony keygen ARGS` into dir for a 1-of-2
// wallet over two fresh SoftHSM tokens (ann and ben); head is the
// ceremony file's lines naming the wallet, chain and network. The caller
// sets coldKeygenOptions (committed pre-params fixtures).
func cliCeremony(t *testing.T, dir, head string, args ...string) ceremonyRun {
	t.Helper()
	r := newCeremony(t, dir, head)
	if err := r.keygen(args...); err != nil {
		t.Fatal(err)
	}
	return r
}

// newCeremony makes cliCeremony's tokens, PIN files and ceremony file;
// keygen runs the ceremony.
func newCeremony(t *testing.T, dir, head string) ceremonyRun {
	t.Helper()
	r := ceremonyRun{dir: dir, pinFiles: map[string]string{}}
	var cfg strings.Builder
	cfg.WriteString("version: 1\n" + head + "threshold: 1\ncustodians:\n")
	for _, n := range []string{"ann", "ben"} {
		tok := softhsmtest.NewToken(t, "cli-"+n)
		r.module = tok.Module
		r.pinFiles[n] = writeTemp(t, n+".pin", tok.PIN+"\n")
		fmt.Fprintf(&cfg, "  - {name: %s, token_label: %q, token_serial: %q}\n", n, tok.TokenLabel, tok.TokenSerial)
	}
	fmt.Fprintf(&cfg, "module: %q\n", r.module)
	r.config = writeTemp(t, "ceremony.yaml", cfg.String())
	return r
}

// keygen runs `custody ceremony keygen ARGS` in-process (no t: it may run
// in the background); its output is r.stdout.
func (r *ceremonyRun) keygen(args ...string) error {
	code, stdout, stderr := runCLI(append(append([]string{"ceremony", "keygen", "--config", r.config, "--out", r.dir}, r.pinArgs("ann", "ben")...), args...)...)
	if code != 0 {
		return fmt.Errorf("ceremony keygen: exit %d: %s", code, stderr)
	}
	r.stdout = stdout
	return nil
}

// cliOK runs the CLI in-process and returns its stdout; a non-zero exit
// fails t.
func cliOK(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(args...)
	if code != 0 {
		t.Fatalf("custody %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// runJSON runs the CLI in-process with -o json and decodes its answer
// into out.
func runJSON(out any, args ...string) error {
	code, b, errOut := runCLI(append(args, "-o", "json")...)
	if code != 0 {
		return fmt.Errorf("custody %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(errOut))
	}
	if err := json.Unmarshal([]byte(b), out); err != nil {
		return fmt.Errorf("custody %s: %w: %q", strings.Join(args, " "), err, b)
	}
	return nil
}

// cliJSON is runJSON failing t on an error.
func cliJSON(t *testing.T, out any, args ...string) {
	t.Helper()
	if err := runJSON(out, args...); err != nil {
		t.Fatal(err)
	}
}

// approveChange: bob, the second admin, approves change id, which applies.
func approveChange(t *testing.T, id string) {
	t.Helper()
	var v rest.ChangeView
	cliJSON(t, &v, "changes", "approve", id, "--profile", "bob", "--yes")
	if v.Status != rest.ChangeApplied {
		t.Fatalf("change %s after bob's approval: %s", id, v.Status)
	}
}

// createApproved has the backend create withdrawal id, which must wait
// for approvals on route ("hot" or "cold"), and alice and bob approve it
// (custody approve).
func (d *coldDevnet) createApproved(t *testing.T, id, wallet, asset, to, amt, route string) {
	t.Helper()
	v := d.create(t, id, wallet, asset, to, amt)
	if v.Status != "pending_approval" || v.Policy.Route != route {
		t.Fatalf("%s: %s routed %q (%s %s), want pending_approval, %s", v.ID, v.Status, v.Policy.Route, v.Policy.Reason, v.Policy.Detail, route)
	}
	for _, op := range []string{"alice", "bob"} {
		var r rest.RequestView
		cliJSON(t, &r, "approve", id, "--profile", op, "--yes")
		if r.Withdrawal.Approvals.Collected == 0 {
			t.Fatalf("%s's approval of %s: none collected", op, id)
		}
	}
}

func noFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s was written (%v)", path, err)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	sum := sha256.Sum256(mustRead(t, path))
	return hex.EncodeToString(sum[:])
}

// every makes a poll function call fn at most once per interval (PollFor
// ticks every 20 ms; the nodes' API allows each principal
// rest.DefaultRatePerMinute requests a minute).
func every(interval time.Duration, fn func() error) func() error {
	var last time.Time
	err := errors.New("not polled yet")
	return func() error {
		if time.Since(last) < interval {
			return err
		}
		last = time.Now()
		err = fn()
		return err
	}
}

// readDevnetInfo reads a kept devnet's devnet.json.
func readDevnetInfo(t *testing.T, dir string) (devnet.Info, []byte) {
	t.Helper()
	b := mustRead(t, filepath.Join(dir, "devnet.json"))
	var info devnet.Info
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	return info, b
}

// backendHTTP is an HTTPS client with the backend's certificate from
// devnet.json, trusting the cluster CA.
func backendHTTP(t *testing.T, info devnet.Info) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(info.Backend.Cert, info.Backend.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(mustRead(t, info.CA)) {
		t.Fatalf("%s holds no certificate", info.CA)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
}

// openColdDevnet reads devnet.json and a node's config (the genesis hash
// it pins, btcd's credentials) and connects to both chains' RPC.
func openColdDevnet(t *testing.T, dir string) *coldDevnet {
	t.Helper()
	info, _ := readDevnetInfo(t, dir)
	d := &coldDevnet{info: info, backend: backendHTTP(t, info)}
	t.Cleanup(d.backend.CloseIdleConnections)
	cfg := d.nodeConfig(t, "n1")
	d.genesis = cfg.Genesis.Hash
	var err error
	if d.eth, err = ethclient.Dial(info.ETHRPC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.eth.Close)
	b := cfg.Chains.BTC
	if b == nil || b.Network != "regtest" || b.RPC != info.BTCRPC {
		t.Fatalf("n1's Bitcoin config %+v, devnet.json's btcd %s: want regtest there", b, info.BTCRPC)
	}
	d.btcNet = &chaincfg.RegressionNetParams
	if d.btc, err = rpcclient.New(&rpcclient.ConnConfig{Host: b.RPC, User: b.User, Pass: strings.TrimSpace(string(mustRead(t, b.PasswordFile))),
		Certificates: mustRead(t, b.CertFile), HTTPPostMode: true}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.btc.Shutdown)
	return d
}

// nodeConfig is node id's config as the node loads it.
func (d *coldDevnet) nodeConfig(t *testing.T, id pki.NodeID) *daemon.Config {
	t.Helper()
	cfg, err := daemon.LoadConfig(filepath.Join(d.info.Dir, "cluster", "nodes", string(id), "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// freshAddress is a new address on chain whose key is thrown away.
func (d *coldDevnet) freshAddress(t *testing.T, chain string) string {
	t.Helper()
	if chain == "eth" {
		k, err := crypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		return crypto.PubkeyToAddress(k.PublicKey).Hex()
	}
	k, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(k.PubKey().SerializeCompressed()), d.btcNet)
	if err != nil {
		t.Fatal(err)
	}
	return a.EncodeAddress()
}

// call sends one backend request to n1's API; 2xx answers decode into
// out, others are an error naming the status.
func (d *coldDevnet) call(method, path string, body []byte, out any) (int, error) {
	req, err := http.NewRequest(method, d.info.APIs["n1"]+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.backend.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, json.Unmarshal(b, out)
}

// create has the backend create a withdrawal: `custody initiate` signs
// the intent with its device key, the body goes to POST /v1/withdrawals.
func (d *coldDevnet) create(t *testing.T, id, wallet, asset, to, amt string) rest.WithdrawalView {
	t.Helper()
	body := cliOK(t, "initiate", "--cluster", d.info.ClusterID, "--id", id, "--wallet", wallet, "--asset", asset, "--to", to,
		"--amount", amt, "--key", d.info.Backend.DeviceKey)
	var v rest.WithdrawalView
	ledgertest.PollFor(t, coldWait, "create "+id, every(250*time.Millisecond, func() error {
		code, err := d.call(http.MethodPost, rest.PathWithdrawals, []byte(body), &v)
		if code == http.StatusServiceUnavailable {
			return err
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	}))
	return v
}

// get reads a withdrawal as the backend.
func (d *coldDevnet) get(t *testing.T, id string) rest.WithdrawalView {
	t.Helper()
	var v rest.WithdrawalView
	if _, err := d.call(http.MethodGet, rest.PathWithdrawals+"/"+id, nil, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// waitConfirmed waits until withdrawal id is confirmed, mining btcd
// blocks while a Bitcoin transaction is short of the nodes' confirmations
// (the kept devnet mines one every 5 s; Ethereum blocks every 2 s).
func (d *coldDevnet) waitConfirmed(t *testing.T, id string) rest.WithdrawalView {
	t.Helper()
	var v rest.WithdrawalView
	ledgertest.PollFor(t, coldWait, id+" confirmed", every(250*time.Millisecond, func() error {
		v = d.get(t, id)
		switch v.Status {
		case "confirmed":
			return nil
		case "rejected", "denied", "expired", "reverted", "dropped", "replaced":
			t.Fatalf("%s ended %s (%s)", id, v.Status, v.Failure)
		case "failed":
			// The leader claims it again (daemon.MaxSigningAttempts).
			return fmt.Errorf("%s failed: %s", id, v.Failure)
		case "broadcast":
			if v.Chain == "btc" && v.Signed != nil {
				d.mineBTC(t, v.Signed.TxHash)
			}
		}
		return fmt.Errorf("%s is %s", id, v.Status)
	}))
	if v.Signed == nil {
		t.Fatalf("%s is confirmed without a transaction", id)
	}
	return v
}

// mineBTC mines one block while transaction txid is fewer than
// daemon.DefaultConfirmations deep (the devnet's nodes wait for that many).
func (d *coldDevnet) mineBTC(t *testing.T, txid string) {
	t.Helper()
	h, err := chainhash.NewHashFromStr(txid)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := d.btc.GetRawTransactionVerbose(h); err == nil && r.Confirmations >= daemon.DefaultConfirmations {
		return
	}
	if _, err := d.btc.Generate(1); err != nil {
		t.Fatal(err)
	}
}

// checkPaid checks on the chain's own RPC, not through custody, that
// transaction hash is mined and successful (ETH: its receipt; BTC: btcd
// counts its confirmations) and pays to exactly amt of l's asset; an
// Ethereum destination, fresh, holds exactly that.
func (d *coldDevnet) checkPaid(t *testing.T, l *coldLeg, hash, to, amt string) {
	t.Helper()
	want, err := amount.ParseUnits(amt, l.decimals)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if l.chain == "eth" {
		h := common.HexToHash(hash)
		r, err := d.eth.TransactionReceipt(ctx, h)
		if err != nil || r.Status != 1 {
			t.Fatalf("%s: receipt %+v, %v: want a successful one", hash, r, err)
		}
		tx, _, err := d.eth.TransactionByHash(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		bal, err := d.eth.BalanceAt(ctx, common.HexToAddress(to), nil)
		if err != nil {
			t.Fatal(err)
		}
		if tx.To() == nil || tx.To().Hex() != to || tx.Value().String() != want.String() || bal.Cmp(tx.Value()) != 0 {
			t.Fatalf("%s pays %v to %v and %s holds %v; want %s wei", hash, tx.Value(), tx.To(), to, bal, want)
		}
		return
	}
	h, err := chainhash.NewHashFromStr(hash)
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.btc.GetRawTransactionVerbose(h)
	if err != nil || r.Confirmations < 1 {
		t.Fatalf("%s on btcd: %+v, %v: want it confirmed", hash, r, err)
	}
	raw, err := hex.DecodeString(r.Hex)
	if err != nil {
		t.Fatal(err)
	}
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	addr, err := btcutil.DecodeAddress(to, d.btcNet)
	if err != nil {
		t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		t.Fatal(err)
	}
	paid := big.NewInt(0)
	for _, o := range tx.TxOut {
		if bytes.Equal(o.PkScript, script) {
			paid.Add(paid, big.NewInt(o.Value))
		}
	}
	if paid.String() != want.String() {
		t.Fatalf("%s pays %s sat to %s, want %s", hash, paid, to, want)
	}
}

// waitCooledOff waits until every node's member counts the allowlist
// changes ids as past the rules' cooling-off. A member counts it from when
// it first saw each change by its own clock (SECURITY 29), recorded in
// DATA_DIR/seen/seen.jsonl by its observe loop (every 500 ms): up to that
// loop later than the leader's time that the operator API's `active`
// counts from. A withdrawal claimed in between is refused by the member.
func (d *coldDevnet) waitCooledOff(t *testing.T, ids []string) {
	t.Helper()
	rules, err := policy.ParseRules([]byte(devnet.Rules))
	if err != nil {
		t.Fatal(err)
	}
	var until time.Time
	for id := range d.info.APIs {
		file := filepath.Join(d.nodeConfig(t, id).DataDir, "seen", member.SeenFile)
		ledgertest.PollFor(t, coldWait, string(id)+"'s member seeing the allowlist changes", every(100*time.Millisecond, func() error {
			seen := map[string]time.Time{}
			for line := range strings.Lines(string(mustRead(t, file))) {
				var rec struct {
					ID string `json:"id"`
					At int64  `json:"at"`
				}
				if json.Unmarshal([]byte(line), &rec) == nil {
					seen[rec.ID] = time.Unix(0, rec.At)
				}
			}
			for _, c := range ids {
				at, ok := seen[c]
				if !ok {
					return fmt.Errorf("%s has not seen %s", id, c)
				}
				if at = at.Add(time.Duration(rules.Allowlist.CoolingOff)); at.After(until) {
					until = at
				}
			}
			return nil
		}))
	}
	ledgertest.PollFor(t, coldWait, "the members' cooling-off", func() error {
		if now := time.Now(); now.Before(until) {
			return fmt.Errorf("cooling off for %s more", until.Sub(now))
		}
		return nil
	})
}
