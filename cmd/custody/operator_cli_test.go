package main

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"path/filepath"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
)

// operatorScripts runs the operator CLI's end-to-end scripts
// (testdata/*.txtar) against the running process cluster: the real
// binary, talking to a follower's API with the operator certificates and
// device keys cluster init wrote. Two withdrawals wait for approvals.
// Three more (wd-lie-*, 2 ETH to $EVIL) are served by a lying node as well
// ($LIAR: another follower's certificate in front of the first one's API)
// that shows them as 0.001 ETH to $HARMLESS: with a harmless transaction
// beside the real payload hash, with the withdrawal fields changed, and
// with only the description changed.
func (c *procCluster) operatorScripts(t *testing.T, wallet common.Address) {
	nonce, err := c.chain.Nonce(c.ctx, wallet)
	if err != nil {
		t.Fatal(err)
	}
	seed := sha256.Sum256([]byte("operator-cli-dest"))
	dest := common.BytesToAddress(seed[:20])
	c.withdrawalAt("wd-cli-1", nonce, dest, ether(1))
	c.withdrawalAt("wd-cli-2", nonce+1, dest, ether(1))
	evilSeed, harmlessSeed := sha256.Sum256([]byte("operator-cli-evil")), sha256.Sum256([]byte("operator-cli-harmless"))
	evil, harmless := common.BytesToAddress(evilSeed[:20]), common.BytesToAddress(harmlessSeed[:20])
	lies := map[string]lie{}
	for i, id := range []string{"wd-lie-hash", "wd-lie-fields", "wd-lie-desc"} {
		rc := c.withdrawalAt(id, nonce+2+uint64(i), evil, ether(2))
		lies[id] = c.lieAbout(t, id, rc, harmless)
	}
	follower := c.follower()
	cfg, err := daemon.LoadConfig(c.config(follower))
	if err != nil {
		t.Fatal(err)
	}
	var other pki.NodeID
	for _, id := range procNodes {
		if id != follower {
			other = id
		}
	}
	otherCfg, err := daemon.LoadConfig(c.config(other))
	if err != nil {
		t.Fatal(err)
	}
	otherIdent, err := otherCfg.Identity()
	if err != nil {
		t.Fatal(err)
	}
	liar := startLyingNode(t, otherIdent, "https://"+cfg.Listen.API, filepath.Join(c.dir, "cluster"), lies)
	allow := common.BytesToAddress(seed[12:]).Hex()
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("SERVER", "https://"+cfg.Listen.API)
			env.Setenv("CLUSTER", filepath.Join(c.dir, "cluster"))
			env.Setenv("CUSTODY_CONFIG_DIR", filepath.Join(env.WorkDir, "config"))
			env.Setenv("WALLET", procWallet)
			env.Setenv("ALLOW", allow)
			env.Setenv("LIAR", liar)
			env.Setenv("EVIL", evil.Hex())
			env.Setenv("HARMLESS", harmless.Hex())
			return nil
		},
	})
}

// lieAbout is how the lying node shows request id (rc: 2 ETH to the evil
// address) as 0.001 ETH to harmless: wd-lie-hash sends a harmless
// transaction of the same nonce and fees with fields and description to
// match, beside the real payload hash (what the approval would sign);
// wd-lie-fields keeps the real transaction and hash and changes the
// withdrawal's destination and amount; wd-lie-desc changes the
// description only.
func (c *procCluster) lieAbout(t *testing.T, id string, rc ledger.RequestCreate, harmless common.Address) lie {
	actual, err := eth.ParseUnsigned(rc.Payload)
	if err != nil {
		t.Fatal(err)
	}
	d := actual.Description()
	small := new(big.Int).Div(ether(1), big.NewInt(1000))
	u, err := eth.NewUnsigned(eth.Intent{ChainID: d.ChainID, Nonce: d.Nonce, To: harmless, Asset: eth.ETH, Amount: small, GasLimit: d.GasLimit,
		Fees: eth.Fees{GasTipCap: d.GasTipCap, GasFeeCap: d.GasFeeCap}})
	if err != nil {
		t.Fatal(err)
	}
	desc := fmt.Sprintf("send 0.001 ETH (18 decimals) on eth/devnet from wallet %s to %s; rule eth-hot (hot route)", procWallet, harmless.Hex())
	fields := func(view map[string]any) {
		w := view["withdrawal"].(map[string]any)
		w["to"], w["amount"], w["amount_base"], w["description"] = harmless.Hex(), "0.001", small.String(), desc
	}
	switch id {
	case "wd-lie-hash":
		return func(view map[string]any) {
			fields(view)
			view["payload"] = base64.StdEncoding.EncodeToString(u.Bytes())
			view["description"] = desc
		}
	case "wd-lie-fields":
		return func(view map[string]any) {
			fields(view)
			view["description"] = desc
		}
	}
	return func(view map[string]any) { view["description"] = desc }
}
