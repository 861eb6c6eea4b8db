package ledger

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/custody-dev/custody/pki"
)

// NodeGate admits raft peers by the node set: a peer is a node of the
// cluster only when its certificate's node ID is in the node set and its
// certificate's key is the one the set pins ([pki.KeyFingerprint]). A
// certificate the cluster CA issued to anyone else does not make a node.
//
// The stream layer exists before the Store (it is in [Config.Stream]), so
// the gate is bound late: create it with [NewNodeGate], build the stream
// layer with its Authorize ([ListenStream], [NewStreamLayer]) and put it in
// [Config.Gate]; Open binds it to the node's FSM before raft starts. The
// node set is then the one this node trusts for checkpoints too: its
// ledger's State.Nodes once the ledger has a genesis, else its pinned
// genesis's (Config.Genesis); with neither (tests, tools) any node
// certificate of the cluster CA passes. An unbound gate refuses everyone.
type NodeGate struct {
	fsm atomic.Pointer[FSM]
}

// NewNodeGate returns an unbound gate.
func NewNodeGate() *NodeGate { return &NodeGate{} }

// Authorize is the [pki.Authorizer] of the raft stream layer: it runs on
// every handshake, in both directions, and reads the node set as it is at
// that moment.
func (g *NodeGate) Authorize(p pki.Peer) error {
	f := g.fsm.Load()
	if f == nil {
		return errors.New("ledger: node gate is not bound to an open ledger")
	}
	if p.Role != pki.RoleNode {
		return fmt.Errorf("ledger: %s is not a node", p)
	}
	var pinned string
	err := f.Read(func(st *State) error {
		var err error
		pinned, err = f.nodeKey(st, p.Node())
		return err
	})
	if err != nil {
		return err
	}
	if pinned != "" && pinned != p.KeyFingerprint {
		return fmt.Errorf("ledger: node %q presents key %s, the node set pins %s", p.ID, short(p.KeyFingerprint), short(pinned))
	}
	return nil
}

// bind attaches the gate to f, once.
func (g *NodeGate) bind(f *FSM) error {
	if !g.fsm.CompareAndSwap(nil, f) {
		return errors.New("ledger: node gate already bound to another ledger")
	}
	return nil
}

// nodeKey returns the key fingerprint the node set this node trusts (see
// trustedNodes) pins for id, "" when there is no node set at all (no
// genesis in the ledger, none pinned), and an error when id is not in it.
// The caller holds the FSM's read lock (st is f.st or a view of it).
func (f *FSM) nodeKey(st *State, id pki.NodeID) (string, error) {
	nodes := f.trustedNodes(st)
	if nodes == nil {
		return "", nil
	}
	n := nodes[id]
	if n == nil {
		return "", fmt.Errorf("%w: node %q is not in the node set", ErrNotInNodeSet, id)
	}
	return n.KeyFingerprint, nil
}
