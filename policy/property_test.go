package policy

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/custody-dev/custody/quorum"
)

// The property test drives random interleavings of allowlist add/remove,
// lock/unlock, device enroll/revoke, approvals and time steps through the real
// State.Apply, Registry.Apply and Authorize, and checks every outcome against
// an independent model that knows which approvals are genuine:
//
//   - never approved while locked;
//   - never to an address that is not active on the allowlist;
//   - never with fewer than the required distinct valid approvals;
//   - never counting the initiator or a revoked device;
//   - allowlist additions, unlocks and device enrollments only with their quorum.

type propSigner struct {
	op  string
	key ed25519.PrivateKey
}

type propModel struct {
	w        *world
	rules    *Rules
	st       State
	reg      quorum.Registry
	now      time.Time
	devices  map[string]propSigner // device id -> signer
	revoked  map[string]bool
	allow    map[string]time.Time // wallet|address -> active at
	locks    map[string]time.Time // wallet ("" account) -> unlock at (zero: none pending)
	forged   map[string]bool      // hex(signature) of forged approvals
	approved int
	denials  map[Reason]int
}

var propWallets = []string{"eth-hot-1", "eth-hot-2"}
var propAddrs = []string{dest1, dest2, "0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222"}

func (m *propModel) locked(wallet string) bool {
	for _, s := range []string{AccountScope, wallet} {
		if u, ok := m.locks[s]; ok && (u.IsZero() || m.now.Before(u)) {
			return true
		}
	}
	return false
}

func (m *propModel) anyLocked() bool {
	for s := range m.locks {
		if m.locked(s) {
			return true
		}
	}
	return false
}

func (m *propModel) payable(wallet, addr string) bool {
	for _, s := range []string{wallet, AccountScope} {
		if at, ok := m.allow[s+"|"+addr]; ok && !m.now.Before(at) {
			return true
		}
	}
	return false
}

func (m *propModel) role(op string) []quorum.Role {
	for _, o := range testOps {
		if o.ID == op {
			return o.Roles
		}
	}
	return nil
}

// oracle counts distinct operators whose approvals are genuinely valid, and
// reports whether a valid rejection exists, without calling quorum.Count.
func (m *propModel) oracle(approvals []quorum.Approval, id string, h quorum.Hash, initiator string, roles []quorum.Role) (int, bool) {
	ops := map[string]bool{}
	rejected := false
	for _, a := range approvals {
		s, ok := m.devices[a.DeviceID]
		if !ok || m.revoked[a.DeviceID] || m.forged[fmt.Sprintf("%x", a.Signature)] {
			continue
		}
		if a.RequestID != id || a.PayloadHash != h || a.ClusterID != cluster || !m.now.Before(a.Expiry) {
			continue
		}
		opRoles := m.role(s.op)
		allowed := slices.ContainsFunc(opRoles, func(r quorum.Role) bool { return slices.Contains(roles, r) })
		if a.Decision == quorum.Reject {
			if allowed || slices.Contains(opRoles, quorum.RoleAdmin) || s.op == initiator {
				rejected = true
			}
			continue
		}
		if s.op == initiator || s.op == "backend" || !allowed {
			continue
		}
		ops[s.op] = true
	}
	return len(ops), rejected
}

// approvals makes a random mix of genuine, forged, expired, misdirected,
// duplicate and rejecting approvals for (id, h).
func (m *propModel) approvals(rng *rand.Rand, id string, h quorum.Hash, t testing.TB, want ...quorum.Role) []quorum.Approval {
	ids := slices.Sorted(func(yield func(string) bool) {
		for d := range m.devices {
			if !yield(d) {
				return
			}
		}
	})
	// Half the time start from devices of operators holding a wanted role,
	// so quorums are actually reached; the rest is noise.
	var picks []string
	if len(want) > 0 && rng.Intn(2) == 0 {
		for _, d := range ids {
			if slices.ContainsFunc(m.role(m.devices[d].op), func(r quorum.Role) bool { return slices.Contains(want, r) }) && rng.Intn(3) > 0 {
				picks = append(picks, d)
			}
		}
	}
	for range rng.Intn(4) {
		picks = append(picks, ids[rng.Intn(len(ids))])
	}
	var out []quorum.Approval
	for _, dev := range picks {
		s := m.devices[dev]
		st := quorum.Statement{ClusterID: cluster, RequestID: id, PayloadHash: h, Decision: quorum.Approve,
			Expiry: m.now.Add(time.Duration(rng.Intn(48)-4) * time.Hour).Truncate(time.Second)}
		if !st.Expiry.After(time.Unix(0, 0)) {
			st.Expiry = time.Unix(1, 0)
		}
		switch rng.Intn(20) {
		case 0:
			st.Decision = quorum.Reject
		case 1:
			st.PayloadHash[0] ^= 1
		case 2:
			st.RequestID += "-other"
		}
		a, err := quorum.Sign(st, dev, s.key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rng.Intn(15) == 0 {
			a.Signature[rng.Intn(len(a.Signature))] ^= 1 << rng.Intn(8)
			m.forged[fmt.Sprintf("%x", a.Signature)] = true
		}
		out = append(out, a)
	}
	return out
}

func TestPropertyInterleavings(t *testing.T) {
	steps := 2000
	if testing.Short() {
		steps = 500
	}
	for _, seed := range []int64{1, 2} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runProperty(t, seed, steps) })
	}
}

