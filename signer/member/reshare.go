package member

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/tss"
)

// ReshareResult is one party's outcome of a wallet's reshare: the wallet's
// (unchanged) public key and, from a new committee member, its attestation
// with its node key over ledger.WalletReshareHead as its own ledger
// describes the reshare, which the leader puts in ledger.WalletReshared
// with every other new member's. A member that only leaves the committee
// attests nothing (Attestation.Node is empty).
type ReshareResult struct {
	Wallet  string
	Session tss.SessionID
	// PubKey is the wallet's 33-byte compressed secp256k1 key.
	PubKey      []byte
	Attestation ledger.CheckpointSig
}

// reshareWallet is a wallet in resharing as this member's own ledger holds
// it: the old committee (w) and the admins' new one.
type reshareWallet struct {
	w    *ledger.Wallet
	spec ledger.ReshareSpec
	head ledger.WalletReshareHead
}

// newWallet is the wallet as it will be once the reshare commits.
func (r reshareWallet) newWallet() *ledger.Wallet {
	c := *r.w
	c.Committee = slices.Clone(r.spec.NewCommittee)
	c.Threshold = r.spec.NewThreshold
	return &c
}

// Reshare runs this member's side of the two-phase reshare of walletID
// under session, after checking on its OWN linearizable ledger read that
// the admins approved it: the wallet is in ledger.WalletResharing and this
// node is one of oldSigners (at least t+1 distinct members of the wallet's
// current committee) or in the approved new committee. A leader cannot make
// it reshare a wallet its ledger does not hold in resharing, to another
// committee or threshold, or to another key (the engine checks the new
// key is the ledger's).
//
// An old signer takes its own share and its own description of the old
// committee (oldMembers is ignored); a new member that holds no old share
// takes the old committee's tss party keys from oldMembers, whose nodes
// must be the ledger's committee (a wrong key makes the reshare fail, it
// cannot change the key). A new member takes pre-params from
// Config.PreParams, stores its new share sealed, and returns the key with
// its attestation; the new share is used (TestSign) while the wallet is
// resharing and signs withdrawals once RetireOld adopted it.
//
// The old share is NOT deleted when the engine calls OnRetire (after the
// verified test signature, before the ledger recorded anything): if
// WalletReshared never committed, deleting it would lose the wallet. It
// is deleted by RetireOld once this member's ledger shows the new committee.
//
// Asked again for the same session after success, it answers from the
// stored new share (a new member) or its record of the session (an old
// member that leaves), without running the reshare again.
func (m *Member) Reshare(ctx context.Context, walletID string, session tss.SessionID, oldSigners []pki.NodeID, oldMembers []tss.Party) (*ReshareResult, error) {
	if walletID == "" || session == (tss.SessionID{}) {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: wallet and session are required", ErrBadClaim))
	}
	if m.cfg.NodeKey == nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: this member has no node key", ErrKeygen))
	}
	m.kgMu.Lock()
	defer m.kgMu.Unlock()

	rw, err := m.readReshareWallet(ctx, walletID)
	if err != nil {
		return nil, m.refuseKeygen(walletID, err)
	}
	w, spec := rw.w, rw.spec
	signers := slices.Clone(oldSigners)
	slices.Sort(signers)
	if len(signers) < w.Threshold+1 || len(slices.Compact(slices.Clone(signers))) != len(signers) {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: old signers %v are not t+1 distinct members", ErrWallet, oldSigners))
	}
	for _, s := range signers {
		if !slices.Contains(w.Committee, s) {
			return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: old signer %q is not in the committee", ErrWallet, s))
		}
	}
	inOld, inNew := slices.Contains(signers, m.self), slices.Contains(spec.NewCommittee, m.self)
	if !inOld && !inNew {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %s is neither an old signer nor in the new committee of wallet %q", ErrKeygen, m.self, walletID))
	}

	// The same session again.
	if inNew {
		stored, err := m.cfg.Shares.Get(walletID, m.self, tss.ReshareShareID(walletID, session, m.self))
		switch {
		case err == nil:
			info := stored.Info()
			stored.Wipe()
			return m.reshareResult(walletID, session, info, rw)
		case !errors.Is(err, shares.ErrNotFound):
			return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrShare, err))
		}
	} else {
		m.mu.Lock()
		left, ok := m.leftReshare[walletID]
		m.mu.Unlock()
		if ok && left == session {
			return &ReshareResult{Wallet: walletID, Session: session, PubKey: slices.Clone(w.PubKey)}, nil
		}
	}

	old, oldShare, err := m.oldCommittee(w, inOld, oldMembers)
	if err != nil {
		return nil, m.refuseKeygen(walletID, err)
	}
	if oldShare != nil {
		// On success the engine zeroes it; on failure this copy goes too.
		defer oldShare.Wipe()
	}
	var newShare *tss.Share
	p := tss.ReshareParams{Session: session, Old: old, OldSigners: signers, New: slices.Clone(spec.NewCommittee), NewThreshold: spec.NewThreshold,
		// Keep the sealed old share: RetireOld deletes it once the
		// ledger recorded the new committee.
		OnRetire: func(*tss.Share) error { return nil }}
	if inNew {
		if m.cfg.PreParams == nil {
			return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: this member has no pre-params pool", ErrKeygen))
		}
		pre, err := m.cfg.PreParams.Wait(ctx)
		if err != nil {
			return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: pre-params: %w", ErrKeygen, err))
		}
		newShare, err = m.cfg.Engine.Reshare(ctx, p, oldShare, pre)
		if err != nil {
			return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrSession, err))
		}
	} else if _, err := m.cfg.Engine.Reshare(ctx, p, oldShare, nil); err != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrSession, err))
	}
	m.log.Info("member: reshare done", "member", m.self, "wallet", walletID, "session", session.String(), "old", inOld, "new", inNew)
	if !inNew {
		m.mu.Lock()
		m.leftReshare[walletID] = session
		m.mu.Unlock()
		return &ReshareResult{Wallet: walletID, Session: session, PubKey: slices.Clone(w.PubKey)}, nil
	}
	// Plaintext only here: seal, then wipe (invariant 4).
	perr := m.cfg.Shares.Put(newShare)
	info := newShare.Info()
	newShare.Wipe()
	if perr != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: store: %w", ErrShare, perr))
	}
	return m.reshareResult(walletID, session, info, rw)
}

