package quorum

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

func (f *fixture) approve(t testing.TB, c Change, ops ...string) []Approval {
	t.Helper()
	var out []Approval
	for _, op := range ops {
		out = append(out, f.sign(t, op, c.ID, c.PayloadHash(), Approve, t0.Add(time.Hour)))
	}
	return out
}

func TestRegistryApply(t *testing.T) {
	f := newFixture(t)
	newKey := testKey("frank")
	frankDev := Device{OperatorID: "frank", Kind: DeviceEd25519, PublicKey: newKey.Public().(ed25519.PublicKey)}
	enroll := Change{ID: "chg-enroll", Kind: ChangeEnrollOperator,
		Operator: &Operator{ID: "frank", Name: "Frank", Kind: KindHuman, Roles: []Role{RoleApprover}},
		Devices:  []Device{frankDev}}
	bobNew := Device{OperatorID: "bob", Kind: DeviceEd25519, PublicKey: testKey("bob-2").Public().(ed25519.PublicKey)}

	tests := []struct {
		name    string
		change  Change
		signers []string
		err     error
		check   func(t *testing.T, r Registry)
	}{
		{"enroll with admin quorum", enroll, []string{"alice", "carol"}, nil, func(t *testing.T, r Registry) {
			if r.Operators["frank"].Status != StatusActive || r.Devices[DeviceID(DeviceEd25519, frankDev.PublicKey)].OperatorID != "frank" {
				t.Fatalf("frank not enrolled: %+v", r.Operators["frank"])
			}
		}},
		{"enroll with one admin", enroll, []string{"alice"}, ErrInsufficientApprovals, nil},
		{"enroll approved by non-admins", enroll, []string{"alice", "dave"}, ErrInsufficientApprovals, nil},
		{"add own device: own approval does not count", Change{ID: "chg-dev", Kind: ChangeAddDevice, Devices: []Device{bobNew}}, []string{"alice", "bob"}, ErrInsufficientApprovals, nil},
		{"add device with two other admins", Change{ID: "chg-dev", Kind: ChangeAddDevice, Devices: []Device{bobNew}}, []string{"alice", "carol"}, nil, func(t *testing.T, r Registry) {
			if r.Devices[DeviceID(DeviceEd25519, bobNew.PublicKey)].Status != DeviceActive {
				t.Fatal("device not added")
			}
		}},
		{"add an already enrolled key", Change{ID: "chg-dup", Kind: ChangeAddDevice, Devices: []Device{{OperatorID: "dave", Kind: DeviceEd25519, PublicKey: testKey("alice").Public().(ed25519.PublicKey)}}}, []string{"alice", "carol"}, ErrInvalidChange, nil},
		{"add malformed key", Change{ID: "chg-bad", Kind: ChangeAddDevice, Devices: []Device{{OperatorID: "dave", Kind: DeviceEd25519, PublicKey: []byte{1, 2}}}}, []string{"alice", "carol"}, ErrInvalidChange, nil},
		{"set roles", Change{ID: "chg-roles", Kind: ChangeSetRoles, OperatorID: "dave", Roles: []Role{RoleApprover, RoleAuditor}}, []string{"alice", "bob"}, nil, func(t *testing.T, r Registry) {
			if !r.Operators["dave"].HasRole(RoleAuditor) {
				t.Fatal("role not set")
			}
		}},
		{"set own roles does not count", Change{ID: "chg-roles", Kind: ChangeSetRoles, OperatorID: "alice", Roles: []Role{RoleAdmin, RoleApprover}}, []string{"alice", "bob"}, ErrInsufficientApprovals, nil},
		{"backend cannot become approver", Change{ID: "chg-roles", Kind: ChangeSetRoles, OperatorID: "backend", Roles: []Role{RoleApprover}}, []string{"alice", "bob"}, ErrInvalidChange, nil},
		{"revoke: one admin immediate", Change{ID: "chg-revoke", Kind: ChangeRevokeDevice, DeviceID: "DEV:dave"}, []string{"alice"}, nil, func(t *testing.T, r Registry) {
			d := r.Devices[f.devs["dave"]]
			if d.Status != DeviceRevoked || !d.RevokedAt.Equal(t0) {
				t.Fatalf("not revoked: %+v", d)
			}
		}},
		{"revoke by an approver", Change{ID: "chg-revoke", Kind: ChangeRevokeDevice, DeviceID: "DEV:alice"}, []string{"dave"}, ErrInsufficientApprovals, nil},
		{"suspend: one admin", Change{ID: "chg-susp", Kind: ChangeSuspendOperator, OperatorID: "dave"}, []string{"carol"}, nil, func(t *testing.T, r Registry) {
			if r.Operators["dave"].Status != StatusSuspended {
				t.Fatal("not suspended")
			}
		}},
		{"admin quorum above admins", Change{ID: "chg-q", Kind: ChangeSetAdminQuorum, AdminQuorum: 4}, []string{"alice", "bob"}, ErrInvalidChange, nil},
		{"admin quorum 3", Change{ID: "chg-q", Kind: ChangeSetAdminQuorum, AdminQuorum: 3}, []string{"alice", "bob"}, nil, func(t *testing.T, r Registry) {
			if r.AdminQuorum != 3 {
				t.Fatal("quorum not set")
			}
		}},
		{"demoting admins below quorum", Change{ID: "chg-demote", Kind: ChangeSetRoles, OperatorID: "carol", Roles: []Role{RoleApprover}}, []string{"alice", "bob"}, nil, nil},
		{"unknown kind", Change{ID: "chg-x", Kind: "format_disk"}, []string{"alice", "bob"}, ErrInvalidChange, nil},
		{"bad change id", Change{ID: "has space", Kind: ChangeSuspendOperator, OperatorID: "dave"}, nil, ErrInvalidChange, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.change.DeviceID, "DEV:") {
				tc.change.DeviceID = f.devs[strings.TrimPrefix(tc.change.DeviceID, "DEV:")]
			}
			before := f.reg.Hash()
			next, _, err := f.reg.Apply(tc.change, f.approve(t, tc.change, tc.signers...), t0)
			if f.reg.Hash() != before {
				t.Fatal("Apply modified its receiver")
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if next.Hash() != before {
					t.Fatal("failed Apply returned a changed registry")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if next.Version != f.reg.Version+1 {
				t.Fatalf("version %d", next.Version)
			}
			if tc.check != nil {
				tc.check(t, next)
			}
		})
	}
}

