package devnet

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// nodeRPC is a node RPC client with node n1's certificate: the devnet
// watches its nodes' status (leader, readiness) the way an admin's tools
// on a node's host would.
func (n *Net) nodeRPC() (*noderpc.Client, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rpc != nil {
		return n.rpc, nil
	}
	cfg, err := daemon.LoadConfig(n.configFile(n.Nodes[0]))
	if err != nil {
		return nil, err
	}
	ident, err := cfg.Identity()
	if err != nil {
		return nil, err
	}
	peers := map[pki.NodeID]string{cfg.NodeID: cfg.Listen.RPC}
	for _, p := range cfg.Peers {
		peers[p.ID] = p.RPC
	}
	c, err := noderpc.NewClient(noderpc.ClientConfig{Self: cfg.NodeID, Identity: ident, Peers: peers,
		Authorize: func(p pki.Peer) error {
			if _, ok := peers[p.Node()]; !ok || p.Role != pki.RoleNode {
				return fmt.Errorf("not a node of the devnet: %s", p.ID)
			}
			return nil
		},
		Leader:  func() (pki.NodeID, string) { return n.leaderHint(), "" },
		Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	n.rpc = c
	return c, nil
}

func (n *Net) leaderHint() pki.NodeID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hint
}

// Status is node id's status over the node RPC.
func (n *Net) Status(ctx context.Context, id pki.NodeID) (noderpc.Status, error) {
	c, err := n.nodeRPC()
	if err != nil {
		return noderpc.Status{}, err
	}
	return c.Status(ctx, id)
}

// WaitReady waits until every running node follows one leader and can
// join a keygen (its tss pre-params are ready), polling every half second
// until ctx ends.
func (n *Net) WaitReady(ctx context.Context) error {
	var last string
	for {
		leader, notReady := pki.NodeID(""), []string{}
		agree := true
		for _, id := range n.Nodes {
			st, err := n.Status(ctx, id)
			if err != nil {
				notReady = append(notReady, fmt.Sprintf("%s: %v", id, err))
				agree = false
				continue
			}
			if leader == "" {
				leader = st.Leader
			}
			if st.Leader == "" || st.Leader != leader {
				agree = false
			}
			for _, what := range []string{"ledger", "member", "keygen"} {
				if !st.Ready[what] {
					notReady = append(notReady, fmt.Sprintf("%s: %s", id, what))
				}
			}
		}
		if agree && leader != "" && len(notReady) == 0 {
			n.mu.Lock()
			n.hint = leader
			n.mu.Unlock()
			return nil
		}
		last = fmt.Sprintf("leader %q, not ready: %v", leader, notReady)
		select {
		case <-ctx.Done():
			return fmt.Errorf("devnet: nodes not ready (%s): %w", last, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// deviceKey opens principal name's device key file (unsealed in the
// devnet's cluster files).
func (n *Net) deviceKey(kind, name string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(filepath.Join(n.ClusterDir, kind, name, "device.key"))
	if err != nil {
		return nil, err
	}
	kf, err := quorum.ParseKeyFile(b)
	if err != nil {
		return nil, err
	}
	return kf.Open(nil)
}

// SignAs signs a statement with principal name's device.
func (n *Net) SignAs(kind, name, subject string, payload quorum.Hash, dec quorum.Decision, expiry time.Time) (quorum.Approval, error) {
	k, err := n.deviceKey(kind, name)
	if err != nil {
		return quorum.Approval{}, err
	}
	dev := quorum.DeviceID(quorum.DeviceEd25519, k.Public().(ed25519.PublicKey))
	return quorum.Sign(quorum.Statement{ClusterID: ClusterID, RequestID: subject, PayloadHash: payload, Decision: dec,
		Expiry: expiry.UTC().Truncate(time.Second)}, dev, k, nil)
}
