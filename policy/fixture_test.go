package policy

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/quorum"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const cluster = "cluster-test"

// testOps: 3 admins (alice, bob, carol), 3 approvers (dave, erin, frank), an
// auditor (grace) and the backend principal. Admin quorum 2.
var testOps = []quorum.Operator{
	{ID: "alice", Name: "Alice", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleAdmin}, Status: quorum.StatusActive},
	{ID: "bob", Name: "Bob", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleAdmin}, Status: quorum.StatusActive},
	{ID: "carol", Name: "Carol", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleAdmin}, Status: quorum.StatusActive},
	{ID: "dave", Name: "Dave", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleApprover}, Status: quorum.StatusActive},
	{ID: "erin", Name: "Erin", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleApprover}, Status: quorum.StatusActive},
	{ID: "frank", Name: "Frank", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleApprover}, Status: quorum.StatusActive},
	{ID: "grace", Name: "Grace", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleAuditor}, Status: quorum.StatusActive},
	{ID: "backend", Name: "Backend", Kind: quorum.KindBackend, Roles: []quorum.Role{quorum.RoleInitiator}, Status: quorum.StatusActive},
}

type world struct {
	reg  quorum.Registry
	keys map[string]ed25519.PrivateKey
	devs map[string]string
}

func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("policy-test-key/" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{keys: map[string]ed25519.PrivateKey{}, devs: map[string]string{}}
	var devs []quorum.Device
	for _, o := range testOps {
		k := key(o.ID)
		pub := k.Public().(ed25519.PublicKey)
		devs = append(devs, quorum.Device{OperatorID: o.ID, Kind: quorum.DeviceEd25519, PublicKey: pub})
		w.keys[o.ID] = k
		w.devs[o.ID] = quorum.DeviceID(quorum.DeviceEd25519, pub)
	}
	reg, err := quorum.NewRegistry(cluster, 2, testOps, devs)
	if err != nil {
		t.Fatal(err)
	}
	w.reg = reg
	return w
}

func (w *world) sign(t testing.TB, op, id string, h quorum.Hash, d quorum.Decision, exp time.Time) quorum.Approval {
	t.Helper()
	a, err := quorum.Sign(quorum.Statement{ClusterID: cluster, RequestID: id, PayloadHash: h, Decision: d, Expiry: exp}, w.devs[op], w.keys[op], nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (w *world) approveChange(t testing.TB, c Change, ops ...string) []quorum.Approval {
	t.Helper()
	var out []quorum.Approval
	for _, op := range ops {
		out = append(out, w.sign(t, op, c.ID, c.PayloadHash(), quorum.Approve, t0.Add(30*24*time.Hour)))
	}
	return out
}

func (w *world) approveReq(t testing.TB, r Request, ops ...string) []quorum.Approval {
	t.Helper()
	var out []quorum.Approval
	for _, op := range ops {
		out = append(out, w.sign(t, op, r.ID, r.PayloadHash, quorum.Approve, t0.Add(30*24*time.Hour)))
	}
	return out
}

func units(t testing.TB, s string, dec int) amount.Amount {
	t.Helper()
	a, err := amount.ParseUnits(s, dec)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const (
	dest1 = "0x52908400098527886E0F7030069857D2E4169EE7"
	dest2 = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"
)

// allowState returns a state with dest1 active for eth-hot-1 and dest2
// account-wide but still cooling off at t0.
func allowState(t testing.TB) State {
	t.Helper()
	st, err := NewState([]AllowlistEntry{
		{Wallet: "eth-hot-1", Chain: "eth", Network: "mainnet", Address: dest1, ApprovedAt: t0.Add(-48 * time.Hour), ActiveAt: t0.Add(-24 * time.Hour)},
		{Chain: "eth", Network: "mainnet", Address: dest2, ApprovedAt: t0.Add(-time.Hour), ActiveAt: t0.Add(23 * time.Hour)},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func ethReq(t testing.TB, id, wallet, to, amount string) Request {
	return Request{
		ID:          id,
		Withdrawal:  Withdrawal{Wallet: wallet, Asset: "ETH", Chain: "eth", Network: "mainnet", To: to, Amount: units(t, amount, 18)},
		Initiator:   "backend",
		PayloadHash: quorum.Hash(sha256.Sum256([]byte(id))),
	}
}