// readReshareWallet reads walletID from this member's own ledger and checks
// it is in resharing, with a key and the admins' spec.
func (m *Member) readReshareWallet(ctx context.Context, walletID string) (reshareWallet, error) {
	var rw reshareWallet
	err := m.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		lw := st.Wallets[walletID]
		if lw == nil {
			return fmt.Errorf("%w: wallet %q is not in this member's ledger", ErrKeygen, walletID)
		}
		// The session is filled in by reshareResult.
		head, ok := ledger.WalletReshareHeadOf(st, lw, lw.PubKey, "")
		if !ok || len(lw.PubKey) == 0 {
			return fmt.Errorf("%w: wallet %q is %s, not resharing", ErrKeygen, walletID, walletStatus(lw))
		}
		c := lw.Clone()
		c.Reshare = nil
		rw = reshareWallet{w: c, spec: ledger.ReshareSpec{ID: lw.Reshare.ID, Wallet: lw.ID,
			NewCommittee: slices.Clone(lw.Reshare.NewCommittee), NewThreshold: lw.Reshare.NewThreshold}, head: head}
		return nil
	})
	if err != nil && !errors.Is(err, ErrKeygen) {
		err = fmt.Errorf("%w: %w", ErrLedgerRead, err)
	}
	return rw, err
}

// oldCommittee is the old committee's description for the engine and, on
// an old signer, its unsealed old share.
func (m *Member) oldCommittee(w *ledger.Wallet, inOld bool, oldMembers []tss.Party) (tss.WalletInfo, *tss.Share, error) {
	if !inOld {
		info := tss.WalletInfo{Wallet: w.ID, Threshold: w.Threshold, Members: slices.Clone(oldMembers), PubKey: slices.Clone(w.PubKey)}
		for _, p := range oldMembers {
			if len(p.Key) == 0 {
				return tss.WalletInfo{}, nil, fmt.Errorf("%w: old member %q without a party key", ErrWallet, p.Node)
			}
		}
		if err := matchesWallet(info, w); err != nil {
			return tss.WalletInfo{}, nil, err
		}
		return info, nil, nil
	}
	m.mu.Lock()
	info, ok := m.wallets[w.ID]
	m.mu.Unlock()
	if !ok || string(info.PubKey) != string(w.PubKey) {
		return tss.WalletInfo{}, nil, fmt.Errorf("%w: no registered share of wallet %q's key", ErrShare, w.ID)
	}
	if err := matchesWallet(info, w); err != nil {
		return tss.WalletInfo{}, nil, err
	}
	key, ok := memberKey(info, m.self)
	if !ok {
		return tss.WalletInfo{}, nil, fmt.Errorf("%w: no share ID for %s", ErrShare, m.self)
	}
	share, err := m.cfg.Shares.Get(w.ID, m.self, key)
	if err != nil {
		return tss.WalletInfo{}, nil, fmt.Errorf("%w: %w", ErrShare, err)
	}
	if string(share.PubKey) != string(w.PubKey) {
		share.Wipe()
		return tss.WalletInfo{}, nil, fmt.Errorf("%w: the unsealed share is for another key", ErrShare)
	}
	return info, share, nil
}

