package withdraw_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/withdraw"
)

// reshareCmd is the admins' (ops') WalletReshare of wallet.
func reshareCmd(t *testing.T, changeID, wallet string, committee []pki.NodeID, threshold int, ops ...ledgertest.Operator) ledger.WalletReshare {
	spec := ledger.ReshareSpec{ID: changeID, Wallet: wallet, NewCommittee: committee, NewThreshold: threshold}
	exp := time.Now().Add(time.Hour)
	c := ledger.WalletReshare{Change: spec}
	for _, o := range ops {
		c.Approvals = append(c.Approvals, o.Sign(t, walletCluster, changeID, spec.PayloadHash(), quorum.Approve, exp))
	}
	return c
}

// leaderLedger is the cluster's ledger as the leader of the moment serves
// it: leadership may move under load during a long reshare.
type leaderLedger struct{ c *ledgertest.Cluster }

func (l leaderLedger) ReadLinearizable(ctx context.Context, fn func(*ledger.State) error) error {
	var err error
	l.c.OnLeaderErr(func(s *ledger.Store) error { err = s.ReadLinearizable(ctx, fn); return err })
	return err
}

func (l leaderLedger) Submit(ctx context.Context, actor string, cmd ledger.Command) (ledger.Outcome, error) {
	var out ledger.Outcome
	var err error
	l.c.OnLeaderErr(func(s *ledger.Store) error { out, err = s.Submit(ctx, actor, cmd); return err })
	return out, err
}

// doctoredLedger is a ledger whose reads edit rewrites: a compromised
// leader's FSM (fault injection).
type doctoredLedger struct {
	withdraw.WalletLedger
	edit func(*ledger.State)
}

func (d doctoredLedger) ReadLinearizable(ctx context.Context, fn func(*ledger.State) error) error {
	return d.WalletLedger.ReadLinearizable(ctx, func(st *ledger.State) error {
		cp, err := st.Clone()
		if err != nil {
			return err
		}
		d.edit(cp)
		return fn(cp)
	})
}

