package genesis

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Validate checks everything a genesis must satisfy and returns the first
// problem as an *Error naming its JSON path. The rules are the ledger's
// (quorum.NewRegistry, policy.ParseRules, the ceiling's bounds, the node
// set), made stricter where a genesis has no reason to differ: every
// operator and device active, every operator with a device, only device
// kinds that verify approvals. A genesis that validates is one the ledger
// applies.
func (g *Genesis) Validate() error {
	fail := func(path, format string, args ...any) error {
		return &Error{Path: path, Err: fmt.Errorf(format, args...)}
	}
	if g.Version != Version {
		return fail("version", "must be %q, not %q", Version, g.Version)
	}
	if err := validID(g.ClusterID); err != nil {
		return fail("cluster_id", "%v", err)
	}
	if g.AdminQuorum < 1 {
		return fail("admin_quorum", "must be at least 1")
	}
	if d := g.MaxApprovalValidity; d == 0 {
		return fail("max_approval_validity", "required (e.g. 48h)")
	} else if d < Duration(quorum.MinApprovalValidity) || d > Duration(quorum.MaxApprovalCeiling) {
		return fail("max_approval_validity", "%s is outside %s..%s", d, Duration(quorum.MinApprovalValidity), Duration(quorum.MaxApprovalCeiling))
	}

	if len(g.Operators) == 0 {
		return fail("operators", "at least one operator is required")
	}
	ops := map[string]int{}
	for i, o := range g.Operators {
		p := index("operators", i)
		if err := validID(o.ID); err != nil {
			return fail(p+".id", "%v", err)
		}
		if j, dup := ops[o.ID]; dup {
			return fail(p+".id", "operator %q is already operators[%d]", o.ID, j)
		}
		ops[o.ID] = i
		if o.Name == "" || len(o.Name) > 128 || !printable(o.Name) {
			return fail(p+".name", "must be 1..128 bytes of UTF-8 without control characters")
		}
		if o.Kind != quorum.KindHuman && o.Kind != quorum.KindBackend {
			return fail(p+".kind", "must be %q or %q, not %q", quorum.KindHuman, quorum.KindBackend, o.Kind)
		}
		if err := validRoles(o); err != nil {
			return fail(p+".roles", "%v", err)
		}
		if o.Status != quorum.StatusActive {
			return fail(p+".status", "must be %q at genesis, not %q", quorum.StatusActive, o.Status)
		}
	}

	devs := map[string]int{}
	owned := map[string]bool{}
	for i, d := range g.Devices {
		p := index("devices", i)
		if d.Kind != quorum.DeviceEd25519 && d.Kind != quorum.DeviceP256 {
			return fail(p+".kind", "must be %q or %q (kinds that verify approvals), not %q", quorum.DeviceEd25519, quorum.DeviceP256, d.Kind)
		}
		if err := quorum.ValidatePublicKey(d.Kind, d.PublicKey); err != nil {
			return fail(p+".public_key", "%v", err)
		}
		if want := quorum.DeviceID(d.Kind, d.PublicKey); d.ID != want {
			return fail(p+".id", "must be %s, the ID of its key (quorum.DeviceID), not %q", want, d.ID)
		}
		if j, dup := devs[d.ID]; dup {
			return fail(p+".id", "device %s is already devices[%d]", d.ID, j)
		}
		devs[d.ID] = i
		if _, ok := ops[d.OperatorID]; !ok {
			return fail(p+".operator_id", "no operator %q in operators", d.OperatorID)
		}
		owned[d.OperatorID] = true
		if len(d.Credential) > 0 {
			return fail(p+".credential", "only WebAuthn devices carry a credential")
		}
		if len(d.Label) > 128 || !printable(d.Label) {
			return fail(p+".label", "must be at most 128 bytes of UTF-8 without control characters")
		}
		if d.Status != quorum.DeviceActive {
			return fail(p+".status", "must be %q at genesis, not %q", quorum.DeviceActive, d.Status)
		}
		if !d.RevokedAt.IsZero() {
			return fail(p+".revoked_at", "a genesis device is not revoked")
		}
	}
	admins := 0
	for i, o := range g.Operators {
		if !owned[o.ID] {
			return fail(index("operators", i), "operator %q has no device (every operator, backends too, needs one)", o.ID)
		}
		if o.HasRole(quorum.RoleAdmin) {
			admins++
		}
	}
	if g.AdminQuorum > admins {
		return fail("admin_quorum", "%d is more than the %d admins", g.AdminQuorum, admins)
	}

	if len(g.Nodes) == 0 {
		return fail("nodes", "at least one node is required")
	}
	ids := map[pki.NodeID]int{}
	keys := map[string]int{}
	for i, n := range g.Nodes {
		p := index("nodes", i)
		if err := n.ID.Validate(); err != nil {
			return fail(p+".id", "%v", err)
		}
		if j, dup := ids[n.ID]; dup {
			return fail(p+".id", "node %q is already nodes[%d]", n.ID, j)
		}
		ids[n.ID] = i
		if err := pki.ValidKeyFingerprint(n.KeyFingerprint); err != nil {
			return fail(p+".key_fingerprint", "%v", err)
		}
		if j, dup := keys[n.KeyFingerprint]; dup {
			return fail(p+".key_fingerprint", "the same key as nodes[%d]", j)
		}
		keys[n.KeyFingerprint] = i
	}

	if !utf8.ValidString(g.Rules) {
		return fail("rules", "not valid UTF-8")
	}
	rules, err := policy.ParseRules([]byte(g.Rules))
	if err != nil {
		return &Error{Path: "rules", Err: err}
	}
	if g.RulesHash != rules.Hash() {
		return fail("rules_hash", "the rules hash to %s, not %q", rules.Hash(), g.RulesHash)
	}

	// The ledger's own check, last: anything it refuses that the checks
	// above let through is a gap here, reported rather than written.
	if _, err := quorum.NewRegistry(g.ClusterID, g.AdminQuorum, g.Operators, g.Devices); err != nil {
		return &Error{Err: fmt.Errorf("registry: %w", err)}
	}
	return nil
}

// printable reports valid UTF-8 without control characters: names and
// labels are read by people checking the genesis, on terminals.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// validID accepts 1..64 bytes of letters, digits and . _ - @ (quorum's rule
// for operator IDs, applied to the cluster ID too).
func validID(s string) error {
	if len(s) == 0 || len(s) > 64 {
		return errors.New("must be 1..64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@'
		if !ok {
			return fmt.Errorf("%q: only letters, digits and . _ - @ are allowed", s)
		}
	}
	return nil
}

func validRoles(o quorum.Operator) error {
	if len(o.Roles) == 0 {
		return errors.New("at least one role is required")
	}
	for i, r := range o.Roles {
		if !r.Valid() {
			return fmt.Errorf("unknown role %q", r)
		}
		if slices.Contains(o.Roles[:i], r) {
			return fmt.Errorf("duplicate role %q", r)
		}
	}
	if o.Kind == quorum.KindBackend && (len(o.Roles) != 1 || o.Roles[0] != quorum.RoleInitiator) {
		return fmt.Errorf("a backend principal has exactly the role %q", quorum.RoleInitiator)
	}
	return nil
}
