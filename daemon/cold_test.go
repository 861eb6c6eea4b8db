package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/btc/btctest"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/cold"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/tss/tsstest"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
	"github.com/custody-dev/custody/withdraw"
)

// coldCeremony runs a 1-of-2 keygen ceremony of wallet on chain over two
// custodians' SoftHSM tokens (committed pre-params fixtures) and returns
// its registration spec (ID, transcript hash set).
func coldCeremony(t *testing.T, wallet, chain string) (cold.WalletSpec, *cold.Outputs, map[string]hsm.Config) {
	t.Helper()
	tokens := map[string]hsm.Config{}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 1\nwallet: %s\nchain: %s\nthreshold: 1\n", wallet, chain)
	if chain == "eth" {
		fmt.Fprintf(&cfg, "chain_id: %d\nnetwork: %s\n", chainID, network)
	} else {
		cfg.WriteString("btc_params: regtest\nnetwork: regtest\n")
	}
	cfg.WriteString("custodians:\n")
	var module string
	for _, n := range []string{"ann", "ben"} {
		tok := softhsmtest.NewToken(t, "custodian-"+n)
		tokens[n], module = tok, tok.Module
		fmt.Fprintf(&cfg, "  - {name: %s, token_label: %q, token_serial: %q}\n", n, tok.TokenLabel, tok.TokenSerial)
	}
	fmt.Fprintf(&cfg, "module: %q\n", module)
	ctx, cancel := context.WithTimeout(context.Background(), tsstest.Deadline)
	defer cancel()
	out, err := cold.Keygen(ctx, []byte(cfg.String()), func(n string) (string, error) { return tokens[n].PIN, nil },
		cold.KeygenOptions{PreParams: func(i int) preparams.Generator { return tsstest.FixtureSource(i, 6) }})
	if err != nil {
		t.Fatal(err)
	}
	var pw cold.PublicWallet
	if err := json.Unmarshal(out.Wallet, &pw); err != nil {
		t.Fatal(err)
	}
	tr, err := json.Marshal(out.Transcript)
	if err != nil {
		t.Fatal(err)
	}
	pw.Spec.Transcript = fmt.Sprintf("%x", sha256.Sum256(tr))
	return pw.Spec, out, tokens
}

// coldRegister commits the wallet.register of spec (alice and bob).
func (c *cluster) coldRegister(spec cold.WalletSpec) {
	c.t.Helper()
	exp := time.Now().Add(time.Hour)
	reg := ledger.ColdWalletSpec(spec)
	c.submit("alice", ledger.WalletRegister{Change: reg, Approvals: []quorum.Approval{
		alice.Sign(c.t, clusterID, reg.ID, reg.PayloadHash(), quorum.Approve, exp), bob.Sign(c.t, clusterID, reg.ID, reg.PayloadHash(), quorum.Approve, exp)}})
}

