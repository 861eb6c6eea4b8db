package member_test

import (
	"testing"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
)

// TestInitiatorIsTheSigner (SECURITY 31): the request's initiator is whoever
// signed its creation. A rewritten ledger that drops the initiation, names
// another initiator than the signer (so the real initiator's approval would
// count), or changes the withdrawal the initiator signed is refused by the
// member, with nothing reserved, unsealed or started.
func TestInitiatorIsTheSigner(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	r := h.request("wd-init", h.dests[0], ether(1, 0), bob, carol)
	if r.Initiator != backend.ID {
		t.Fatalf("initiator %q, want the signer %q", r.Initiator, backend.ID)
	}
	other := h.initiate("wd-other", h.dests[0], ether(1, 0))
	c, err := h.orch.Claim(h.ctx, r.ID, []pki.NodeID{"n1", "n2"})
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*ledger.Request){
		"initiation dropped":           func(x *ledger.Request) { x.Initiation = nil },
		"initiator relabelled":         func(x *ledger.Request) { x.Initiator = alice.ID },
		"another request's initiation": func(x *ledger.Request) { x.Initiation = &other },
	} {
		t.Run(name, func(t *testing.T) {
			m := h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) { edit(st.Requests[r.ID]) }})
			h.refused(n1, m, r.ID, *r.Nonce, c, member.ErrInitiation)
		})
	}
	if _, err := h.orch.Collect(h.ctx, r.ID, c); err != nil {
		t.Fatalf("the genuine claim after the refusals: %v", err)
	}
}
