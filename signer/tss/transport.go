package tss

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/custody-dev/custody/pki"
)

// Delivery is one received envelope together with the identity of the peer
// the transport authenticated. Engines trust From, never Env.From.
type Delivery struct {
	From pki.NodeID
	Env  *Envelope
}

// Transport moves envelopes between nodes. Implementations authenticate the
// sending node (mTLS in production) and report it in Delivery.From.
type Transport interface {
	// Send queues env for the node to. It may block until ctx is done.
	Send(ctx context.Context, to pki.NodeID, env *Envelope) error
	// Receive returns the channel of deliveries addressed to this node.
	Receive() <-chan Delivery
}

// ErrUnknownPeer is returned by Send for a node the transport cannot reach.
var ErrUnknownPeer = errors.New("tss: unknown peer")

// MemNetwork is an in-memory network of nodes for tests and single-process
// runs. Each envelope is marshalled and unmarshalled on the way, so no memory
// is shared between sender and receiver.
type MemNetwork struct {
	mu    sync.Mutex
	nodes map[pki.NodeID]*MemTransport
}

// NewMemNetwork returns an empty in-memory network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{nodes: make(map[pki.NodeID]*MemTransport)}
}

// Endpoint returns the transport of node id, creating it on first use.
func (n *MemNetwork) Endpoint(id pki.NodeID) *MemTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	if t, ok := n.nodes[id]; ok {
		return t
	}
	t := &MemTransport{net: n, self: id, inbox: make(chan Delivery, 8192)}
	n.nodes[id] = t
	return t
}

// MemTransport is one node's endpoint on a MemNetwork.
type MemTransport struct {
	net   *MemNetwork
	self  pki.NodeID
	inbox chan Delivery
}

var _ Transport = (*MemTransport)(nil)

// Self returns the node this endpoint authenticates as.
func (t *MemTransport) Self() pki.NodeID { return t.self }

// Send delivers env to node to, authenticated as this endpoint's node.
func (t *MemTransport) Send(ctx context.Context, to pki.NodeID, env *Envelope) error {
	t.net.mu.Lock()
	dst, ok := t.net.nodes[to]
	t.net.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownPeer, to)
	}
	raw, err := env.Marshal()
	if err != nil {
		return err
	}
	return dst.Inject(ctx, t.self, raw)
}

// Inject delivers raw envelope bytes as if authenticated from node from.
// Malformed bytes are delivered as a nil envelope so the engine counts them.
func (t *MemTransport) Inject(ctx context.Context, from pki.NodeID, raw []byte) error {
	env, err := UnmarshalEnvelope(raw)
	if err != nil {
		env = nil
	}
	select {
	case t.inbox <- Delivery{From: from, Env: env}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Receive returns this node's deliveries.
func (t *MemTransport) Receive() <-chan Delivery { return t.inbox }
