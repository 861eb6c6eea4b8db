package ledger_test

import (
	"bytes"
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// walletCreate is an admin-approved WalletCreate of a 2-of-3 ETH wallet
// (threshold 1) on n1..n3, approved by ops.
func walletCreate(t testing.TB, changeID, wallet string, committee []pki.NodeID, threshold int, exp time.Time, ops ...operator) WalletCreate {
	c := WalletCreate{Change: WalletSpec{ID: changeID, Wallet: wallet, Chain: "eth", Network: "devnet", Committee: committee, Threshold: threshold}}
	for _, o := range ops {
		c.Approvals = append(c.Approvals, o.sign(t, changeID, c.Change.PayloadHash(), quorum.Approve, exp))
	}
	return c
}

// testPubKey is a well-formed compressed key (the ledger checks the
// encoding; members check the point).
func testPubKey(b byte) []byte {
	k := bytes.Repeat([]byte{b}, 33)
	k[0] = 2
	return k
}

// keygenSession is the keygen session of the harness's walletKeyed.
var keygenSession = strings.Repeat("5e", 32)

// walletKeyed is WalletKeyed of wallet with pubkey from keygenSession,
// attested by nodes with keys (ledgertest.NodeKey unless given), over the
// head h's state says.
func (h *fsmHarness) walletKeyed(wallet string, pubkey []byte, keys map[pki.NodeID]crypto.Signer, nodes ...pki.NodeID) WalletKeyed {
	h.t.Helper()
	return h.walletKeyedIn(keygenSession, wallet, pubkey, keys, nodes...)
}

// walletKeyedIn is walletKeyed from keygen session.
func (h *fsmHarness) walletKeyedIn(session, wallet string, pubkey []byte, keys map[pki.NodeID]crypto.Signer, nodes ...pki.NodeID) WalletKeyed {
	h.t.Helper()
	var head WalletKeyHead
	if err := h.f.Read(func(st *State) error {
		w := st.Wallets[wallet]
		if w == nil {
			w = &Wallet{ID: wallet}
		}
		head = WalletKeyHeadOf(st, w, session, pubkey)
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	cmd := WalletKeyed{Wallet: wallet, PubKey: pubkey, Session: session}
	for _, n := range nodes {
		key := keys[n]
		if key == nil {
			key = ledgertest.NodeKey(n)
		}
		sig, err := SignWalletKey(head, n, key)
		if err != nil {
			h.t.Fatal(err)
		}
		cmd.Attestations = append(cmd.Attestations, sig)
	}
	return cmd
}

func (h *fsmHarness) wallet(id string) *Wallet {
	h.t.Helper()
	var w Wallet
	if err := h.f.Read(func(st *State) error {
		if st.Wallets[id] == nil {
			return errors.New("no wallet " + id)
		}
		w = *st.Wallets[id]
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return &w
}

// TestFSMWalletCreateAndKeyed: a wallet exists only by an admin-quorum
// WalletCreate (single-use change ID, committee inside the node set,
// 1 <= t < n), in keygen: no withdrawal can be created for it; it becomes
// active with a key only when every committee member attested exactly
// that key with its pinned node key. Every refusal leaves the state
// byte-identical.
func TestFSMWalletCreateAndKeyed(t *testing.T) {
	h := newHarness(t)
	exp := h.now.Add(time.Hour)
	all := []pki.NodeID{"n3", "n1", "n2"}
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

	refuse("one admin", ErrQuorum, walletCreate(t, "wc-1", "w1", all, 1, exp, alice))
	refuse("an approver who is no admin", ErrQuorum, walletCreate(t, "wc-1", "w1", all, 1, exp, alice, dave))
	refuse("approval beyond the ceiling", ErrApproval, walletCreate(t, "wc-1", "w1", all, 1, h.now.Add(49*time.Hour), alice, carol))
	refuse("committee outside the node set", ErrInvalid, walletCreate(t, "wc-1", "w1", []pki.NodeID{"n1", "n2", "n9"}, 1, exp, alice, carol))
	refuse("committee naming a node twice", ErrInvalid, walletCreate(t, "wc-1", "w1", []pki.NodeID{"n1", "n2", "n2"}, 1, exp, alice, carol))
	refuse("threshold 0", ErrInvalid, walletCreate(t, "wc-1", "w1", all, 0, exp, alice, carol))
	refuse("threshold = n", ErrInvalid, walletCreate(t, "wc-1", "w1", all, 3, exp, alice, carol))
	refuse("unknown chain", ErrInvalid, func() WalletCreate {
		c := walletCreate(t, "wc-1", "w1", all, 1, exp)
		c.Change.Chain = "doge"
		c.Approvals = []quorum.Approval{alice.sign(t, "wc-1", c.Change.PayloadHash(), quorum.Approve, exp), carol.sign(t, "wc-1", c.Change.PayloadHash(), quorum.Approve, exp)}
		return c
	}())
	refuse("existing wallet", ErrConflict, walletCreate(t, "wc-1", "hot", all, 1, exp, alice, carol))
	// Approvals of one spec do not carry another: the leader widening the
	// threshold the admins signed.
	edited := walletCreate(t, "wc-1", "w1", all, 1, exp, alice, carol)
	edited.Change.Threshold = 2
	refuse("spec edited after approval", ErrQuorum, edited)

	create := walletCreate(t, "wc-1", "w1", all, 1, exp, alice, carol)
	h.must("api", create)
	w := h.wallet("w1")
	if w.Status != WalletKeygen || w.Active() || len(w.PubKey) != 0 || w.Threshold != 1 || len(w.Committee) != 3 || w.Committee[0] != "n1" || w.Committee[2] != "n3" {
		t.Fatalf("created wallet: %+v", w)
	}
	refuse("replayed create", ErrReplayed, create)
	refuse("same wallet under a new change", ErrConflict, walletCreate(t, "wc-2", "w1", all, 1, exp, alice, carol))

	// No withdrawal from a wallet whose key the committee has not attested.
	c := createCmd("from-keygen", 40)
	c.Wallet = "w1"
	c = initiated(c, backend, h.now.Add(time.Hour))
	refuse("create on a wallet in keygen", ErrWrongStatus, c)

	pub := testPubKey(7)
	other := testPubKey(8)
	refuse("an attestation missing", ErrApproval, h.walletKeyed("w1", pub, nil, "n1", "n2"))
	refuse("an attestation repeated", ErrApproval, h.walletKeyed("w1", pub, nil, "n1", "n2", "n2"))
	refuse("an attestation by a node outside the committee", ErrApproval, h.walletKeyed("w1", pub, nil, "n1", "n2", "n4"))
	refuse("an attestation with a key the node set does not pin", ErrApproval, h.walletKeyed("w1", pub, map[pki.NodeID]crypto.Signer{"n3": otherKey(t)}, "n1", "n2", "n3"))
	mixed := h.walletKeyed("w1", pub, nil, "n1", "n2", "n3")
	mixed.Attestations[2] = h.walletKeyed("w1", other, nil, "n3").Attestations[0]
	refuse("one member attested another key", ErrApproval, mixed)
	sessions := h.walletKeyed("w1", pub, nil, "n1", "n2", "n3")
	sessions.Attestations[2] = h.walletKeyedIn(strings.Repeat("77", 32), "w1", pub, nil, "n3").Attestations[0]
	refuse("one member attested another session's keygen", ErrApproval, sessions)
	resession := h.walletKeyed("w1", pub, nil, "n1", "n2", "n3")
	resession.Session = strings.Repeat("77", 32)
	refuse("the session replaced after attestation", ErrApproval, resession)
	nosession := h.walletKeyed("w1", pub, nil, "n1", "n2", "n3")
	nosession.Session = ""
	refuse("no session", ErrInvalid, nosession)
	swapped := h.walletKeyed("w1", pub, nil, "n1", "n2", "n3")
	swapped.PubKey = other
	refuse("the key replaced after attestation", ErrApproval, swapped)
	forged := h.walletKeyed("w1", pub, nil, "n1", "n2", "n3")
	forged.Attestations[1].Signature[5] ^= 1
	refuse("a forged signature", ErrApproval, forged)
	bad := h.walletKeyed("w1", []byte{4, 1, 2}, nil, "n1", "n2", "n3")
	refuse("a malformed key", ErrInvalid, bad)
	refuse("a legacy wallet", ErrWrongStatus, h.walletKeyed("hot", pub, nil, "n1", "n2", "n3"))
	refuse("an unknown wallet", ErrNotFound, h.walletKeyed("nope", pub, nil, "n1", "n2", "n3"))

	keyed := h.walletKeyed("w1", pub, nil, "n2", "n3", "n1")
	h.must("leader", keyed)
	w = h.wallet("w1")
	if w.Status != WalletActive || !w.Active() || !bytes.Equal(w.PubKey, pub) || w.KeySession != keygenSession {
		t.Fatalf("keyed wallet: %+v", w)
	}
	refuse("keyed again (not in keygen)", ErrWrongStatus, keyed)
	refuse("keyed again with another key", ErrWrongStatus, h.walletKeyed("w1", other, nil, "n1", "n2", "n3"))
	refuse("wallet.set over a created wallet", ErrConflict, WalletSet{Wallet{ID: "w1", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1", "n2", "n3"}, Threshold: 1}})
}
