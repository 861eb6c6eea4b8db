package daemon_test

import (
	"strings"
	"testing"

	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
)

// TestNodeKeyInHSM: n1 and n2 keep their node key in their HSM token
// (tls.key_label): raft, the node RPC and the tss transport authenticate
// with it, checkpoints and claim attestations are signed with it, and the
// cluster signs a withdrawal. A key label the token does not hold, or one
// that is not the certificate's key, refuses the start.
func TestNodeKeyInHSM(t *testing.T) {
	c := newClusterWith(t, setup{hsmKeyed: []pki.NodeID{"n1", "n2"}})
	r := c.withdrawal("wd-hsm", c.dests[0], ether(1))
	c.approve(r, bob)
	c.approve(r, carol)
	signed := c.waitStatus("n1", "wd-hsm", ledger.StatusSigned)
	c.mine(signed)
	if !signed.Claim.Attested {
		t.Fatal("signed without an attested claim")
	}

	c.stop("n2")
	cfg, err := daemon.LoadConfig(c.nodes["n2"].config)
	if err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"no-such-key", daemon.KEKLabel} {
		bad := *cfg
		bad.TLS.KeyLabel = label
		if _, err := daemon.Start(&bad, daemon.Options{ETH: c.sim}); err == nil || !strings.Contains(err.Error(), "tls.key_label") {
			t.Errorf("key label %q: %v", label, err)
		}
	}
}
