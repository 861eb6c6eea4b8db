package member_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/tss"
)

// TestRetireOldOnlyTheCommittedSession: RetireOld acts only on the session
// the ledger recorded for the wallet's last reshare (Wallet.KeySession). A
// wallet never reshared: nothing happens. A committee member that does not
// hold the share of the recorded session (a compromised leader committed a
// session this member's share is not of): it adopts nothing, deletes
// nothing and refuses (ErrShare), again and again. A member the reshare
// left out of the committee: it retires the share it held.
func TestRetireOldOnlyTheCommittedSession(t *testing.T) {
	h := newHarness(t)
	n1 := h.members["n1"]
	store := n1.shares.ShareStore.(*shares.Store)
	stored := func() int {
		t.Helper()
		refs, err := store.List()
		if err != nil {
			t.Fatal(err)
		}
		return len(refs)
	}
	doctored := func(session string, committee []pki.NodeID) *member.Member {
		return h.newMember(n1, &doctoredLedger{inner: n1.ledger, edit: func(st *ledger.State) {
			w := st.Wallets[walletID]
			w.Status, w.PubKey, w.KeySession = ledger.WalletActive, h.info.PubKey, session
			w.Committee, w.Threshold = committee, 1
		}})
	}

	if retired, err := doctored("", committee).RetireOld(h.ctx, walletID); err != nil || retired {
		t.Fatalf("RetireOld of a wallet never reshared: %v %v", retired, err)
	}
	if stored() != 1 {
		t.Fatal("the share is gone")
	}

	other := tss.NewSessionID().String()
	m := doctored(other, committee)
	for range 2 {
		if retired, err := m.RetireOld(h.ctx, walletID); !errors.Is(err, member.ErrShare) || retired {
			t.Fatalf("RetireOld without the committed session's share: %v %v", retired, err)
		}
		if stored() != 1 {
			t.Fatal("a refused RetireOld deleted the share")
		}
	}
	// It still signs with its share: the wallet stays registered.
	if _, err := m.WalletInfo(h.ctx, walletID); err != nil {
		t.Fatalf("WalletInfo after a refused RetireOld: %v", err)
	}

	left := doctored(other, slices.DeleteFunc(slices.Clone(committee), func(id pki.NodeID) bool { return id == "n1" }))
	if retired, err := left.RetireOld(h.ctx, walletID); err != nil || !retired {
		t.Fatalf("RetireOld of a member that left: %v %v", retired, err)
	}
	if stored() != 0 {
		t.Fatal("the member that left still holds its share")
	}
	if retired, err := left.RetireOld(h.ctx, walletID); err != nil || retired {
		t.Fatalf("RetireOld again: %v %v", retired, err)
	}
}