// signWith has the members ids sign WalletTestDigest of wallet with their
// sealed shares of it, straight on their tss engines.
func (h *walletHarness) signWith(wallet string, pub []byte, ids []pki.NodeID) ([]byte, error) {
	h.t.Helper()
	session := tss.NewSessionID()
	digest := member.WalletTestDigest(wallet, pub)
	sigs := make([][]byte, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		n := h.nodes[id]
		info, err := n.m.WalletInfo(h.ctx, wallet)
		if err != nil {
			return nil, err
		}
		var key []byte
		for _, p := range info.Members {
			if p.Node == id {
				key = p.Key
			}
		}
		share, err := n.shares.Get(wallet, id, key)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer share.Wipe()
			sig, err := n.engine.Sign(h.ctx, share, tss.SignParams{Session: session, Signers: ids, Digest: digest})
			if err == nil {
				sigs[i] = sig.Bytes65()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return sigs[0], nil
}

// TestReshareReplaceNode: a 2-of-3 wallet on {n1, n2, n3} made by keygen
// is reshared, as the admins approved, to 2-of-3 on {n2, n3, n4} (n1
// replaced by n4). Refused first: the reshare without the admin quorum, to
// a committee outside the node set, a replayed change, Reshare of a wallet
// not resharing, and members asked by a doctored leader to reshare a wallet
// their own ledgers hold active (no engine runs). Then the leader's
// Reshare: every ledger shows the new committee and the same key; n1 kept
// its old share until its ledger showed the commit and RetireOld deleted
// it; {n3, n4} sign under the same key; n1 can no longer take part.
func TestReshareReplaceNode(t *testing.T) {
	h := newWalletHarnessN(t, 4)
	old := []pki.NodeID{"n1", "n2", "n3"}
	newc := []pki.NodeID{"n2", "n3", "n4"}
	h.approve("create-w1", "w1", old, 1)
	ll := leaderLedger{h.cluster}
	c, err := withdraw.NewWalletCreator(withdraw.WalletConfig{Ledger: ll, Actor: "node:n1", Members: h.members})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.CreateWallet(h.ctx, "w1")
	if err != nil {
		t.Fatal(err)
	}

	// Refusals before the admins approve anything.
	submitErr := func(what string, want error, cmd ledger.Command) {
		t.Helper()
		if _, err := ll.Submit(h.ctx, "alice", cmd); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
	}
	submitErr("reshare with one admin", ledger.ErrQuorum, reshareCmd(t, "rs-1", "w1", newc, 1, wAlice))
	submitErr("reshare to a node outside the node set", ledger.ErrInvalid, reshareCmd(t, "rs-1", "w1", []pki.NodeID{"n2", "n3", "n9"}, 1, wAlice, wBob))
	if _, err := c.Reshare(h.ctx, "w1"); !errors.Is(err, withdraw.ErrWalletStatus) {
		t.Fatalf("Reshare of an active wallet: %v", err)
	}
	if p, err := c.PendingReshares(h.ctx); err != nil || len(p) != 0 {
		t.Fatalf("pending reshares: %v %v", p, err)
	}
	// A compromised leader whose ledger says w1 is resharing: every
	// member's own ledger holds it active, so nobody runs anything.
	ghost := doctoredLedger{WalletLedger: ll, edit: func(st *ledger.State) {
		w := st.Wallets["w1"]
		w.Status = ledger.WalletResharing
		w.Reshare = &ledger.ReshareSpec{ID: "ghost", Wallet: "w1", NewCommittee: newc, NewThreshold: 1}
	}}
	forged, err := withdraw.NewWalletCreator(withdraw.WalletConfig{Ledger: ghost, Actor: "node:n1", Members: h.members})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := forged.Reshare(h.ctx, "w1"); !errors.Is(err, withdraw.ErrReshare) || !errors.Is(err, member.ErrKeygen) {
		t.Fatalf("reshare of a wallet only the leader's ledger holds resharing: %v", err)
	}
	for _, n := range h.nodes {
		if got := n.engine.reshares.Load(); got != 0 {
			t.Fatalf("%s ran %d reshares on refusals", n.id, got)
		}
	}

	approved := reshareCmd(t, "rs-1", "w1", newc, 1, wAlice, wBob)
	h.cluster.Submit(h.ctx, "alice", approved)
	submitErr("replayed reshare", ledger.ErrReplayed, approved)
	if p, err := c.PendingReshares(h.ctx); err != nil || !slices.Equal(p, []string{"w1"}) {
		t.Fatalf("pending reshares: %v %v", p, err)
	}

	got, err := c.Reshare(h.ctx, "w1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pub) {
		t.Fatalf("reshare returned key %x, want %x", got, pub)
	}
	for i := range h.cluster.Nodes {
		ledgertest.Poll(t, "new committee on every node", func() error {
			w := h.ledgerWallet(i, "w1")
			if w == nil || w.Status != ledger.WalletActive || w.Reshare != nil || !slices.Equal(w.Committee, newc) || w.Threshold != 1 || !bytes.Equal(w.PubKey, pub) {
				return errors.New("not yet")
			}
			return nil
		})
	}
	// The old signers were the two staying members; n4 joined.
	for id, want := range map[pki.NodeID]int32{"n1": 0, "n2": 1, "n3": 1, "n4": 1} {
		if got := h.nodes[id].engine.reshares.Load(); got != want {
			t.Errorf("%s ran %d reshares, want %d", id, got, want)
		}
	}
	// The ledger recorded the session every new member attested.
	keySession, err := tss.ParseSessionID(h.ledgerWallet(0, "w1").KeySession)
	if err != nil {
		t.Fatalf("the reshared wallet's key session: %v", err)
	}
	// Until RetireOld sees the commit, n1's old share is still sealed.
	n1 := h.nodes["n1"]
	if refs, err := n1.shares.List(); err != nil || len(refs) != 1 {
		t.Fatalf("n1 before RetireOld stores %v (%v)", refs, err)
	}
	for id, want := range map[pki.NodeID]bool{"n1": true, "n2": true, "n3": true, "n4": false} {
		n := h.nodes[id]
		retired, err := n.m.RetireOld(h.ctx, "w1")
		if err != nil || retired != want {
			t.Fatalf("%s RetireOld: %v %v, want %v", id, retired, err, want)
		}
		refs, err := n.shares.List()
		wantShares := 1
		if id == "n1" {
			wantShares = 0
		}
		if err != nil || len(refs) != wantShares {
			t.Fatalf("%s stores %v (%v) after RetireOld", id, refs, err)
		}
		// What it keeps is the share of the session the ledger recorded.
		if wantShares == 1 && !bytes.Equal(refs[0].ShareID, tss.ReshareShareID("w1", keySession, id)) {
			t.Fatalf("%s keeps share %x, not the committed session's", id, refs[0].ShareID)
		}
		if again, err := n.m.RetireOld(h.ctx, "w1"); err != nil || again {
			t.Fatalf("%s RetireOld again: %v %v", id, again, err)
		}
	}

	// The new committee signs under the same key, with a subset that
	// never held a share together before.
	sig, err := h.signWith("w1", pub, []pki.NodeID{"n3", "n4"})
	if err != nil {
		t.Fatal(err)
	}
	if err := member.VerifyTestSignature("w1", pub, sig); err != nil {
		t.Fatalf("{n3, n4}'s signature: %v", err)
	}
	// n1 is out: no share, no description, no reshare, no test signature.
	if _, err := n1.m.WalletInfo(h.ctx, "w1"); !errors.Is(err, member.ErrShare) {
		t.Fatalf("n1 describes w1: %v", err)
	}
	if _, err := n1.m.Reshare(h.ctx, "w1", tss.NewSessionID(), old, nil); !errors.Is(err, member.ErrKeygen) {
		t.Fatalf("n1 reshares w1: %v", err)
	}
	submitErr("reshared again", ledger.ErrWrongStatus, ledger.WalletReshared{Wallet: "w1", PubKey: pub})
	if n1.engine.reshares.Load() != 0 {
		t.Fatal("n1 ran a reshare")
	}
}
