package tss

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/custody-dev/custody/pki"
)

// SessionID is the 256-bit identifier of one protocol run. It is fixed before
// the run (in production: in the ledger claim) and never reused.
type SessionID [32]byte

// NewSessionID returns a fresh random session ID from crypto/rand.
func NewSessionID() SessionID {
	var s SessionID
	if _, err := rand.Read(s[:]); err != nil {
		panic(fmt.Errorf("tss: crypto/rand: %w", err))
	}
	return s
}

// ErrBadSessionID is returned by ParseSessionID for anything but 64 hex digits.
var ErrBadSessionID = errors.New("tss: bad session ID")

// ParseSessionID parses the hex form String returns (64 hex digits, either
// case).
func ParseSessionID(s string) (SessionID, error) {
	var id SessionID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("%w: want %d hex digits, got %d characters", ErrBadSessionID, 2*len(id), len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return SessionID{}, fmt.Errorf("%w: not hex", ErrBadSessionID)
	}
	return id, nil
}

// String returns the hex form of the session ID.
func (s SessionID) String() string { return hex.EncodeToString(s[:]) }

// Role says which committee a party speaks for inside one session. Keygen
// and signing use RoleMain; resharing uses RoleOld and RoleNew, and a node
// in both committees runs one party per role.
type Role uint8

// Roles of a party in a session.
const (
	RoleMain Role = 0
	RoleOld  Role = 1
	RoleNew  Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleMain:
		return "main"
	case RoleOld:
		return "old"
	case RoleNew:
		return "new"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// partyRef is one protocol participant: a node speaking in a role.
type partyRef struct {
	Node pki.NodeID
	Role Role
}

func (p partyRef) String() string {
	if p.Role == RoleMain {
		return string(p.Node)
	}
	return string(p.Node) + "/" + p.Role.String()
}
