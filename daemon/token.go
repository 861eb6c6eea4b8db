package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custody-dev/custody/ledger"
)

// ErrTokenTaken is wrapped when the ledger binds this node's HSM token to
// another node: two nodes on one token would put two shares behind one PIN
// (SECURITY 20). The node stops.
var ErrTokenTaken = errors.New("daemon: HSM token belongs to another node")

// declareToken binds this node's token serial in the ledger
// (ledger.NodeToken, signed with the node key) once the ledger has its
// genesis, retrying while there is no leader. When another node holds the
// serial, the node stops (Fatal).
func (n *Node) declareToken(ctx context.Context) {
	serial := n.tok.Info().Serial
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var cluster, genesis string
		_ = n.store.ReadLocal(func(st *ledger.State) error {
			cluster, genesis = st.Registry.ClusterID, st.GenesisHash
			return nil
		})
		if cluster == "" {
			continue
		}
		cmd, err := ledger.SignNodeToken(cluster, genesis, n.cfg.NodeID, serial, n.signer)
		if err != nil {
			n.fail(fmt.Errorf("daemon: declare the HSM token: %w", err))
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = n.Submit(sctx, "node:"+string(n.cfg.NodeID), cmd)
		cancel()
		switch {
		case err == nil:
			n.log.Info("HSM token bound in the ledger", "token_serial", serial)
			return
		case errors.Is(err, ledger.ErrConflict):
			n.fail(fmt.Errorf("%w: %v", ErrTokenTaken, err))
			return
		default:
			n.log.Debug("token declaration not committed yet", "err", err)
		}
	}
}

// fail stops the node for a reason it must not run with: it refuses all
// new work at once and reports err on Fatal (node run exits 1 with it).
func (n *Node) fail(err error) {
	n.fatalOnce.Do(func() {
		n.log.Error("node stopping", "audit", true, "err", err)
		n.drained.Do(func() { close(n.drain) })
		n.fatal <- err
	})
}

// Fatal reports, once, an error the node stopped for while running (its
// HSM token is another node's). The caller then shuts it down.
func (n *Node) Fatal() <-chan error { return n.fatal }