// An approval signed for one change cannot be used for another change under
// the same ID: the payload hash binds the content.
func TestRegistryApprovalBoundToContent(t *testing.T) {
	f := newFixture(t)
	a := Change{ID: "chg-1", Kind: ChangeSetRoles, OperatorID: "dave", Roles: []Role{RoleApprover, RoleAuditor}}
	b := a
	b.Roles = []Role{RoleAdmin}
	_, tl, err := f.reg.Apply(b, f.approve(t, a, "alice", "carol"), t0)
	if !errors.Is(err, ErrInsufficientApprovals) {
		t.Fatalf("err = %v", err)
	}
	if len(tl.Ignored) != 2 || tl.Ignored[0].Reason != ReasonWrongPayload {
		t.Fatalf("tally %+v", tl)
	}
}

func TestNewRegistryRejects(t *testing.T) {
	admin := Operator{ID: "a", Name: "A", Kind: KindHuman, Roles: []Role{RoleAdmin}, Status: StatusActive}
	dev := Device{OperatorID: "a", Kind: DeviceEd25519, PublicKey: testKey("a").Public().(ed25519.PublicKey)}
	cases := map[string]func() (Registry, error){
		"quorum above admins":  func() (Registry, error) { return NewRegistry("c", 2, []Operator{admin}, []Device{dev}) },
		"admin without device": func() (Registry, error) { return NewRegistry("c", 1, []Operator{admin}, nil) },
		"device of unknown operator": func() (Registry, error) {
			d := dev
			d.OperatorID = "zz"
			return NewRegistry("c", 1, []Operator{admin}, []Device{d})
		},
		"bad cluster id": func() (Registry, error) { return NewRegistry("", 1, []Operator{admin}, []Device{dev}) },
		"duplicate roles": func() (Registry, error) {
			o := admin
			o.Roles = []Role{RoleAdmin, RoleAdmin}
			return NewRegistry("c", 1, []Operator{o}, []Device{dev})
		},
		"unknown role": func() (Registry, error) {
			o := admin
			o.Roles = []Role{"root"}
			return NewRegistry("c", 1, []Operator{o}, []Device{dev})
		},
		"wrong device id": func() (Registry, error) {
			d := dev
			d.ID = "abc"
			return NewRegistry("c", 1, []Operator{admin}, []Device{d})
		},
	}
	for name, fn := range cases {
		if _, err := fn(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewRegistry("c", 1, []Operator{admin}, []Device{dev}); err != nil {
		t.Fatalf("valid genesis refused: %v", err)
	}
	_ = time.Second
}
