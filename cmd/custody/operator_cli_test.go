package main

import (
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/custody-dev/custody/daemon"
)

// operatorScripts runs the operator CLI's end-to-end scripts
// (testdata/*.txtar) against the running process cluster: the real
// binary, talking to a follower's API with the operator certificates and
// device keys cluster init wrote. Two withdrawals wait for approvals.
func (c *procCluster) operatorScripts(t *testing.T, wallet common.Address) {
	nonce, err := c.chain.Nonce(c.ctx, wallet)
	if err != nil {
		t.Fatal(err)
	}
	seed := sha256.Sum256([]byte("operator-cli-dest"))
	dest := common.BytesToAddress(seed[:20])
	c.withdrawalAt("wd-cli-1", nonce, dest, ether(1))
	c.withdrawalAt("wd-cli-2", nonce+1, dest, ether(1))
	cfg, err := daemon.LoadConfig(c.config(c.follower()))
	if err != nil {
		t.Fatal(err)
	}
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
			return nil
		},
	})
}