// reshareResult records info, a new share of the wallet's key for the
// admins' new committee, as pending and attests it.
func (m *Member) reshareResult(walletID string, session tss.SessionID, info tss.WalletInfo, rw reshareWallet) (*ReshareResult, error) {
	if string(info.PubKey) != string(rw.w.PubKey) {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: the reshare's key %x is not the wallet's", ErrKeygen, info.PubKey))
	}
	if err := matchesWallet(info, rw.newWallet()); err != nil {
		return nil, m.refuseKeygen(walletID, err)
	}
	// The attestation names the session: the ledger commits only
	// attestations of one session (ledger.WalletReshared.Session).
	head := rw.head
	head.Session = session.String()
	sig, err := ledger.SignWalletReshare(head, m.self, m.cfg.NodeKey)
	if err != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrKeygen, err))
	}
	m.mu.Lock()
	m.reshared[walletID] = info
	m.mu.Unlock()
	return &ReshareResult{Wallet: walletID, Session: session, PubKey: slices.Clone(info.PubKey), Attestation: sig}, nil
}

// RetireOld finishes a committed reshare on this member, on its OWN
// linearizable ledger read of walletID, which must be active (nothing is
// done while it is resharing or in keygen) and name the session of its
// last reshare (Wallet.KeySession; nothing is done for a wallet never
// reshared).
//
// A member of the ledger's committee adopts exactly the share that session
// gave it (tss.ReshareShareID(wallet, session, self), from the share
// store; its key, committee and threshold must be the ledger's), which
// signs from now on, and then deletes every other share of the wallet it
// holds: the old committee's share the reshare kept and the shares of
// other sessions (a failed attempt, or sessions a compromised leader ran
// beside the committed one). A member that does not hold the recorded
// share adopts nothing, deletes nothing and returns an error (ErrShare).
// A member no longer in the committee deletes the share it held.
//
// It reports whether a share was deleted. Run it whenever the ledger shows
// a wallet's committee change (the daemon's observe loop); it is
// idempotent.
func (m *Member) RetireOld(ctx context.Context, walletID string) (bool, error) {
	var w *ledger.Wallet
	err := m.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		lw := st.Wallets[walletID]
		if lw == nil || lw.Status != ledger.WalletActive {
			return fmt.Errorf("%w: wallet %q is not active in this member's ledger", ErrKeygen, walletID)
		}
		w = lw.Clone()
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrKeygen) {
			err = fmt.Errorf("%w: %w", ErrLedgerRead, err)
		}
		return false, m.refuseKeygen(walletID, err)
	}
	if w.KeySession == "" {
		return false, nil
	}
	session, err := tss.ParseSessionID(w.KeySession)
	if err != nil {
		return false, m.refuseKeygen(walletID, fmt.Errorf("%w: wallet %q: key session: %w", ErrWallet, walletID, err))
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	// The shares to delete: what this member registered or holds pending
	// for the wallet, and, when the store lists, every stored share of it.
	var others [][]byte
	addOther := func(key []byte) {
		if !slices.ContainsFunc(others, func(k []byte) bool { return bytes.Equal(k, key) }) {
			others = append(others, key)
		}
	}
	for _, info := range []*tss.WalletInfo{m.walletPtr(walletID), m.reshPtr(walletID)} {
		if info != nil {
			if key, ok := memberKey(*info, m.self); ok {
				addOther(key)
			}
		}
	}
	if l, ok := m.cfg.Shares.(ShareLister); ok {
		refs, err := l.List()
		if err != nil {
			return false, m.refuseKeygen(walletID, fmt.Errorf("%w: list shares: %w", ErrShare, err))
		}
		for _, r := range refs {
			if r.Wallet == walletID && r.Party == m.self {
				addOther(r.ShareID)
			}
		}
	}

	if slices.Contains(w.Committee, m.self) {
		// The session is a reshare's or, for a wallet never reshared, its
		// keygen's: one of the two share IDs exists.
		keep := tss.ReshareShareID(walletID, session, m.self)
		share, err := m.cfg.Shares.Get(walletID, m.self, keep)
		if errors.Is(err, shares.ErrNotFound) {
			keep = tss.KeygenShareID(walletID, session, m.self)
			share, err = m.cfg.Shares.Get(walletID, m.self, keep)
		}
		if err != nil {
			return false, m.refuseKeygen(walletID, fmt.Errorf("%w: wallet %q: no share of the committed session %s: %w", ErrShare, walletID, w.KeySession, err))
		}
		info := share.Info()
		share.Wipe()
		if string(info.PubKey) != string(w.PubKey) {
			return false, m.refuseKeygen(walletID, fmt.Errorf("%w: wallet %q: the committed session's share is for another key", ErrShare, walletID))
		}
		if err := matchesWallet(info, w); err != nil {
			return false, m.refuseKeygen(walletID, err)
		}
		m.wallets[walletID] = info
		m.keyed[walletID] = true
		others = slices.DeleteFunc(others, func(k []byte) bool { return bytes.Equal(k, keep) })
	} else {
		delete(m.wallets, walletID)
		delete(m.keyed, walletID)
	}
	delete(m.reshared, walletID)
	delete(m.leftReshare, walletID)

	deleted := false
	for _, key := range others {
		err := m.cfg.Shares.Delete(walletID, m.self, key)
		switch {
		case err == nil:
			deleted = true
		case !errors.Is(err, shares.ErrNotFound):
			return deleted, m.refuseKeygen(walletID, fmt.Errorf("%w: delete a retired share: %w", ErrShare, err))
		}
	}
	if deleted {
		m.log.Info("member: shares retired after the reshare committed", "member", m.self, "wallet", walletID, "session", w.KeySession)
	}
	return deleted, nil
}

