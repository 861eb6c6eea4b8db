package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

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
)

const coldWallet = "cold-eth"

// coldCeremony runs a 1-of-2 keygen ceremony of coldWallet over two
// custodians' SoftHSM tokens (committed pre-params fixtures).
func coldCeremony(t *testing.T) (cold.WalletSpec, *cold.Outputs, map[string]hsm.Config) {
	t.Helper()
	tokens := map[string]hsm.Config{}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 1\nwallet: %s\nchain: eth\nchain_id: %d\nnetwork: %s\nthreshold: 1\ncustodians:\n", coldWallet, chainID, network)
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

// TestColdFlow: the cold path on a running cluster: an offline ceremony's
// wallet registered by the admin quorum (wallet.register), a withdrawal
// from it routed cold and approved, exported through the operator API
// (cold.export with the bundle hash), verified from the genesis hash of a
// node's config and signed by both custodians' tokens, imported through
// the API (a transaction for another bundle, or not the approved payload,
// refused first), broadcast by the leader and mined on the simulated chain.
func TestColdFlow(t *testing.T) {
	spec, out, tokens := coldCeremony(t)
	addr, err := eth.AddressFromPublicKey(spec.PubKey)
	if err != nil {
		t.Fatal(err)
	}
	c := newClusterWith(t, setup{fund: map[common.Address]*big.Int{addr: ether(10)}})

	exp := time.Now().Add(time.Hour)
	reg := ledger.ColdWalletSpec(spec)
	c.submit("alice", ledger.WalletRegister{Change: reg, Approvals: []quorum.Approval{
		alice.Sign(t, clusterID, reg.ID, reg.PayloadHash(), quorum.Approve, exp), bob.Sign(t, clusterID, reg.ID, reg.PayloadHash(), quorum.Approve, exp)}})
	dest := common.HexToAddress("0x00000000000000000000000000000000000c01d0")
	r := c.withdrawalFrom(coldWallet, "cold-1", dest, ether(2))
	c.approve(r, bob)
	c.approve(r, carol)
	leader := c.leader().ID()
	r = c.waitStatus(leader, r.ID, ledger.StatusApproved)
	if r.Decision.Route != policy.RouteCold {
		t.Fatalf("routed %s, want cold", r.Decision.Route)
	}

	follower := c.follower().ID()
	api := c.api(follower, pki.RoleOperator, "bob")
	code, m := api.do(http.MethodPost, "/v1/requests/cold-1/export", map[string]any{})
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
	if code, _ := api.do(http.MethodPost, "/v1/requests/cold-1/export", map[string]any{}); code != http.StatusConflict {
		t.Fatalf("a second export: %d, want 409", code)
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

	for name, body := range map[string]map[string]any{
		"another bundle":       {"bundle_hash": strings.Repeat("0", 64), "signed": signed.Signed},
		"not the approved one": {"bundle_hash": b.Hash(), "signed": &cold.Signed{Tx: signed.Signed.Tx[:len(signed.Signed.Tx)-1], TxHash: signed.Signed.TxHash}},
	} {
		if code, m := api.do(http.MethodPost, "/v1/requests/cold-1/import", body); code != http.StatusBadRequest {
			t.Fatalf("import of %s: %d %v, want 400", name, code, m)
		}
	}
	code, m = api.do(http.MethodPost, "/v1/requests/cold-1/import", map[string]any{"bundle_hash": b.Hash(), "signed": signed.Signed})
	if code != http.StatusOK {
		t.Fatalf("import: %d %v", code, m)
	}
	c.poll("cold-1 imported", func() error {
		if r = c.read(leader, "cold-1"); r.Result == nil || len(r.Result.Signed) == 0 {
			return fmt.Errorf("cold-1 is %s", r.Status)
		}
		return nil
	})
	tx := c.mine(r)
	if tx.Hash().Hex() != signed.Signed.TxHash {
		t.Fatalf("mined %s, signed %s", tx.Hash().Hex(), signed.Signed.TxHash)
	}
}
