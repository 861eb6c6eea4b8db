package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/withdraw"
)

// ErrDraining is returned for work refused because the node is shutting
// down.
var ErrDraining = errors.New("daemon: node is draining (shutting down)")

// rpcPeers is this node's side of the node RPC: the client that forwards
// writes and read indices to the leader and reaches the other members. It
// exists before the ledger (whose Forward it is) and gets its client once
// the ledger is open.
type rpcPeers struct {
	n      *Node
	client atomic.Pointer[noderpc.Client]
}

func newRPCPeers(n *Node) *rpcPeers { return &rpcPeers{n: n} }

func (p *rpcPeers) forward(ctx context.Context, cmd ledger.Command) error {
	c := p.client.Load()
	if c == nil {
		return ledger.ErrNotLeader
	}
	return c.Forward(ctx, cmd)
}

func (p *rpcPeers) readIndex(ctx context.Context) (uint64, error) {
	return p.client.Load().ReadIndex(ctx)
}

func (p *rpcPeers) submit(ctx context.Context, actor string, cmd ledger.Command) (ledger.Outcome, error) {
	return p.client.Load().Submit(ctx, actor, cmd)
}

// members are the committee members the leader's orchestration reaches:
// this node's own member in process, every peer's over the node RPC.
func (p *rpcPeers) members() []withdraw.Member {
	out := []withdraw.Member{p.n.member}
	for _, peer := range p.n.cfg.Peers {
		out = append(out, p.client.Load().Member(peer.ID))
	}
	return out
}

// startRPCClient builds the node RPC client (after the ledger: it reads the
// leader from it).
func (n *Node) startRPCClient() error {
	addrs := make(map[pki.NodeID]string, len(n.cfg.Peers))
	for _, p := range n.cfg.Peers {
		addrs[p.ID] = p.RPC
	}
	c, err := noderpc.NewClient(noderpc.ClientConfig{Self: n.cfg.NodeID, Identity: n.id, Authorize: n.gate.Authorize,
		Peers: addrs, Leader: n.store.Leader, Local: n.store, Creator: n, SignTimeout: time.Duration(n.cfg.TSS.SessionTimeout),
		KeygenTimeout: time.Duration(n.cfg.TSS.KeygenTimeout)})
	if err != nil {
		return err
	}
	n.peers.client.Store(c)
	n.onClose(func() error { c.Close(); return nil })
	return nil
}

// serveRPC serves the node RPC on listen.rpc, gated by the node set like
// raft and the tss transport (after the member exists).
func (n *Node) serveRPC() error {
	srv, err := noderpc.NewServer(noderpc.Config{Identity: n.id, Authorize: n.gate.Authorize, Store: n.store,
		Member: drainingMember{n}, Status: n.status, Creator: n, Logger: n.log.With("component", "node-rpc"),
		SignTimeout: time.Duration(n.cfg.TSS.SessionTimeout), KeygenTimeout: time.Duration(n.cfg.TSS.KeygenTimeout)})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", n.cfg.Listen.RPC)
	if err != nil {
		return err
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("node rpc stopped", "err", err)
		}
	}()
	n.onClose(func() error { return srv.Close() })
	return nil
}

// status is GET /node/v1/status: the ledger's part and the node's
// readiness.
func (n *Node) status() noderpc.Status {
	s := noderpc.StoreStatus(n.store)
	if s.Ready == nil {
		s.Ready = map[string]bool{}
	}
	// Ready only once this replica holds the genesis: before that it knows
	// no operator, rule or node (the API would refuse every principal).
	var hasGenesis bool
	_ = n.store.ReadLocal(func(st *ledger.State) error { hasGenesis = st.GenesisHash != ""; return nil })
	s.Ready["ledger"] = n.store.Halted() == nil && s.Leader != "" && hasGenesis
	s.Ready["member"] = n.member != nil && !n.draining()
	s.Ready["keygen"] = n.pool != nil && n.pool.Len() > 0
	return s
}

// drainingMember is the member as the node RPC reaches it: it refuses new
// sessions while the node drains and counts running ones, so Shutdown
// waits for them.
type drainingMember struct{ n *Node }

func (d drainingMember) SignClaimed(ctx context.Context, requestID string, c member.Claim) (*member.Signed, error) {
	done, err := d.n.track("rpc-sign:" + requestID + ":" + c.SessionID.String())
	if err != nil {
		return nil, err
	}
	defer done()
	return d.n.member.SignClaimed(ctx, requestID, c)
}

func (d drainingMember) Keygen(ctx context.Context, walletID string, session tss.SessionID) (*member.KeygenResult, error) {
	done, err := d.n.track("rpc-keygen:" + walletID + ":" + session.String())
	if err != nil {
		return nil, err
	}
	defer done()
	return d.n.member.Keygen(ctx, walletID, session)
}

func (d drainingMember) TestSign(ctx context.Context, walletID string, pubkey []byte, session tss.SessionID, signers []pki.NodeID) ([]byte, error) {
	done, err := d.n.track("rpc-test-sign:" + walletID + ":" + session.String())
	if err != nil {
		return nil, err
	}
	defer done()
	return d.n.member.TestSign(ctx, walletID, pubkey, session, signers)
}

// track registers running work under key so Shutdown waits for it; it
// refuses new work while the node drains. done unregisters it.
func (n *Node) track(key string) (done func(), err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.draining() {
		return nil, fmt.Errorf("%w: not starting %s", ErrDraining, key)
	}
	if n.sessions[key] {
		return nil, fmt.Errorf("daemon: %s is already running here", key)
	}
	n.sessions[key] = true
	return func() {
		n.mu.Lock()
		delete(n.sessions, key)
		n.mu.Unlock()
	}, nil
}

func (d drainingMember) Reshare(ctx context.Context, walletID string, session tss.SessionID, oldSigners []pki.NodeID, oldMembers []tss.Party) (*member.ReshareResult, error) {
	done, err := d.n.track("rpc-reshare:" + walletID + ":" + session.String())
	if err != nil {
		return nil, err
	}
	defer done()
	return d.n.member.Reshare(ctx, walletID, session, oldSigners, oldMembers)
}

func (d drainingMember) WalletInfo(ctx context.Context, walletID string) (tss.WalletInfo, error) {
	return d.n.member.WalletInfo(ctx, walletID)
}
