package member

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/tss"
)

// PreParams hands out fresh, validated tss-lib pre-params, one per keygen;
// *preparams.Pool implements it. Pre-params take tens of seconds to make,
// so the pool makes them ahead of time, never on a keygen's path.
type PreParams interface {
	Wait(ctx context.Context) (*keygen.LocalPreParams, error)
}

// KeygenResult is one member's outcome of a wallet's keygen: the wallet's
// public key and this member's attestation of it with its node key (over
// ledger.WalletKeyHead, as its own ledger describes the wallet), which the
// leader puts in ledger.WalletKeyed with every other member's.
type KeygenResult struct {
	Wallet  string
	Session tss.SessionID
	// PubKey is the 33-byte compressed secp256k1 key.
	PubKey      []byte
	Attestation ledger.CheckpointSig
}

// Keygen runs this member's side of the distributed keygen of walletID
// under session, after checking on its OWN linearizable ledger read that
// the admins approved the wallet (ledger.WalletKeygen) with this node in
// its committee: a leader cannot make it run a keygen for a wallet its
// ledger does not hold, or with another committee or threshold. It takes
// pre-params from Config.PreParams, runs the engine's keygen (all-or-none
// with its own two-subset test-sign and confirmation round), stores the
// share sealed, registers the wallet, wipes the share and returns the key
// with its attestation.
//
// Asked again for the same wallet and session after success, it returns
// the result from the stored share without a second keygen. A new session
// for a wallet still in keygen runs a new keygen (the earlier one did not
// complete for the whole committee, or its key would be in the ledger); the
// share of the earlier session is kept, because the committee may still
// have attested it (a share whose key the ledger never took is removed only
// once the ledger names another key). A wallet no longer in keygen is refused unless
// its ledger key is the stored share's of exactly this session.
func (m *Member) Keygen(ctx context.Context, walletID string, session tss.SessionID) (*KeygenResult, error) {
	if walletID == "" || session == (tss.SessionID{}) {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: wallet and session are required", ErrBadClaim))
	}
	if m.cfg.PreParams == nil || m.cfg.NodeKey == nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: this member has no pre-params pool or node key", ErrKeygen))
	}
	m.kgMu.Lock()
	defer m.kgMu.Unlock()

	w, head, err := m.readKeygenWallet(ctx, walletID)
	if err != nil {
		return nil, m.refuseKeygen(walletID, err)
	}
	shareID := tss.KeygenShareID(walletID, session, m.self)
	stored, err := m.cfg.Shares.Get(walletID, m.self, shareID)
	switch {
	case err == nil:
		defer stored.Wipe()
		if err := matchesWallet(stored.Info(), w); err != nil {
			return nil, m.refuseKeygen(walletID, err)
		}
		return m.keygenResult(walletID, session, stored.Info(), w, head)
	case !errors.Is(err, shares.ErrNotFound):
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrShare, err))
	}
	if w.Status != ledger.WalletKeygen {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: wallet %q is %s, not in keygen", ErrKeygen, walletID, walletStatus(w)))
	}

	pre, err := m.cfg.PreParams.Wait(ctx)
	if err != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: pre-params: %w", ErrKeygen, err))
	}
	share, err := m.cfg.Engine.Keygen(ctx, tss.KeygenParams{Wallet: walletID, Session: session, Committee: slices.Clone(w.Committee), Threshold: w.Threshold}, pre)
	if err != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrSession, err))
	}
	// The share exists in plaintext only here: seal it, then wipe it
	// (invariant 4), before anything else can fail.
	perr := m.cfg.Shares.Put(share)
	info := share.Info()
	share.Wipe()
	if perr != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: store: %w", ErrShare, perr))
	}
	if err := matchesWallet(info, w); err != nil {
		return nil, m.refuseKeygen(walletID, err)
	}
	// The keygen took a while: another session may have completed for the
	// whole committee and been recorded meanwhile. Decide on a fresh read
	// (keygenResult refuses a wallet keyed with another key).
	if w, head, err = m.readKeygenWallet(ctx, walletID); err != nil {
		return nil, m.refuseKeygen(walletID, err)
	}
	res, err := m.keygenResult(walletID, session, info, w, head)
	if err != nil {
		return nil, err
	}
	m.log.Info("member: keygen done", "member", m.self, "wallet", walletID, "session", session.String(), "pubkey", hex.EncodeToString(info.PubKey))
	return res, nil
}

