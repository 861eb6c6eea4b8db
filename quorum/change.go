package quorum

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ChangeKind names a registry change.
type ChangeKind string

// Registry changes. The first group needs AdminQuorum distinct admins; the
// second takes effect on one admin's signed approval, because stopping a
// stolen device must never wait for a meeting.
const (
	ChangeEnrollOperator     ChangeKind = "enroll_operator"
	ChangeAddDevice          ChangeKind = "add_device"
	ChangeSetRoles           ChangeKind = "set_roles"
	ChangeReactivateOperator ChangeKind = "reactivate_operator"
	ChangeSetAdminQuorum     ChangeKind = "set_admin_quorum"

	ChangeRevokeDevice    ChangeKind = "revoke_device"
	ChangeSuspendOperator ChangeKind = "suspend_operator"
)

// ErrInvalidChange is wrapped by every error about the content of a change
// (as opposed to its approvals).
var ErrInvalidChange = errors.New("quorum: invalid registry change")

// Change is a proposed registry change. Approvals for it sign a Statement
// whose RequestID is Change.ID and whose PayloadHash is Change.PayloadHash().
type Change struct {
	ID   string     `json:"id"`
	Kind ChangeKind `json:"kind"`
	// Operator is the new operator (enroll_operator).
	Operator *Operator `json:"operator,omitempty"`
	// Devices are the devices to add (enroll_operator: one or more of the new
	// operator's devices; add_device: exactly one).
	Devices []Device `json:"devices,omitempty"`
	// OperatorID is the target of set_roles, reactivate_operator,
	// suspend_operator.
	OperatorID string `json:"operator_id,omitempty"`
	// DeviceID is the target of revoke_device.
	DeviceID string `json:"device_id,omitempty"`
	// Roles are the new roles (set_roles).
	Roles []Role `json:"roles,omitempty"`
	// AdminQuorum is the new admin quorum (set_admin_quorum).
	AdminQuorum int `json:"admin_quorum,omitempty"`
}

// PayloadHash is SHA-256 of "custody/registry-change/v1" 0x00 followed by the
// change's JSON (struct fields in declaration order, so deterministic).
func (c Change) PayloadHash() Hash { return DomainHash("custody/registry-change/v1", c) }

// DomainHash is SHA-256 of domain, 0x00 and v's JSON (struct fields in
// declaration order, so deterministic): the payload hash approvers sign for
// a change of v's kind. It panics when v does not encode (changes are plain
// data).
func DomainHash(domain string, v any) Hash {
	b, err := json.Marshal(v)
	if err != nil {
		panic("quorum: " + domain + " is not JSON-encodable: " + err.Error())
	}
	return Hash(sha256.Sum256(append([]byte(domain+"\x00"), b...)))
}

// Requirement returns the approvals c needs under r and the operator whose
// own approval does not count for it (the operator being changed).
func (r Registry) Requirement(c Change) (Requirement, string) {
	admins := []Role{RoleAdmin}
	switch c.Kind {
	case ChangeRevokeDevice, ChangeSuspendOperator:
		return Requirement{Required: 1, Roles: admins}, ""
	case ChangeAddDevice:
		if len(c.Devices) == 1 {
			return Requirement{Required: r.AdminQuorum, Roles: admins}, c.Devices[0].OperatorID
		}
	case ChangeSetRoles, ChangeReactivateOperator:
		return Requirement{Required: r.AdminQuorum, Roles: admins}, c.OperatorID
	}
	return Requirement{Required: r.AdminQuorum, Roles: admins}, ""
}

// Apply validates c, counts approvals for it at time now, and returns the
// registry with c applied. The receiver is never modified; on any error the
// caller keeps its current registry. The tally is returned even on error so
// the ledger can record why approvals did not count.
func (r Registry) Apply(c Change, approvals []Approval, now time.Time) (Registry, Tally, error) {
	next, err := r.applyContent(c, now)
	if err != nil {
		return r, Tally{}, err
	}
	req, target := r.Requirement(c)
	t := Count(r, Subject{RequestID: c.ID, PayloadHash: c.PayloadHash(), Initiator: target}, req, approvals, now)
	if err := t.Err(); err != nil {
		return r, t, fmt.Errorf("quorum: %s %s: %w", c.Kind, c.ID, err)
	}
	next.Version++
	return next, t, nil
}