// walletPtr and reshPtr are the registered and the pending (reshared, not
// yet committed) description of walletID, or nil. m.mu is held.
func (m *Member) walletPtr(walletID string) *tss.WalletInfo {
	if info, ok := m.wallets[walletID]; ok {
		return &info
	}
	return nil
}

func (m *Member) reshPtr(walletID string) *tss.WalletInfo {
	if info, ok := m.reshared[walletID]; ok {
		return &info
	}
	return nil
}

// ShareLister is a share store that names its shares (*shares.Store):
// RetireOld then retires every share of the wallet but the committed one,
// also those of sessions this member no longer remembers (a restart).
type ShareLister interface {
	List() ([]shares.Ref, error)
}

// WalletInfo returns the public description (committee with tss party
// keys, threshold, key) of the share this member holds of walletID, when
// its OWN ledger holds the wallet active or resharing with that key and
// committee. The leader gives it to new members of a reshare, who hold no
// share of the old committee (Reshare's oldMembers).
func (m *Member) WalletInfo(ctx context.Context, walletID string) (tss.WalletInfo, error) {
	var w *ledger.Wallet
	err := m.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		lw := st.Wallets[walletID]
		if lw == nil || (lw.Status != ledger.WalletActive && lw.Status != ledger.WalletResharing) {
			return fmt.Errorf("%w: wallet %q is not active in this member's ledger", ErrKeygen, walletID)
		}
		w = lw.Clone()
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrKeygen) {
			err = fmt.Errorf("%w: %w", ErrLedgerRead, err)
		}
		return tss.WalletInfo{}, m.refuseKeygen(walletID, err)
	}
	m.mu.Lock()
	info, ok := m.wallets[walletID]
	m.mu.Unlock()
	if !ok || string(info.PubKey) != string(w.PubKey) {
		return tss.WalletInfo{}, m.refuseKeygen(walletID, fmt.Errorf("%w: no registered share of wallet %q's key", ErrShare, walletID))
	}
	if err := matchesWallet(info, w); err != nil {
		return tss.WalletInfo{}, m.refuseKeygen(walletID, err)
	}
	info.Members = slices.Clone(info.Members)
	return info, nil
}
