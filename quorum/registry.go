package quorum

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"
)

// Role is what an operator may do. An operator holds one or more roles.
type Role string

// The roles. Which roles count for a withdrawal is chosen by the matched policy
// rule; registry changes, unlocks and rule changes always need admins.
const (
	RoleAdmin     Role = "admin"     // manages operators, devices, rules; unlocks
	RoleApprover  Role = "approver"  // approves or rejects withdrawals and allowlist adds
	RoleInitiator Role = "initiator" // submits requests; never counts for its own request
	RoleAuditor   Role = "auditor"   // reads the ledger; may lock
)

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleApprover, RoleInitiator, RoleAuditor:
		return true
	}
	return false
}

// OperatorKind separates people from the exchange backend. A backend principal
// may only initiate: it can never hold a role that approves.
type OperatorKind string

// Operator kinds.
const (
	KindHuman   OperatorKind = "human"
	KindBackend OperatorKind = "backend"
)

// OperatorStatus is active or suspended. A suspended operator's approvals
// never count.
type OperatorStatus string

// Operator statuses.
const (
	StatusActive    OperatorStatus = "active"
	StatusSuspended OperatorStatus = "suspended"
)

// Operator is a person (or the backend principal) known to the cluster.
type Operator struct {
	ID     string         `json:"id"`
	Name   string         `json:"name"`
	Kind   OperatorKind   `json:"kind"`
	Roles  []Role         `json:"roles"`
	Status OperatorStatus `json:"status"`
}

// HasRole reports whether o holds any of roles.
func (o Operator) HasRole(roles ...Role) bool {
	for _, r := range o.Roles {
		if slices.Contains(roles, r) {
			return true
		}
	}
	return false
}

func (o Operator) validate() error {
	if err := validID("operator id", o.ID); err != nil {
		return err
	}
	if o.Name == "" || len(o.Name) > 128 || !utf8.ValidString(o.Name) {
		return fmt.Errorf("quorum: operator %q: name must be 1..128 bytes of UTF-8", o.ID)
	}
	switch o.Status {
	case StatusActive, StatusSuspended:
	default:
		return fmt.Errorf("quorum: operator %q: unknown status %q", o.ID, o.Status)
	}
	if err := validRoles(o.Roles); err != nil {
		return fmt.Errorf("quorum: operator %q: %w", o.ID, err)
	}
	switch o.Kind {
	case KindHuman:
	case KindBackend:
		if len(o.Roles) != 1 || o.Roles[0] != RoleInitiator {
			return fmt.Errorf("quorum: operator %q: a backend principal may only have the initiator role", o.ID)
		}
	default:
		return fmt.Errorf("quorum: operator %q: unknown kind %q", o.ID, o.Kind)
	}
	return nil
}

func validRoles(roles []Role) error {
	if len(roles) == 0 {
		return errors.New("no roles")
	}
	seen := map[Role]bool{}
	for _, r := range roles {
		if !r.Valid() {
			return fmt.Errorf("unknown role %q", r)
		}
		if seen[r] {
			return fmt.Errorf("duplicate role %q", r)
		}
		seen[r] = true
	}
	return nil
}

// validID accepts 1..64 bytes of [A-Za-z0-9._@-]: IDs end up in digests, logs
// and file names, so they stay boring.
func validID(what, s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("quorum: %s %q must be 1..64 characters", what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@'
		if !ok {
			return fmt.Errorf("quorum: %s %q: only letters, digits and . _ - @ are allowed", what, s)
		}
	}
	return nil
}

// Registry is the replicated set of operators and devices plus the admin
// quorum size. It is a value: [Registry.Apply] returns a new Registry and never
// modifies the receiver, so the FSM can swap it in only when a change succeeded.
type Registry struct {
	// ClusterID is bound into every approval digest verified against this
	// registry, so approvals cannot be replayed across clusters.
	ClusterID string `json:"cluster_id"`
	// AdminQuorum is how many distinct admins approve a registry change, an
	// unlock or a rules change.
	AdminQuorum int `json:"admin_quorum"`
	// Version counts applied changes; bundles pin a registry by version + hash.
	Version   uint64              `json:"version"`
	Operators map[string]Operator `json:"operators"`
	Devices   map[string]Device   `json:"devices"`
}

// NewRegistry builds the genesis registry from a trusted bootstrap set (the
// cluster's init ceremony). It needs at least adminQuorum active admins with an
// active device, so the registry can be changed afterwards.
func NewRegistry(clusterID string, adminQuorum int, ops []Operator, devs []Device) (Registry, error) {
	if err := validClusterID(clusterID); err != nil {
		return Registry{}, err
	}
	r := Registry{ClusterID: clusterID, AdminQuorum: adminQuorum, Operators: map[string]Operator{}, Devices: map[string]Device{}}
	for _, o := range ops {
		if err := o.validate(); err != nil {
			return Registry{}, err
		}
		if _, dup := r.Operators[o.ID]; dup {
			return Registry{}, fmt.Errorf("quorum: duplicate operator %q", o.ID)
		}
		o.Roles = slices.Clone(o.Roles)
		r.Operators[o.ID] = o
	}
	for _, d := range devs {
		d, err := r.checkNewDevice(d)
		if err != nil {
			return Registry{}, err
		}
		r.Devices[d.ID] = d
	}
	if adminQuorum < 1 {
		return Registry{}, errors.New("quorum: admin quorum must be at least 1")
	}
	if n := r.ActiveAdmins(); n < adminQuorum {
		return Registry{}, fmt.Errorf("quorum: admin quorum %d needs at least that many active admins with an active device, have %d", adminQuorum, n)
	}
	return r, nil
}

// Clone returns a deep copy of r.
func (r Registry) Clone() Registry {
	c := r
	c.Operators = make(map[string]Operator, len(r.Operators))
	for k, o := range r.Operators {
		o.Roles = slices.Clone(o.Roles)
		c.Operators[k] = o
	}
	c.Devices = make(map[string]Device, len(r.Devices))
	for k, d := range r.Devices {
		d.PublicKey = slices.Clone(d.PublicKey)
		d.Credential = slices.Clone(d.Credential)
		c.Devices[k] = d
	}
	return c
}

// ActiveAdmins counts active human admins that have at least one active device:
// the people who can actually approve a registry change.
func (r Registry) ActiveAdmins() int {
	n := 0
	for _, o := range r.Operators {
		if o.Status != StatusActive || !o.HasRole(RoleAdmin) {
			continue
		}
		for _, d := range r.Devices {
			if d.OperatorID == o.ID && d.Status == DeviceActive {
				n++
				break
			}
		}
	}
	return n
}

// Hash is SHA-256 over the registry's canonical JSON (maps sorted by key), so
// offline bundles can pin the exact registry they were approved under.
func (r Registry) Hash() Hash {
	b, err := json.Marshal(r)
	if err != nil {
		panic("quorum: registry is not JSON-encodable: " + err.Error())
	}
	return Hash(sha256.Sum256(append([]byte("custody/registry/v1\x00"), b...)))
}

// Hash is a 32-byte digest that encodes as lowercase hex in JSON and text.
type Hash [32]byte

// String returns the lowercase hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes h as lowercase hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes exactly 64 hex digits.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash decodes exactly 64 hex digits (an optional 0x prefix is accepted).
func ParseHash(s string) (Hash, error) {
	if len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X") {
		s = s[2:]
	}
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("quorum: hash must be 64 hex digits, got %d characters", len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("quorum: hash is not hex: %w", err)
	}
	return h, nil
}

// sortedKeys gives deterministic iteration for anything that reports lists.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
