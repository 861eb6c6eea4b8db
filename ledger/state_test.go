package ledger_test

import (
	"slices"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
)

// TestStateHeldNoncesAndClone: HeldNonces lists exactly the wallet's held
// nonces (sorted; a rejection releases, another wallet's keys never match);
// Clone shares no memory with the FSM's state.
func TestStateHeldNoncesAndClone(t *testing.T) {
	h := newHarness(t)
	h.create("r9", 9)
	h.create("r2", 2)
	r := h.create("r5", 5)
	h.must("api", bob.reject(t, r, h.now.Add(time.Hour)))
	var held []uint64
	var cp *State
	_ = h.f.Read(func(st *State) error {
		held = st.HeldNonces("hot")
		if got := st.HeldNonces("ho"); len(got) != 0 {
			t.Errorf("prefix wallet \"ho\" holds %v", got)
		}
		var err error
		cp, err = st.Clone()
		return err
	})
	if !slices.Equal(held, []uint64{2, 9}) {
		t.Fatalf("HeldNonces(hot) = %v, want [2 9] (5 released by the rejection)", held)
	}
	before := h.hash()
	cp.Requests["r2"].Status = StatusSigned
	cp.Requests["r2"].Payload[0] ^= 1
	delete(cp.Nonces, NonceKey("hot", 2))
	if h.hash() != before || h.req("r2").Status != StatusAwaitingApprovals {
		t.Fatal("editing a clone changed the FSM's state")
	}
	if (*Request)(nil).Clone() != nil {
		t.Fatal("nil request cloned to non-nil")
	}
}
