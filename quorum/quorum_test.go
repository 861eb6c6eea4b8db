package quorum

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const testCluster = "cluster-test"

// testKey derives a deterministic Ed25519 key from a name, so failures are
// reproducible.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("quorum-test-key/" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

type fixture struct {
	reg  Registry
	keys map[string]ed25519.PrivateKey // operator id -> key of its first device
	devs map[string]string             // operator id -> device id
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{keys: map[string]ed25519.PrivateKey{}, devs: map[string]string{}}
	ops := []Operator{
		{ID: "alice", Name: "Alice", Kind: KindHuman, Roles: []Role{RoleAdmin}, Status: StatusActive},
		{ID: "bob", Name: "Bob", Kind: KindHuman, Roles: []Role{RoleAdmin, RoleApprover}, Status: StatusActive},
		{ID: "carol", Name: "Carol", Kind: KindHuman, Roles: []Role{RoleAdmin}, Status: StatusActive},
		{ID: "dave", Name: "Dave", Kind: KindHuman, Roles: []Role{RoleApprover}, Status: StatusActive},
		{ID: "erin", Name: "Erin", Kind: KindHuman, Roles: []Role{RoleAuditor}, Status: StatusActive},
		{ID: "backend", Name: "Exchange backend", Kind: KindBackend, Roles: []Role{RoleInitiator}, Status: StatusActive},
	}
	var devs []Device
	for _, o := range ops {
		k := testKey(o.ID)
		pub := k.Public().(ed25519.PublicKey)
		d := Device{OperatorID: o.ID, Kind: DeviceEd25519, PublicKey: pub}
		devs = append(devs, d)
		f.keys[o.ID] = k
		f.devs[o.ID] = DeviceID(DeviceEd25519, pub)
	}
	reg, err := NewRegistry(testCluster, 2, ops, devs)
	if err != nil {
		t.Fatal(err)
	}
	f.reg = reg
	return f
}

func (f *fixture) sign(t testing.TB, op, request string, payload Hash, dec Decision, exp time.Time) Approval {
	t.Helper()
	a, err := Sign(Statement{ClusterID: testCluster, RequestID: request, PayloadHash: payload, Decision: dec, Expiry: exp}, f.devs[op], f.keys[op], nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCountTable(t *testing.T) {
	f := newFixture(t)
	payload := Hash(sha256.Sum256([]byte("tx")))
	other := Hash(sha256.Sum256([]byte("other tx")))
	exp := t0.Add(time.Hour)
	subj := Subject{RequestID: "req-1", PayloadHash: payload, Initiator: "backend"}
	approvers := Requirement{Required: 2, Roles: []Role{RoleAdmin, RoleApprover}}

	revoked := f.reg.Clone()
	d := revoked.Devices[f.devs["bob"]]
	d.Status = DeviceRevoked
	revoked.Devices[d.ID] = d
	suspended := f.reg.Clone()
	o := suspended.Operators["bob"]
	o.Status = StatusSuspended
	suspended.Operators["bob"] = o
	initiatorHuman := Subject{RequestID: "req-1", PayloadHash: payload, Initiator: "alice"}

	badSig := f.sign(t, "bob", "req-1", payload, Approve, exp)
	badSig.Signature[0] ^= 1
	wrongCluster := f.sign(t, "bob", "req-1", payload, Approve, exp)
	wrongCluster.ClusterID = "other"
	unknownDev := f.sign(t, "bob", "req-1", payload, Approve, exp)
	unknownDev.DeviceID = "00"
	// A device signing for a statement whose device id points at someone else.
	stolenID := f.sign(t, "dave", "req-1", payload, Approve, exp)
	stolenID.DeviceID = f.devs["alice"]

	tests := []struct {
		name      string
		reg       Registry
		subj      Subject
		req       Requirement
		approvals []Approval
		now       time.Time
		counted   int
		met       bool
		err       error
		ignored   []IgnoreReason
	}{
		{"two distinct approvers", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "dave", "req-1", payload, Approve, exp)}, t0, 2, true, nil, nil},
		{"same operator twice", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "alice", "req-1", payload, Approve, exp.Add(time.Second))}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonDuplicateOperator}},
		{"expired", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "dave", "req-1", payload, Approve, t0)}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonExpired}},
		{"wrong payload", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "dave", "req-1", other, Approve, exp)}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonWrongPayload}},
		{"wrong request", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "dave", "req-2", payload, Approve, exp)}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonWrongRequest}},
		{"wrong cluster", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), wrongCluster}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonWrongCluster}},
		{"bad signature", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), badSig}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonBadSignature}},
		{"device id of another operator", f.reg, subj, approvers, []Approval{f.sign(t, "bob", "req-1", payload, Approve, exp), stolenID}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonBadSignature}},
		{"unknown device", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), unknownDev}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonUnknownDevice}},
		{"revoked device", revoked, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "bob", "req-1", payload, Approve, exp)}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonDeviceRevoked}},
		{"suspended operator", suspended, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "bob", "req-1", payload, Approve, exp)}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonOperatorInactive}},
		{"initiator never counts", f.reg, initiatorHuman, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "dave", "req-1", payload, Approve, exp)}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonInitiator}},
		{"backend cannot approve", f.reg, Subject{RequestID: "req-1", PayloadHash: payload}, Requirement{Required: 2, Roles: []Role{RoleAdmin, RoleInitiator}}, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "backend", "req-1", payload, Approve, exp)}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonBackendCannotApprove}},
		{"role not allowed", f.reg, subj, Requirement{Required: 2, Roles: []Role{RoleAdmin}}, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "dave", "req-1", payload, Approve, exp)}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonRoleNotAllowed}},
		{"auditor cannot approve", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "erin", "req-1", payload, Approve, exp)}, t0, 1, false, ErrInsufficientApprovals, []IgnoreReason{ReasonRoleNotAllowed}},
		{"one rejection cancels", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "bob", "req-1", payload, Approve, exp), f.sign(t, "dave", "req-1", payload, Reject, exp)}, t0, 2, false, ErrRejected, nil},
		{"forged rejection ignored", f.reg, subj, approvers, func() []Approval {
			r := f.sign(t, "dave", "req-1", payload, Reject, exp)
			r.Signature[5] ^= 0x40
			return []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "bob", "req-1", payload, Approve, exp), r}
		}(), t0, 2, true, nil, []IgnoreReason{ReasonBadSignature}},
		{"expired rejection ignored", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "bob", "req-1", payload, Approve, exp), f.sign(t, "dave", "req-1", payload, Reject, t0.Add(-time.Second))}, t0, 2, true, nil, []IgnoreReason{ReasonExpired}},
		{"auditor rejection has no weight", f.reg, subj, approvers, []Approval{f.sign(t, "alice", "req-1", payload, Approve, exp), f.sign(t, "bob", "req-1", payload, Approve, exp), f.sign(t, "erin", "req-1", payload, Reject, exp)}, t0, 2, true, nil, []IgnoreReason{ReasonRoleNotAllowed}},
		{"required zero fails closed", f.reg, subj, Requirement{Required: 0, Roles: []Role{RoleAdmin}}, nil, t0, 0, false, ErrInsufficientApprovals, nil},
		{"no approvals", f.reg, subj, approvers, nil, t0, 0, false, ErrInsufficientApprovals, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := Count(tc.reg, tc.subj, tc.req, tc.approvals, tc.now)
			if len(tl.Counted) != tc.counted || tl.Met() != tc.met {
				t.Fatalf("counted %d met %v, want %d %v; tally %+v", len(tl.Counted), tl.Met(), tc.counted, tc.met, tl)
			}
			err := tl.Err()
			if (tc.err == nil) != (err == nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if len(tl.Ignored) != len(tc.ignored) {
				t.Fatalf("ignored %+v, want reasons %v", tl.Ignored, tc.ignored)
			}
			for i, r := range tc.ignored {
				if tl.Ignored[i].Reason != r {
					t.Errorf("ignored[%d] = %s, want %s", i, tl.Ignored[i].Reason, r)
				}
			}
		})
	}
}

