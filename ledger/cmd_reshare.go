package ledger

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// Reshares: how a wallet's key moves to another committee ("add, remove
// or replace a node") without changing the key.
//
// Admins approve a WalletReshare (an admin-quorum governance change naming
// the wallet, the new committee and the new threshold); an active wallet
// goes to WalletResharing with the spec recorded in Wallet.Reshare. Its
// committee and threshold stay the old ones, and the old committee keeps
// signing withdrawals, until the reshare commits: nothing is lost if the
// reshare never completes (the old shares are kept until then). The leader
// runs the two-phase reshare (signer/tss) with t+1 old members and every
// new member; each runs it only for a wallet its OWN ledger holds in
// WalletResharing with it in one of the committees, and every new member
// attests the (unchanged) wallet key with its node key over the new
// committee, threshold, change ID and tss session. WalletReshared names the
// session and carries one attestation per new member over it; the FSM then
// makes the wallet active with the new committee and threshold, same key,
// and records the session (Wallet.KeySession): every new member adopts
// exactly the share that session gave it. Old members destroy their old
// shares only once their own ledger shows that (member.RetireOld).

// WalletResharing: the admins approved a reshare to Wallet.Reshare; the
// old committee still signs until the new committee's WalletReshared.
const WalletResharing WalletStatus = "resharing"

// ReshareSpec is a proposed reshare: the admins approve exactly this. ID is
// the change ID (single-use, like every governance change); Wallet the
// wallet whose key moves; NewCommittee and NewThreshold the committee that
// will hold it (any NewThreshold+1 of them sign). Approvals sign a
// quorum.Statement with RequestID = ID and PayloadHash = PayloadHash().
type ReshareSpec struct {
	ID           string       `json:"id"`
	Wallet       string       `json:"wallet"`
	NewCommittee []pki.NodeID `json:"new_committee"`
	NewThreshold int          `json:"new_threshold"`
}

// PayloadHash is SHA-256 of "custody/wallet-reshare/v1" 0x00 and the
// spec's JSON (fields in declaration order).
func (c ReshareSpec) PayloadHash() quorum.Hash {
	return quorum.DomainHash("custody/wallet-reshare/v1", c)
}