func (r Registry) applyContent(c Change, now time.Time) (Registry, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s: %s", ErrInvalidChange, c.Kind, c.ID, fmt.Sprintf(format, args...))
	}
	if err := validDigestID(c.ID); err != nil {
		return r, bad("id: %v", err)
	}
	next := r.Clone()
	switch c.Kind {
	case ChangeEnrollOperator:
		if c.Operator == nil || len(c.Devices) == 0 {
			return r, bad("needs the operator and at least one device")
		}
		op := *c.Operator
		op.Roles = slices.Clone(op.Roles)
		if op.Status == "" {
			op.Status = StatusActive
		}
		if err := op.validate(); err != nil {
			return r, bad("%v", err)
		}
		if op.Status != StatusActive {
			return r, bad("a new operator must be active")
		}
		if _, dup := r.Operators[op.ID]; dup {
			return r, bad("operator %q already exists", op.ID)
		}
		next.Operators[op.ID] = op
		for _, d := range c.Devices {
			if d.OperatorID != op.ID {
				return r, bad("device for %q in the enrollment of %q", d.OperatorID, op.ID)
			}
			d, err := next.checkNewDevice(d)
			if err != nil {
				return r, bad("%v", err)
			}
			next.Devices[d.ID] = d
		}
	case ChangeAddDevice:
		if len(c.Devices) != 1 {
			return r, bad("needs exactly one device")
		}
		d, err := next.checkNewDevice(c.Devices[0])
		if err != nil {
			return r, bad("%v", err)
		}
		next.Devices[d.ID] = d
	case ChangeSetRoles:
		op, ok := r.Operators[c.OperatorID]
		if !ok {
			return r, bad("unknown operator %q", c.OperatorID)
		}
		op.Roles = slices.Clone(c.Roles)
		if err := op.validate(); err != nil {
			return r, bad("%v", err)
		}
		next.Operators[op.ID] = op
	case ChangeReactivateOperator, ChangeSuspendOperator:
		op, ok := r.Operators[c.OperatorID]
		if !ok {
			return r, bad("unknown operator %q", c.OperatorID)
		}
		want := StatusActive
		if c.Kind == ChangeSuspendOperator {
			want = StatusSuspended
		}
		if op.Status == want {
			return r, bad("operator %q is already %s", op.ID, want)
		}
		op.Status = want
		next.Operators[op.ID] = op
	case ChangeRevokeDevice:
		d, ok := r.Devices[c.DeviceID]
		if !ok {
			return r, bad("unknown device %q", c.DeviceID)
		}
		if d.Status == DeviceRevoked {
			return r, bad("device %s is already revoked", d.ID)
		}
		d.Status = DeviceRevoked
		d.RevokedAt = now.UTC()
		next.Devices[d.ID] = d
	case ChangeSetAdminQuorum:
		if c.AdminQuorum < 1 {
			return r, bad("admin quorum must be at least 1")
		}
		if n := r.ActiveAdmins(); c.AdminQuorum > n {
			return r, bad("admin quorum %d exceeds the %d active admins", c.AdminQuorum, n)
		}
		next.AdminQuorum = c.AdminQuorum
	default:
		return r, bad("unknown change kind")
	}
	// Changes needing a quorum must leave enough admins to make the next one;
	// the immediate ones (revoke, suspend) are allowed to lock the registry
	// rather than keep a stolen key alive.
	if c.Kind != ChangeRevokeDevice && c.Kind != ChangeSuspendOperator {
		if n := next.ActiveAdmins(); n < next.AdminQuorum {
			return r, bad("would leave %d active admins for an admin quorum of %d", n, next.AdminQuorum)
		}
	}
	return next, nil
}