// coldSign takes an approved cold request through export (the operator
// API on a follower), offline verification from the genesis hash of a
// node's config, signing by both custodians, and import (a transaction
// for another bundle, or not the approved payload, refused first); it
// returns the exported bundle and the request once imported.
func (c *cluster) coldSign(r *ledger.Request, out *cold.Outputs, tokens map[string]hsm.Config) (*cold.Bundle, *ledger.Request) {
	t := c.t
	t.Helper()
	leader := c.leader().ID()
	r = c.waitStatus(leader, r.ID, ledger.StatusApproved)
	if r.Decision.Route != policy.RouteCold {
		t.Fatalf("%s routed %s, want cold", r.ID, r.Decision.Route)
	}
	api := c.api(c.follower().ID(), pki.RoleOperator, "bob")
	exp := time.Now().Add(10 * time.Minute)
	exportAuth := bob.Sign(t, clusterID, r.ID, ledger.ColdExportHash(r.ID, r.PayloadHash), quorum.Approve, exp)
	// No authorization, or bob's approval of the withdrawal itself in its
	// place: refused, nothing exported.
	for name, body := range map[string]map[string]any{
		"no authorization":              {},
		"an approval of the withdrawal": {"authorization": bob.Sign(t, clusterID, r.ID, r.PayloadHash, quorum.Approve, exp)},
		"alice's authorization":         {"authorization": alice.Sign(t, clusterID, r.ID, ledger.ColdExportHash(r.ID, r.PayloadHash), quorum.Approve, exp)},
	} {
		if code, m := api.do(http.MethodPost, "/v1/requests/"+r.ID+"/export", body); code/100 != 4 {
			t.Fatalf("export with %s: %d %v, want a 4xx", name, code, m)
		}
	}
	if got := c.read(leader, r.ID); got.Status != ledger.StatusApproved {
		t.Fatalf("a refused export left %s %s", r.ID, got.Status)
	}
	code, m := api.do(http.MethodPost, "/v1/requests/"+r.ID+"/export", map[string]any{"authorization": exportAuth})
	if code != http.StatusOK {
		t.Fatalf("export: %d %v", code, m)
	}
	raw, err := json.Marshal(m["bundle"])
	if err != nil {
		t.Fatal(err)
	}
	b, err := cold.ParseBundle(raw)
	if err != nil {
		t.Fatal(err)
	}
	if b.Hash() != m["bundle_hash"] {
		t.Fatalf("the bundle hashes to %s, the node recorded %v", b.Hash(), m["bundle_hash"])
	}
	c.waitStatus(leader, r.ID, ledger.StatusExported)
	if len(b.Attestations) < ledger.CheckpointQuorum(len(c.nodes)) {
		t.Fatalf("the bundle carries %d attestations, the node set's quorum is %d", len(b.Attestations), ledger.CheckpointQuorum(len(c.nodes)))
	}
	// Exporting again (from another node) answers the same bundle: a
	// caller whose first call timed out fetches it so.
	again := c.api(c.leader().ID(), pki.RoleOperator, "bob")
	if code, m2 := again.do(http.MethodPost, "/v1/requests/"+r.ID+"/export", map[string]any{}); code != http.StatusOK || m2["bundle_hash"] != m["bundle_hash"] {
		t.Fatalf("a second export: %d %v, want 200 with bundle %v", code, m2["bundle_hash"], m["bundle_hash"])
	}

	// Offline: pinned to the genesis hash of a node's config, never the
	// bundle's.
	cfg, err := daemon.LoadConfig(c.nodes[leader].config)
	if err != nil {
		t.Fatal(err)
	}
	checked, err := cold.Verify(b, cfg.Genesis.Hash, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var present []*cold.SealedShare
	for _, n := range []string{"ann", "ben"} {
		s, err := cold.ParseSealedShare(out.Shares[n])
		if err != nil {
			t.Fatal(err)
		}
		present = append(present, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tsstest.Deadline)
	defer cancel()
	signed, err := cold.Sign(ctx, checked, tokens["ann"].Module, present, func(n string) (string, error) { return tokens[n].PIN, nil }, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	importAuth := bob.Sign(t, clusterID, r.ID, ledger.ColdImportHash(r.ID, b.Hash(), signed.Signed.Tx), quorum.Approve, exp)
	for name, body := range map[string]map[string]any{
		"another bundle":             {"bundle_hash": strings.Repeat("0", 64), "signed": signed.Signed, "authorization": importAuth},
		"not the approved one":       {"bundle_hash": b.Hash(), "signed": &cold.Signed{Tx: signed.Signed.Tx[:len(signed.Signed.Tx)-1], TxHash: signed.Signed.TxHash}, "authorization": importAuth},
		"no authorization":           {"bundle_hash": b.Hash(), "signed": signed.Signed},
		"the export's authorization": {"bundle_hash": b.Hash(), "signed": signed.Signed, "authorization": exportAuth},
	} {
		if code, m := api.do(http.MethodPost, "/v1/requests/"+r.ID+"/import", body); code != http.StatusBadRequest {
			t.Fatalf("import of %s: %d %v, want 400", name, code, m)
		}
	}
	code, m = api.do(http.MethodPost, "/v1/requests/"+r.ID+"/import", map[string]any{"bundle_hash": b.Hash(), "signed": signed.Signed, "authorization": importAuth})
	if code != http.StatusOK {
		t.Fatalf("import: %d %v", code, m)
	}
	c.poll(r.ID+" imported", func() error {
		if r = c.read(leader, r.ID); r.Result == nil || len(r.Result.Signed) == 0 {
			return fmt.Errorf("%s is %s", r.ID, r.Status)
		}
		return nil
	})
	if r.Result.TxHash != signed.Signed.TxHash {
		t.Fatalf("imported %s, signed %s", r.Result.TxHash, signed.Signed.TxHash)
	}
	return b, r
}

// TestColdFlow: the cold path for ETH and BTC on one running cluster
// (the simulated ETH chain, a btcd regtest node): two offline ceremonies'
// wallets registered by the admin quorum (wallet.register); from each a
// withdrawal routed cold and approved, exported through the operator API
// (cold.export with the bundle hash; the BTC bundle's PSBT round-trips
// through btcd's psbt package), verified offline from the genesis hash of
// a node's config and signed by both custodians' tokens, imported through
// the API, broadcast by the leader: the ETH transaction mined with a
// successful receipt, the BTC one confirmed three blocks deep paying the
// destination exactly.
func TestColdFlow(t *testing.T) {
	ethSpec, ethOut, ethTokens := coldCeremony(t, "cold-eth", "eth")
	btcSpec, btcOut, btcTokens := coldCeremony(t, "cold-btc", "btc")
	ethAddr, err := eth.AddressFromPublicKey(ethSpec.PubKey)
	if err != nil {
		t.Fatal(err)
	}
	params := &chaincfg.RegressionNetParams
	btcAddr, err := btc.WalletAddress(btcSpec.PubKey, params)
	if err != nil {
		t.Fatal(err)
	}
	node := btctest.StartBtcd(t, btcAddr.EncodeAddress())
	dir := t.TempDir()
	pass, cert := filepath.Join(dir, "btcd.pass"), filepath.Join(dir, "rpc.cert")
	writeFile(t, pass, 0o600, []byte(node.Pass+"\n"))
	writeFile(t, cert, 0o644, node.Cert)
	client, err := btc.Dial(btc.RPCConfig{Host: node.Host, User: node.User, Pass: node.Pass, Cert: node.Cert}, params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	c := newClusterWith(t, setup{fund: map[common.Address]*big.Int{ethAddr: ether(10)}}, func(cfg *daemon.Config) {
		cfg.Chains.BTC = &daemon.BTC{RPC: node.Host, User: node.User, PasswordFile: pass, CertFile: cert, Network: "regtest"}
	})
	if _, err := client.Generate(c.ctx, btctest.SegwitActiveHeight); err != nil {
		t.Fatal(err)
	}
	c.coldRegister(ethSpec)
	c.coldRegister(btcSpec)

	t.Run("ETH", func(t *testing.T) {
		dest := common.HexToAddress("0x00000000000000000000000000000000000c01d0")
		r := c.withdrawalFrom("cold-eth", "cold-eth-1", dest, ether(2))
		c.approve(r, bob)
		c.approve(r, carol)
		_, r = c.coldSign(r, ethOut, ethTokens)
		tx := c.mine(r)
		if tx.Hash().Hex() != r.Result.TxHash {
			t.Fatalf("mined %s, imported %s", tx.Hash().Hex(), r.Result.TxHash)
		}
	})

	t.Run("BTC", func(t *testing.T) {
		k, err := btcec.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		dest, err := btc.WalletAddress(k.PubKey().SerializeCompressed(), params)
		if err != nil {
			t.Fatal(err)
		}
		const amt = 70_000_000
		a, err := amount.FromBig(big.NewInt(amt))
		if err != nil {
			t.Fatal(err)
		}
		w := policy.Withdrawal{Wallet: "cold-btc", Asset: "BTC", To: dest.EncodeAddress(), Amount: a}
		init := backend.Sign(t, clusterID, "cold-btc-1", w.IntentHash("cold-btc-1"), quorum.Initiate, time.Now().Add(time.Hour))
		var r *ledger.Request
		c.poll("create cold-btc-1", func() error {
			r, err = c.leader().CreateBTC(c.ctx, withdraw.BTCWithdrawal{ID: "cold-btc-1", Wallet: "cold-btc", To: dest.EncodeAddress(),
				Amount: big.NewInt(amt), Initiation: init, ExpiresAt: time.Now().Add(time.Hour)})
			return err
		})
		c.approve(r, bob)
		c.approve(r, carol)
		b, r := c.coldSign(r, btcOut, btcTokens)
		// The exported PSBT round-trips through btcd's psbt package and is
		// the approved payload.
		p, err := btc.ParsePSBT(b.PSBT)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := btc.UnsignedFromPSBT(p, params, btcSpec.PubKey); err != nil {
			t.Fatal(err)
		}
		c.poll("cold-btc-1 confirmed", func() error {
			got := c.read(c.leader().ID(), "cold-btc-1")
			if got.Status == ledger.StatusConfirmed {
				return nil
			}
			if _, err := client.Generate(c.ctx, 1); err != nil {
				return err
			}
			return fmt.Errorf("cold-btc-1 is %s", got.Status)
		})
		got, err := client.UTXOs(c.ctx, dest, 1)
		if err != nil || len(got) != 1 || got[0].Value != amt {
			t.Fatalf("destination holds %+v, %v; want one output of %d sat (tx %s)", got, err, amt, r.Result.TxHash)
		}
	})
}