// WalletReshare puts an active wallet (one with a key the committee
// attested) in WalletResharing after the registry's admin quorum approved
// its spec: the change ID is single-use forever and no approval outlives
// the genesis's ceiling. The new committee (recorded sorted) must be
// distinct nodes of the node set, 1 <= NewThreshold < its size. A wallet in
// keygen, already resharing or recorded by the legacy WalletSet (no key)
// is refused (ErrWrongStatus).
type WalletReshare struct {
	Change    ReshareSpec       `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
}

// Type implements Command.
func (WalletReshare) Type() string { return CmdWalletReshare }

func (p WalletReshare) apply(t *txn) (applyOut, error) {
	c := p.Change
	if err := t.governance(c.ID, p.Approvals); err != nil {
		return applyOut{}, err
	}
	w := t.wallet(c.Wallet)
	if w == nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q", ErrNotFound, c.Wallet)
	}
	if w.Status != WalletActive {
		return applyOut{}, fmt.Errorf("%w: wallet %q is %s, not %s with a key", ErrWrongStatus, w.ID, w.statusName(), WalletActive)
	}
	committee, err := t.committeeOf("wallet reshare "+c.ID, c.NewCommittee, c.NewThreshold)
	if err != nil {
		return applyOut{}, err
	}
	if err := t.adminApproved("wallet reshare "+c.ID, c.ID, c.PayloadHash(), p.Approvals); err != nil {
		return applyOut{}, err
	}
	w.Status = WalletResharing
	w.Reshare = &ReshareSpec{ID: c.ID, Wallet: w.ID, NewCommittee: committee, NewThreshold: c.NewThreshold}
	t.putWallet(w)
	t.recordChange(c.ID)
	return changed(w.ID)
}

// walletReshareDomain separates reshare attestations from every other
// signature made with a node key (wallet-key attestations included).
const walletReshareDomain = "custody/wallet-reshare/v1\x00"

// WalletReshareHead is what a new committee member attests after a
// reshare: the cluster and genesis, the wallet, the reshare's change ID,
// the new committee and threshold as its own ledger records them, and the
// public key its new share is of (33-byte compressed secp256k1, hex): the
// wallet's unchanged key; and the tss session (hex) the share comes from.
// The change ID keeps an attestation of one reshare from being replayed for
// a later reshare to the same committee; the session keeps attestations of
// different sessions of one reshare (a compromised leader running several,
// or a retry) from being combined: every new member of a committed reshare
// holds a share of the same session.
type WalletReshareHead struct {
	ClusterID    string       `json:"cluster_id"`
	GenesisHash  string       `json:"genesis_hash"`
	Wallet       string       `json:"wallet"`
	ChangeID     string       `json:"change_id"`
	NewCommittee []pki.NodeID `json:"new_committee"`
	NewThreshold int          `json:"new_threshold"`
	PubKey       string       `json:"pubkey"`
	Session      string       `json:"session"`
}

// WalletReshareHeadOf is the head a new member attests for wallet w in
// WalletResharing (as its own ledger state st records it), the key pubkey
// and the tss session (hex). It returns false when w is not resharing.
func WalletReshareHeadOf(st *State, w *Wallet, pubkey []byte, session string) (WalletReshareHead, bool) {
	if w == nil || w.Status != WalletResharing || w.Reshare == nil {
		return WalletReshareHead{}, false
	}
	return WalletReshareHead{ClusterID: st.Registry.ClusterID, GenesisHash: st.GenesisHash, Wallet: w.ID,
		ChangeID: w.Reshare.ID, NewCommittee: slices.Clone(w.Reshare.NewCommittee), NewThreshold: w.Reshare.NewThreshold,
		PubKey: hex.EncodeToString(pubkey), Session: session}, true
}

// Digest is the SHA-256 a node signs: the domain, then the head's JSON.
func (h WalletReshareHead) Digest() []byte { return attestationDigest(walletReshareDomain, h) }

// SignWalletReshare is node's attestation of h with its node key.
func SignWalletReshare(h WalletReshareHead, node pki.NodeID, key crypto.Signer) (CheckpointSig, error) {
	sig, err := signNodeDigest(h.Digest(), node, key)
	if err != nil {
		return CheckpointSig{}, fmt.Errorf("ledger: attest reshare of wallet %q: %w", h.Wallet, err)
	}
	return sig, nil
}

// VerifyWalletReshare checks one attestation of h against the node set.
func VerifyWalletReshare(h WalletReshareHead, sig CheckpointSig, nodes map[pki.NodeID]*Node) error {
	if err := sig.VerifyDigest(h.Digest(), nodes); err != nil {
		return fmt.Errorf("%w: reshare attestation of wallet %q: %w", ErrApproval, h.Wallet, err)
	}
	return nil
}

// WalletReshared completes a reshare: a wallet in WalletResharing becomes
// active with the new committee and threshold of its Wallet.Reshare, when
// every new member attested the wallet's own key (one attestation per new
// member, with the node key the node set pins for it, over the head this
// ledger computes from its own record of the reshare and Session). PubKey
// must be the wallet's key (ErrConflict: a reshare never changes the key);
// Session must be a tss session ID (32 bytes, lowercase hex; ErrInvalid)
// and every attestation must be over it; a missing, extra, repeated or
// forged attestation, or one of another session, is refused (ErrApproval),
// and so is a wallet not resharing (ErrWrongStatus). The session is
// recorded as the wallet's Wallet.KeySession.
type WalletReshared struct {
	Wallet       string          `json:"wallet"`
	PubKey       []byte          `json:"pubkey"`
	Session      string          `json:"session"`
	Attestations []CheckpointSig `json:"attestations"`
}

// Type implements Command.
func (WalletReshared) Type() string { return CmdWalletReshared }

func (p WalletReshared) apply(t *txn) (applyOut, error) {
	if err := t.needGenesis(); err != nil {
		return applyOut{}, err
	}
	w := t.wallet(p.Wallet)
	if w == nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q", ErrNotFound, p.Wallet)
	}
	if w.Status != WalletResharing || w.Reshare == nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q is %s, not %s", ErrWrongStatus, w.ID, w.statusName(), WalletResharing)
	}
	if !bytes.Equal(p.PubKey, w.PubKey) {
		return applyOut{}, fmt.Errorf("%w: wallet %q: a reshare keeps the key %x, not %x", ErrConflict, w.ID, w.PubKey, p.PubKey)
	}
	if !validSession(p.Session) {
		return applyOut{}, fmt.Errorf("%w: wallet %q: session %q is not 32 bytes of lowercase hex", ErrInvalid, w.ID, p.Session)
	}
	spec := w.Reshare
	head, _ := WalletReshareHeadOf(t.st, w, w.PubKey, p.Session)
	head.ClusterID = t.registry().ClusterID
	nodes := t.nodeSet()
	if err := attestedByAll(w.ID, spec.NewCommittee, p.Attestations, func(a CheckpointSig) error { return VerifyWalletReshare(head, a, nodes) }); err != nil {
		return applyOut{}, err
	}
	w.Committee = slices.Clone(spec.NewCommittee)
	w.Threshold = spec.NewThreshold
	w.Status = WalletActive
	w.Reshare = nil
	w.KeySession = p.Session
	t.putWallet(w)
	return changed(w.ID)
}