func runProperty(t *testing.T, seed int64, steps int) {
	rng := rand.New(rand.NewSource(seed))
	w := newWorld(t)
	m := &propModel{w: w, rules: loadRules(t), reg: w.reg, now: t0, devices: map[string]propSigner{}, revoked: map[string]bool{},
		allow: map[string]time.Time{}, locks: map[string]time.Time{}, forged: map[string]bool{}, denials: map[Reason]int{}}
	for op, dev := range w.devs {
		m.devices[dev] = propSigner{op: op, key: w.keys[op]}
	}
	allowRoles := m.rules.Allowlist.Roles
	admins := []quorum.Role{quorum.RoleAdmin}
	nextID := 0
	newID := func(p string) string { nextID++; return fmt.Sprintf("%s-%d", p, nextID) }

	for step := range steps {
		switch k := rng.Intn(100); {
		case k < 10: // time passes
			m.now = m.now.Add([]time.Duration{0, time.Minute, 30 * time.Minute, time.Hour, 6 * time.Hour, 25 * time.Hour}[rng.Intn(6)])
		case k < 22: // allowlist add
			wallet := []string{"eth-hot-1", "eth-hot-2", AccountScope}[rng.Intn(3)]
			c := Change{ID: newID("add"), Kind: ChangeAllowlistAdd, Wallet: wallet, Chain: "eth", Network: "mainnet", Address: propAddrs[rng.Intn(len(propAddrs))]}
			a := m.approvals(rng, c.ID, c.PayloadHash(), t, allowRoles...)
			next, _, err := m.st.Apply(m.rules, m.reg, c, a, nil, m.now)
			if err == nil {
				n, rej := m.oracle(a, c.ID, c.PayloadHash(), "", allowRoles)
				if n < m.rules.Allowlist.Approvals || rej {
					t.Fatalf("step %d: allowlist add with %d valid approvals (rejected %v)", step, n, rej)
				}
				if (wallet == AccountScope && m.anyLocked()) || (wallet != AccountScope && m.locked(wallet)) {
					t.Fatalf("step %d: allowlist add while locked", step)
				}
				m.allow[wallet+"|"+c.Address] = m.now.Add(24 * time.Hour)
				m.st = next
			}
		case k < 27: // allowlist remove
			wallet := []string{"eth-hot-1", "eth-hot-2", AccountScope}[rng.Intn(3)]
			c := Change{ID: newID("rm"), Kind: ChangeAllowlistRemove, Wallet: wallet, Chain: "eth", Network: "mainnet", Address: propAddrs[rng.Intn(len(propAddrs))]}
			next, _, err := m.st.Apply(m.rules, m.reg, c, m.approvals(rng, c.ID, c.PayloadHash(), t, quorum.RoleApprover), nil, m.now)
			if err == nil {
				delete(m.allow, wallet+"|"+c.Address)
				m.st = next
			}
		case k < 30: // lock
			wallet := []string{"eth-hot-1", "eth-hot-2", AccountScope}[rng.Intn(3)]
			c := Change{ID: newID("lock"), Kind: ChangeLock, Wallet: wallet}
			next, _, err := m.st.Apply(m.rules, m.reg, c, m.approvals(rng, c.ID, c.PayloadHash(), t), nil, m.now)
			if err == nil {
				m.locks[wallet] = time.Time{}
				m.st = next
			}
		case k < 40: // unlock
			wallet := []string{"eth-hot-1", "eth-hot-2", AccountScope}[rng.Intn(3)]
			c := Change{ID: newID("unlock"), Kind: ChangeUnlock, Wallet: wallet}
			a := m.approvals(rng, c.ID, c.PayloadHash(), t, admins...)
			next, _, err := m.st.Apply(m.rules, m.reg, c, a, nil, m.now)
			if err == nil {
				if n, rej := m.oracle(a, c.ID, c.PayloadHash(), "", admins); n < m.reg.AdminQuorum || rej {
					t.Fatalf("step %d: unlock with %d admin approvals", step, n)
				}
				m.locks[wallet] = m.now.Add(time.Duration(m.rules.Lock.UnlockDelay))
				m.st = next
			}
		case k < 45: // enroll a new device for a human operator
			op := testOps[rng.Intn(len(testOps)-1)].ID
			kseed := sha256.Sum256([]byte(fmt.Sprint("prop-dev", seed, step)))
			key := ed25519.NewKeyFromSeed(kseed[:])
			c := quorum.Change{ID: newID("dev"), Kind: quorum.ChangeAddDevice, Devices: []quorum.Device{{OperatorID: op, Kind: quorum.DeviceEd25519, PublicKey: key.Public().(ed25519.PublicKey)}}}
			a := m.approvals(rng, c.ID, c.PayloadHash(), t, admins...)
			next, _, err := m.reg.Apply(c, a, m.now)
			if err == nil {
				if n, rej := m.oracle(a, c.ID, c.PayloadHash(), op, admins); n < m.reg.AdminQuorum || rej {
					t.Fatalf("step %d: device enrolled with %d admin approvals", step, n)
				}
				m.devices[quorum.DeviceID(quorum.DeviceEd25519, key.Public().(ed25519.PublicKey))] = propSigner{op: op, key: key}
				m.reg = next
			}
		case k < 47: // revoke a device (keep at least 2 admins able to act)
			ids := slices.Sorted(func(yield func(string) bool) {
				for d := range m.devices {
					if !m.revoked[d] && !yield(d) {
						return
					}
				}
			})
			dev := ids[rng.Intn(len(ids))]
			c := quorum.Change{ID: newID("revoke"), Kind: quorum.ChangeRevokeDevice, DeviceID: dev}
			next, _, err := m.reg.Apply(c, m.approvals(rng, c.ID, c.PayloadHash(), t, admins...), m.now)
			if err == nil {
				if next.ActiveAdmins() < next.AdminQuorum {
					continue // would freeze governance; the model keeps it usable
				}
				m.revoked[dev] = true
				m.reg = next
			}
		default: // a withdrawal and its approvals
			initiator := "backend"
			if rng.Intn(4) == 0 {
				initiator = []string{"dave", "alice", "erin"}[rng.Intn(3)]
			}
			wallet := propWallets[rng.Intn(len(propWallets))]
			to := propAddrs[rng.Intn(len(propAddrs))]
			amount := []string{"0.5", "2", "4", "6"}[rng.Intn(4)]
			req := ethReq(t, newID("wd"), wallet, to, amount)
			req.Initiator = initiator
			a := m.approvals(rng, req.ID, req.PayloadHash, t, quorum.RoleApprover, quorum.RoleAdmin)
			// Duplicates of a genuine approval must not add weight.
			if len(a) > 0 && rng.Intn(3) == 0 {
				a = append(a, a[0], a[0])
			}
			d := Authorize(m.rules, m.st, m.reg, req, a, m.now)
			if !d.Approved {
				m.denials[d.Reason]++
				continue
			}
			m.approved++
			if m.locked(wallet) {
				t.Fatalf("step %d: approved while locked", step)
			}
			if !m.payable(wallet, to) {
				t.Fatalf("step %d: approved to %s which is not active on the allowlist of %s", step, to, wallet)
			}
			n, rej := m.oracle(a, req.ID, req.PayloadHash, initiator, d.Roles)
			if n < d.Required || rej || d.Required < 1 {
				t.Fatalf("step %d: approved with %d valid distinct approvals of %d required (rejected %v)", step, n, d.Required, rej)
			}
			for _, v := range d.Tally.Counted {
				if v.OperatorID == initiator {
					t.Fatalf("step %d: initiator counted", step)
				}
				if m.revoked[v.DeviceID] {
					t.Fatalf("step %d: revoked device counted", step)
				}
			}
			m.st = m.st.RecordSpend(Spend{RequestID: req.ID, Wallet: wallet, Asset: "ETH", Amount: req.Amount, At: m.now}, m.rules.MaxWindow())
		}
	}
	// The walk must actually reach both outcomes, or it proves nothing.
	if m.approved == 0 || m.denials[ReasonLocked] == 0 || m.denials[ReasonNotAllowlisted] == 0 || m.denials[ReasonInsufficientApprovals] == 0 {
		t.Fatalf("walk too narrow: approved %d, denials %v", m.approved, m.denials)
	}
	t.Logf("approved %d, denials %v, devices %d (revoked %d)", m.approved, m.denials, len(m.devices), len(m.revoked))
}