// readKeygenWallet reads the wallet from this member's own ledger and
// checks it is in keygen (or active, for an idempotent repeat) with this
// node in its committee. It returns the wallet and the attestation head
// without its key.
func (m *Member) readKeygenWallet(ctx context.Context, walletID string) (*ledger.Wallet, ledger.WalletKeyHead, error) {
	var w *ledger.Wallet
	var head ledger.WalletKeyHead
	err := m.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		lw := st.Wallets[walletID]
		if lw == nil {
			return fmt.Errorf("%w: wallet %q is not in this member's ledger", ErrKeygen, walletID)
		}
		if lw.Status != ledger.WalletKeygen && lw.Status != ledger.WalletActive {
			return fmt.Errorf("%w: wallet %q was not created by the admins (wallet.create)", ErrKeygen, walletID)
		}
		if !slices.Contains(lw.Committee, m.self) {
			return fmt.Errorf("%w: %s is not in the committee of wallet %q", ErrKeygen, m.self, walletID)
		}
		w = lw.Clone()
		head = ledger.WalletKeyHeadOf(st, w, "", nil)
		return nil
	})
	if err != nil && !errors.Is(err, ErrKeygen) {
		err = fmt.Errorf("%w: %w", ErrLedgerRead, err)
	}
	return w, head, err
}

// keygenResult registers info and attests its key, for a wallet in keygen
// or one whose ledger key is info's.
func (m *Member) keygenResult(walletID string, session tss.SessionID, info tss.WalletInfo, w *ledger.Wallet, head ledger.WalletKeyHead) (*KeygenResult, error) {
	if w.Status != ledger.WalletKeygen && string(w.PubKey) != string(info.PubKey) {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: wallet %q is %s with another key than session %s's", ErrKeygen, walletID, walletStatus(w), session))
	}
	if err := m.registerKeygen(info); err != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrShare, err))
	}
	head.PubKey, head.Session = hex.EncodeToString(info.PubKey), session.String()
	sig, err := ledger.SignWalletKey(head, m.self, m.cfg.NodeKey)
	if err != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrKeygen, err))
	}
	return &KeygenResult{Wallet: walletID, Session: session, PubKey: slices.Clone(info.PubKey), Attestation: sig}, nil
}

// registerKeygen registers the wallet of a keygen this member just ran or
// found stored. It replaces a registration of another key from an earlier
// keygen (while the wallet is in keygen nothing is signed with it: claims
// need an active wallet whose ledger key is the registered one), never the
// registration of the key the ledger recorded (AddWallet): a keygen session
// finishing after another one was recorded must not unseat it.
func (m *Member) registerKeygen(info tss.WalletInfo) error {
	if _, err := btcec.ParsePubKey(info.PubKey); err != nil {
		return fmt.Errorf("wallet %q key: %w", info.Wallet, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.wallets[info.Wallet]; ok && m.keyed[info.Wallet] && string(old.PubKey) != string(info.PubKey) {
		return fmt.Errorf("wallet %q is registered with the key the ledger recorded, not session's", info.Wallet)
	}
	m.wallets[info.Wallet] = info
	return nil
}

// matchesWallet checks a keygen's output against the ledger's wallet.
func matchesWallet(info tss.WalletInfo, w *ledger.Wallet) error {
	nodes := make([]pki.NodeID, 0, len(info.Members))
	for _, p := range info.Members {
		nodes = append(nodes, p.Node)
	}
	slices.Sort(nodes)
	want := slices.Clone(w.Committee)
	slices.Sort(want)
	if info.Wallet != w.ID || info.Threshold != w.Threshold || !slices.Equal(nodes, want) {
		return fmt.Errorf("%w: the keygen's wallet (%s, %d of %v) is not the ledger's (%s, %d of %v)", ErrKeygen,
			info.Wallet, info.Threshold, nodes, w.ID, w.Threshold, want)
	}
	return nil
}

func walletStatus(w *ledger.Wallet) string {
	if w.Status == "" {
		return "a wallet.set wallet"
	}
	return string(w.Status)
}

// walletTestDomain separates test-sign digests from every other digest a
// wallet key signs: a transaction's signing hash is keccak-256 (ETH) or a
// double SHA-256 (BTC) of a transaction, never SHA-256 of this prefix.
const walletTestDomain = "custody/wallet-test/v1\x00"

// WalletTestDigest is the digest a new wallet's test signatures sign:
// SHA-256("custody/wallet-test/v1" 0x00 wallet 0x00 pubkey).
func WalletTestDigest(walletID string, pubkey []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(walletTestDomain))
	h.Write([]byte(walletID))
	h.Write([]byte{0})
	h.Write(pubkey)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// TestSign runs this member's side of a test signature of a new wallet's
// key (SECURITY 8: two different t+1 subsets sign before any address is
// published): WalletTestDigest(walletID, pubkey) under session with
// signers. It signs only for a wallet its own ledger holds in keygen, with
// signers a valid signer set of the committee including this node, and a
// pubkey equal to the key of its own share from that wallet's keygen; the
// digest is never a transaction's. It returns r || s || v, verified.
func (m *Member) TestSign(ctx context.Context, walletID string, pubkey []byte, session tss.SessionID, signers []pki.NodeID) ([]byte, error) {
	if walletID == "" || session == (tss.SessionID{}) || len(pubkey) == 0 {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: wallet, key and session are required", ErrBadClaim))
	}
	w, registered, err := m.testSignWallet(ctx, walletID, pubkey)
	if err != nil {
		return nil, m.refuseKeygen(walletID, err)
	}
	set := slices.Clone(signers)
	slices.Sort(set)
	if len(set) < w.Threshold+1 || len(slices.Compact(slices.Clone(set))) != len(set) || !slices.Contains(set, m.self) {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: signers %v are not t+1 distinct members with %s", ErrWallet, signers, m.self))
	}
	for _, s := range set {
		if !slices.Contains(w.Committee, s) {
			return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: signer %q is not in the committee", ErrWallet, s))
		}
	}
	m.mu.Lock()
	info, ok := registered[walletID]
	m.mu.Unlock()
	if !ok || string(info.PubKey) != string(pubkey) {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: this member's keygen of %q did not produce key %x", ErrKeygen, walletID, pubkey))
	}
	if err := matchesWallet(info, w); err != nil {
		return nil, m.refuseKeygen(walletID, err)
	}
	shareID, ok := memberKey(info, m.self)
	if !ok {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: no share ID for %s", ErrShare, m.self))
	}
	share, err := m.cfg.Shares.Get(walletID, m.self, shareID)
	if err != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrShare, err))
	}
	if string(share.PubKey) != string(pubkey) {
		share.Wipe()
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: the unsealed share is for another key", ErrShare))
	}
	digest := WalletTestDigest(walletID, pubkey)
	sig, err := m.cfg.Engine.Sign(ctx, share, tss.SignParams{Session: session, Signers: set, Digest: digest})
	share.Wipe()
	if err != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrSession, err))
	}
	out := sig.Bytes65()
	if err := VerifyTestSignature(walletID, pubkey, out); err != nil {
		return nil, m.refuseKeygen(walletID, fmt.Errorf("%w: %w", ErrSignature, err))
	}
	return out, nil
}

