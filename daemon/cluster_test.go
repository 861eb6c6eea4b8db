package daemon_test

import (
	"testing"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
)

// TestClusterSignsApprovedWithdrawal: three daemons bootstrap from the
// genesis, writes sent to a follower land through the leader, and a
// withdrawal approved by two operators is signed by the leader's loop
// (claim, two members over the node RPC, result), with the same signed
// transaction on every replica; it is valid for the chain.
func TestClusterSignsApprovedWithdrawal(t *testing.T) {
	c := newCluster(t)
	r := c.withdrawal("wd-1", c.dests[0], ether(1))
	if r.Status != ledger.StatusAwaitingApprovals {
		t.Fatalf("created: %s", r.Status)
	}
	c.approve(r, bob)
	c.approve(r, carol)
	signed := c.waitStatus("n1", "wd-1", ledger.StatusSigned)
	for _, id := range nodeIDs {
		got := c.waitStatus(id, "wd-1", ledger.StatusSigned)
		if string(got.Result.Signed) != string(signed.Result.Signed) {
			t.Fatalf("%s holds another signed transaction", id)
		}
	}
	tx, err := eth.ParseSigned(signed.Result.Signed)
	if err != nil {
		t.Fatal(err)
	}
	if tx.From() != c.wallet || *tx.Transaction().To() != c.dests[0] {
		t.Fatalf("signed tx from %s to %s", tx.From(), tx.Transaction().To())
	}
	if _, err := c.sim.Broadcast(c.ctx, tx); err != nil {
		t.Fatalf("the chain refused the signed transaction: %v", err)
	}
	c.sim.Commit()
	rc, err := c.sim.Receipt(c.ctx, tx.Hash())
	if err != nil || !rc.Success {
		t.Fatalf("receipt %+v, %v", rc, err)
	}
}
