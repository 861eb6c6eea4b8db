package ledger_test

import (
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
)

// TestFSMFeeCapAndCharge: a create whose maximum fee is over its rule's cap
// is denied and allocates nothing; a claim records the request's charge
// (amount plus maximum fee, for a native-asset wallet) as its spend.
func TestFSMFeeCapAndCharge(t *testing.T) {
	h := newHarness(t)
	c := createCmd("fee-over", 1)
	c.ExpiresAt = h.now.Add(24 * time.Hour)
	c.MaxFee, _ = amount.ParseUnits("0.02", 18) // the "hot" rule caps 0.01 ETH
	r := h.must("backend", c)
	if r.Status != StatusRejected || r.Decision.Reason != policy.ReasonFeeOverCap {
		t.Fatalf("fee over cap: %s (%s)", r.Status, r.Decision.Reason)
	}
	h.create("fee-ok", 1) // nothing was allocated

	c = createCmd("fee-charged", 2)
	c.ExpiresAt = h.now.Add(24 * time.Hour)
	c.MaxFee, _ = amount.ParseUnits("0.01", 18)
	r = h.must("backend", c)
	h.must("api", bob.approve(t, r, h.now.Add(time.Hour)))
	h.must("api", dave.approve(t, r, h.now.Add(time.Hour)))
	h.must("n1", h.claimCmd(r.ID))
	want, _ := c.Amount.Add(c.MaxFee)
	found := false
	_ = h.f.Read(func(st *State) error {
		for _, sp := range st.Policy.History() {
			if sp.RequestID == r.ID {
				found = true
				if sp.Amount != want {
					t.Errorf("spend %s, want amount + fee %s", sp.Amount, want)
				}
			}
		}
		return nil
	})
	if !found {
		t.Fatal("the claim recorded no spend")
	}
}