// testSignWallet is the wallet a test signature is for, as this member's
// own ledger holds it, and where this member registered its share: a
// wallet in keygen (its committee, the keygen's share), or a wallet in
// resharing whose key is pubkey (the admins' new committee and threshold,
// the share of this member's reshare, not yet adopted).
func (m *Member) testSignWallet(ctx context.Context, walletID string, pubkey []byte) (*ledger.Wallet, map[string]tss.WalletInfo, error) {
	if rw, err := m.readReshareWallet(ctx, walletID); err == nil {
		if string(rw.w.PubKey) != string(pubkey) {
			return nil, nil, fmt.Errorf("%w: wallet %q is resharing key %x, not %x", ErrKeygen, walletID, rw.w.PubKey, pubkey)
		}
		if !slices.Contains(rw.spec.NewCommittee, m.self) {
			return nil, nil, fmt.Errorf("%w: %s is not in the new committee of wallet %q", ErrKeygen, m.self, walletID)
		}
		return rw.newWallet(), m.reshared, nil
	}
	w, _, err := m.readKeygenWallet(ctx, walletID)
	if err != nil {
		return nil, nil, err
	}
	if w.Status != ledger.WalletKeygen {
		return nil, nil, fmt.Errorf("%w: wallet %q is %s: test signatures only in keygen or resharing", ErrKeygen, walletID, walletStatus(w))
	}
	return w, m.wallets, nil
}

// VerifyTestSignature checks a test signature (r || s || v) of wallet's
// key pubkey over WalletTestDigest: valid and low-S.
func VerifyTestSignature(walletID string, pubkey, sig65 []byte) error {
	pub, err := btcec.ParsePubKey(pubkey)
	if err != nil {
		return fmt.Errorf("member: wallet key: %w", err)
	}
	if len(sig65) != 65 {
		return fmt.Errorf("member: test signature is %d bytes, not 65", len(sig65))
	}
	var r, s btcec.ModNScalar
	if r.SetByteSlice(sig65[:32]) || s.SetByteSlice(sig65[32:64]) || r.IsZero() || s.IsZero() {
		return errors.New("member: test signature r or s out of range")
	}
	if s.IsOverHalfOrder() {
		return errors.New("member: test signature is high-S")
	}
	d := WalletTestDigest(walletID, pubkey)
	if !becdsa.NewSignature(&r, &s).Verify(d[:], pub) {
		return errors.New("member: test signature does not verify under the wallet key")
	}
	return nil
}

func (m *Member) refuseKeygen(walletID string, err error) error {
	m.log.Warn("member: refused keygen work", "member", m.self, "wallet", walletID, "err", err)
	return &RefusalError{Member: m.self, RequestID: "wallet:" + walletID, Err: err}
}
