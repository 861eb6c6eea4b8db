package pki

import (
	"errors"
	"fmt"
)

// NodeID names a signer node of the cluster: the CommonName of its node
// certificate, its raft server ID, its tss party ID and its principal on the
// node API. It is the one node-identity type of the code base.
type NodeID string

// Role is what a certificate's holder is to the cluster.
type Role string

// Roles. A certificate carries exactly one.
const (
	// RoleNode is a signer node (server and client authentication).
	RoleNode Role = "node"
	// RoleBackend is an exchange backend principal submitting withdrawals.
	RoleBackend Role = "backend"
	// RoleOperator is a treasury operator.
	RoleOperator Role = "operator"
)

func (r Role) valid() bool { return r == RoleNode || r == RoleBackend || r == RoleOperator }

// ErrUnauthenticated is wrapped when a peer presents no certificate, one not
// issued by the cluster CA, one without an ID, or one of another role than
// the connection requires.
var ErrUnauthenticated = errors.New("pki: peer not authenticated")

// ErrUnauthorized is wrapped when an authenticated peer is not allowed here
// (an [Authorizer] refused it).
var ErrUnauthorized = errors.New("pki: peer not authorized")

// Peer is an authenticated principal.
type Peer struct {
	ID   string
	Role Role
	// KeyFingerprint is the [KeyFingerprint] of the peer certificate's
	// public key, which a node set pins.
	KeyFingerprint string
}

// Node returns the peer's ID as a NodeID (meaningful for RoleNode only).
func (p Peer) Node() NodeID { return NodeID(p.ID) }

func (p Peer) String() string { return fmt.Sprintf("%s %q", p.Role, p.ID) }