func TestP256DeviceVerify(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), deterministicReader("p256"))
	if err != nil {
		t.Fatal(err)
	}
	kind, pub, err := PublicKeyBytes(&k.PublicKey)
	if err != nil || kind != DeviceP256 || len(pub) != 65 {
		t.Fatalf("PublicKeyBytes: %v %s %d", err, kind, len(pub))
	}
	d := Device{ID: DeviceID(kind, pub), Kind: kind, PublicKey: pub}
	st := Statement{ClusterID: testCluster, RequestID: "r", Decision: Approve, Expiry: t0}
	a, err := Sign(st, d.ID, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	dg, _ := st.Digest()
	if err := d.VerifyDigest(dg, a.Signature); err != nil {
		t.Fatalf("valid P-256 signature rejected: %v", err)
	}
	// The malleated (r, n-s) signature also verifies under ECDSA; a changed
	// digest or truncated signature must not.
	dg[0] ^= 1
	if err := d.VerifyDigest(dg, a.Signature); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("signature over another digest: %v", err)
	}
	dg[0] ^= 1
	if err := d.VerifyDigest(dg, a.Signature[:len(a.Signature)-1]); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("truncated signature: %v", err)
	}
	if err := ValidatePublicKey(DeviceP256, append([]byte{0x04}, make([]byte, 64)...)); err == nil {
		t.Fatal("point not on curve accepted")
	}
	wa := Device{Kind: DeviceWebAuthn, PublicKey: []byte{1}}
	if err := wa.VerifyDigest(dg, []byte{1}); !errors.Is(err, ErrUnsupportedDevice) {
		t.Fatalf("webauthn verify: %v", err)
	}
}

type detReader struct {
	s [32]byte
	n int
}

func deterministicReader(seed string) *detReader { return &detReader{s: sha256.Sum256([]byte(seed))} }

func (r *detReader) Read(p []byte) (int, error) {
	for i := range p {
		if r.n == 32 {
			r.s = sha256.Sum256(r.s[:])
			r.n = 0
		}
		p[i] = r.s[r.n]
		r.n++
	}
	return len(p), nil
}
