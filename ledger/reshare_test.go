package ledger_test

import (
	"bytes"
	"crypto"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// walletReshare is a WalletReshare of wallet to committee/threshold,
// approved by ops.
func walletReshare(t testing.TB, changeID, wallet string, committee []pki.NodeID, threshold int, exp time.Time, ops ...operator) WalletReshare {
	c := WalletReshare{Change: ReshareSpec{ID: changeID, Wallet: wallet, NewCommittee: committee, NewThreshold: threshold}}
	for _, o := range ops {
		c.Approvals = append(c.Approvals, o.sign(t, changeID, c.Change.PayloadHash(), quorum.Approve, exp))
	}
	return c
}

// Reshare sessions (tss session IDs as hex) of the tests.
var (
	reshareS1 = strings.Repeat("a1", 32)
	reshareS2 = strings.Repeat("b2", 32)
)

// walletReshared is WalletReshared of wallet with pubkey under session
// reshareS1, attested by nodes with keys (ledgertest.NodeKey unless given)
// over the head h's state says (or, for a wallet not resharing, a head
// naming no change).
func (h *fsmHarness) walletReshared(wallet string, pubkey []byte, keys map[pki.NodeID]crypto.Signer, nodes ...pki.NodeID) WalletReshared {
	h.t.Helper()
	return h.walletResharedIn(reshareS1, wallet, pubkey, keys, nodes...)
}

// walletResharedIn is walletReshared under session.
func (h *fsmHarness) walletResharedIn(session, wallet string, pubkey []byte, keys map[pki.NodeID]crypto.Signer, nodes ...pki.NodeID) WalletReshared {
	h.t.Helper()
	var head WalletReshareHead
	if err := h.f.Read(func(st *State) error {
		var ok bool
		if head, ok = WalletReshareHeadOf(st, st.Wallets[wallet], pubkey, session); !ok {
			head = WalletReshareHead{ClusterID: st.Registry.ClusterID, GenesisHash: st.GenesisHash, Wallet: wallet, PubKey: string(pubkey), Session: session}
		}
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	cmd := WalletReshared{Wallet: wallet, PubKey: pubkey, Session: session}
	for _, n := range nodes {
		key := keys[n]
		if key == nil {
			key = ledgertest.NodeKey(n)
		}
		sig, err := SignWalletReshare(head, n, key)
		if err != nil {
			h.t.Fatal(err)
		}
		cmd.Attestations = append(cmd.Attestations, sig)
	}
	return cmd
}

// TestFSMWalletReshare: a wallet's key moves to another committee only by
// an admin-quorum WalletReshare of an active wallet (single-use change ID,
// approvals within the ceiling, new committee inside the node set,
// 1 <= t' < n'), then WalletReshared attested by every new member over the
// same key; the wallet stays active (its old committee signing) while
// resharing. Every refusal leaves the state byte-identical.
func TestFSMWalletReshare(t *testing.T) {
	h := newHarness(t)
	exp := h.now.Add(time.Hour)
	all := []pki.NodeID{"n1", "n2", "n3"}
	refuse := func(name string, want error, cmd Command) {
		t.Helper()
		before := h.encoded()
		if _, err := h.apply("api", cmd); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", name, err, want)
		}
		if !bytes.Equal(before, h.encoded()) {
			t.Fatalf("%s: the refusal changed the state", name)
		}
	}
	newc := []pki.NodeID{"n3", "n2"}
	h.must("api", walletCreate(t, "wc-1", "w1", all, 1, exp, alice, carol))
	refuse("a wallet in keygen", ErrWrongStatus, walletReshare(t, "rs-1", "w1", newc, 1, exp, alice, carol))
	pub := testPubKey(7)
	h.must("leader", h.walletKeyed("w1", pub, nil, "n1", "n2", "n3"))

	refuse("one admin", ErrQuorum, walletReshare(t, "rs-1", "w1", newc, 1, exp, alice))
	refuse("an approver who is no admin", ErrQuorum, walletReshare(t, "rs-1", "w1", newc, 1, exp, alice, dave))
	refuse("approval beyond the ceiling", ErrApproval, walletReshare(t, "rs-1", "w1", newc, 1, h.now.Add(49*time.Hour), alice, carol))
	refuse("committee outside the node set", ErrInvalid, walletReshare(t, "rs-1", "w1", []pki.NodeID{"n2", "n9"}, 1, exp, alice, carol))
	refuse("committee naming a node twice", ErrInvalid, walletReshare(t, "rs-1", "w1", []pki.NodeID{"n2", "n2"}, 1, exp, alice, carol))
	refuse("threshold 0", ErrInvalid, walletReshare(t, "rs-1", "w1", newc, 0, exp, alice, carol))
	refuse("threshold = n", ErrInvalid, walletReshare(t, "rs-1", "w1", newc, 2, exp, alice, carol))
	refuse("a legacy wallet (no key)", ErrWrongStatus, walletReshare(t, "rs-1", "hot", newc, 1, exp, alice, carol))
	refuse("an unknown wallet", ErrNotFound, walletReshare(t, "rs-1", "nope", newc, 1, exp, alice, carol))
	edited := walletReshare(t, "rs-1", "w1", newc, 1, exp, alice, carol)
	edited.Change.NewCommittee = []pki.NodeID{"n1", "n2"}
	refuse("committee edited after approval", ErrQuorum, edited)
	refuse("reshared before any reshare", ErrWrongStatus, h.walletReshared("w1", pub, nil, "n2", "n3"))

	reshare := walletReshare(t, "rs-1", "w1", newc, 1, exp, alice, carol)
	h.must("api", reshare)
	w := h.wallet("w1")
	if w.Status != WalletResharing || !w.Active() || !slices.Equal(w.Committee, all) || w.Threshold != 1 || !bytes.Equal(w.PubKey, pub) ||
		w.Reshare == nil || w.Reshare.ID != "rs-1" || !slices.Equal(w.Reshare.NewCommittee, []pki.NodeID{"n2", "n3"}) || w.Reshare.NewThreshold != 1 {
		t.Fatalf("resharing wallet: %+v %+v", w, w.Reshare)
	}
	refuse("replayed reshare", ErrReplayed, reshare)
	refuse("a second reshare while resharing", ErrWrongStatus, walletReshare(t, "rs-2", "w1", all, 1, exp, alice, carol))

	other := testPubKey(8)
	refuse("an attestation missing", ErrApproval, h.walletReshared("w1", pub, nil, "n2"))
	refuse("an attestation repeated", ErrApproval, h.walletReshared("w1", pub, nil, "n2", "n2"))
	refuse("an attestation by an old member outside the new committee", ErrApproval, h.walletReshared("w1", pub, nil, "n1", "n2"))
	refuse("an attestation with a key the node set does not pin", ErrApproval, h.walletReshared("w1", pub, map[pki.NodeID]crypto.Signer{"n3": otherKey(t)}, "n2", "n3"))
	forged := h.walletReshared("w1", pub, nil, "n2", "n3")
	forged.Attestations[0].Signature[5] ^= 1
	refuse("a forged signature", ErrApproval, forged)
	refuse("another key", ErrConflict, h.walletReshared("w1", other, nil, "n2", "n3"))
	swapped := h.walletReshared("w1", pub, nil, "n2", "n3")
	swapped.PubKey = other
	refuse("the key replaced after attestation", ErrConflict, swapped)
	// A wallet-key attestation (keygen's domain) is not a reshare's.
	keyAtt := h.walletKeyed("w1", pub, nil, "n2", "n3")
	refuse("keygen attestations", ErrApproval, WalletReshared{Wallet: "w1", PubKey: pub, Session: reshareS1, Attestations: keyAtt.Attestations})
	// Attestations name their session: those over S1 do not commit S2,
	// and one member's S1 attestation does not join another's S2.
	other1 := h.walletResharedIn(reshareS1, "w1", pub, nil, "n2", "n3")
	other1.Session = reshareS2
	refuse("attestations over S1 submitted as S2", ErrApproval, other1)
	mixed := h.walletResharedIn(reshareS2, "w1", pub, nil, "n2", "n3")
	mixed.Attestations[0] = h.walletResharedIn(reshareS1, "w1", pub, nil, "n2").Attestations[0]
	refuse("attestations of two sessions", ErrApproval, mixed)
	noSession := h.walletReshared("w1", pub, nil, "n2", "n3")
	noSession.Session = ""
	refuse("no session", ErrInvalid, noSession)
	upper := h.walletResharedIn(strings.ToUpper(reshareS1), "w1", pub, nil, "n2", "n3")
	refuse("a session spelled in uppercase", ErrInvalid, upper)
	refuse("an unknown wallet", ErrNotFound, h.walletReshared("nope", pub, nil, "n2", "n3"))

	done := h.walletReshared("w1", pub, nil, "n3", "n2")
	h.must("leader", done)
	w = h.wallet("w1")
	if w.Status != WalletActive || w.Reshare != nil || !slices.Equal(w.Committee, []pki.NodeID{"n2", "n3"}) || w.Threshold != 1 || !bytes.Equal(w.PubKey, pub) ||
		w.KeySession != reshareS1 {
		t.Fatalf("reshared wallet: %+v", w)
	}
	refuse("reshared again", ErrWrongStatus, done)

	// The attestations of rs-1 do not complete a later reshare to the
	// same committee: they name their change ID.
	h.must("api", walletReshare(t, "rs-2", "w1", all, 1, exp, alice, carol))
	h.must("leader", h.walletResharedIn(reshareS2, "w1", pub, nil, "n1", "n2", "n3"))
	if w = h.wallet("w1"); w.KeySession != reshareS2 {
		t.Fatalf("key session %q after rs-2, want %q", w.KeySession, reshareS2)
	}
	h.must("api", walletReshare(t, "rs-3", "w1", newc, 1, exp, alice, carol))
	refuse("attestations of an earlier reshare", ErrApproval, done)
}
