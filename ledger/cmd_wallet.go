package ledger

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// Wallets: how a wallet comes to exist.
//
// Admins approve a WalletCreate (an admin-quorum governance change naming
// the wallet's chain, network, committee and threshold); the wallet is
// recorded in WalletKeygen. The leader then runs the distributed keygen
// with every committee member; each member runs it only for a wallet its
// OWN ledger holds in WalletKeygen with it in the committee, stores its
// share and attests the resulting public key with its node key. WalletKeyed
// carries one attestation per committee member; the FSM makes the wallet
// WalletActive with that key only when every member attested the same key
// with the key the node set pins for it. So a wallet's public key is what
// the whole committee attested, never the leader's word.
//
// WalletSet (no approvals, no attestations, no key) is the legacy and test
// path: it records an active wallet without a key.

// WalletStatus is a wallet's position in its lifecycle.
type WalletStatus string

// Wallet statuses. The empty status is a wallet recorded by the legacy
// WalletSet: active, without a key in the ledger.
const (
	// WalletKeygen: approved by the admins, waiting for the committee's
	// keygen; nothing can be signed or withdrawn with it.
	WalletKeygen WalletStatus = "keygen"
	// WalletActive: the committee attested its public key.
	WalletActive WalletStatus = "active"
)

// Chains a WalletCreate may name (the chain adapters' names).
var walletChains = []string{"eth", "btc"}

// WalletSet records a wallet without approvals or a key. It is the legacy
// and test path (tests, benchmarks and the audit tools seed ledgers with
// it); production wallets are created by WalletCreate and WalletKeyed.
type WalletSet struct {
	Wallet
}

// Type implements Command.
func (WalletSet) Type() string { return CmdWalletSet }

func (p WalletSet) apply(t *txn) (applyOut, error) {
	w := p.Wallet
	if w.ID == "" || w.Chain == "" || w.Network == "" || len(w.Committee) == 0 || w.Threshold < 1 || w.Threshold > len(w.Committee) {
		return applyOut{}, invalid("wallet needs id, chain, network, committee and 1 <= threshold <= committee size")
	}
	if w.Status != "" || len(w.PubKey) != 0 || w.Cold != nil || w.KeySession != "" || w.Reshare != nil {
		return applyOut{}, invalid("wallet.set records neither a status, a key, a key session, a reshare nor a cold registration (wallet.create, wallet.keyed, wallet.register)")
	}
	if old := t.wallet(w.ID); old != nil {
		if old.Status == "" && old.Chain == w.Chain && old.Network == w.Network && old.Threshold == w.Threshold && slices.Equal(old.Committee, w.Committee) {
			return applyOut{}, nil
		}
		// A wallet is a key: its committee changes only by a reshare, which
		// is a different command.
		return applyOut{}, fmt.Errorf("%w: wallet %q exists with a different description", ErrConflict, w.ID)
	}
	t.putWallet(&w)
	return changed(w.ID)
}

// WalletSpec is a proposed wallet: the admins approve its exact
// description. ID is the change ID (single-use, like every governance
// change); Wallet the new wallet's ID. Approvals sign a quorum.Statement
// with RequestID = ID and PayloadHash = PayloadHash().
type WalletSpec struct {
	ID        string       `json:"id"`
	Wallet    string       `json:"wallet"`
	Chain     string       `json:"chain"`
	Network   string       `json:"network"`
	Committee []pki.NodeID `json:"committee"`
	Threshold int          `json:"threshold"`
}

// PayloadHash is SHA-256 of "custody/wallet-create/v1" 0x00 and the spec's
// JSON (fields in declaration order).
func (c WalletSpec) PayloadHash() quorum.Hash {
	return quorum.DomainHash("custody/wallet-create/v1", c)
}

// WalletCreate records a new wallet in WalletKeygen after the registry's
// admin quorum approved its spec: the change ID is single-use forever and
// no approval outlives the genesis's ceiling. The committee (sorted as
// recorded) must be distinct nodes of the node set, 1 <= threshold <
// committee size (any threshold+1 members sign).
type WalletCreate struct {
	Change    WalletSpec        `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
}

// Type implements Command.
func (WalletCreate) Type() string { return CmdWalletCreate }

func (p WalletCreate) apply(t *txn) (applyOut, error) {
	c := p.Change
	if err := t.governance(c.ID, p.Approvals); err != nil {
		return applyOut{}, err
	}
	if c.Wallet == "" || c.Network == "" {
		return applyOut{}, invalid("wallet create %s: needs a wallet ID and a network", c.ID)
	}
	if !slices.Contains(walletChains, c.Chain) {
		return applyOut{}, invalid("wallet create %s: chain %q is not one of %v", c.ID, c.Chain, walletChains)
	}
	committee, err := t.committeeOf("wallet create "+c.ID, c.Committee, c.Threshold)
	if err != nil {
		return applyOut{}, err
	}
	if t.wallet(c.Wallet) != nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q exists", ErrConflict, c.Wallet)
	}
	if err := t.adminApproved("wallet create "+c.ID, c.ID, c.PayloadHash(), p.Approvals); err != nil {
		return applyOut{}, err
	}
	t.putWallet(&Wallet{ID: c.Wallet, Chain: c.Chain, Network: c.Network, Committee: committee, Threshold: c.Threshold, Status: WalletKeygen})
	t.recordChange(c.ID)
	return changed(c.Wallet)
}

// committeeOf checks a proposed committee (distinct nodes of the node set,
// 1 <= threshold < its size) and returns it sorted, as the ledger records
// committees.
func (t *txn) committeeOf(what string, proposed []pki.NodeID, threshold int) ([]pki.NodeID, error) {
	committee := slices.Clone(proposed)
	slices.SortFunc(committee, cmpNode)
	nodes := t.nodeSet()
	for i, n := range committee {
		if i > 0 && committee[i-1] == n {
			return nil, invalid("%s: committee names %q twice", what, n)
		}
		if nodes[n] == nil {
			return nil, invalid("%s: committee member %q is not in the node set", what, n)
		}
	}
	if threshold < 1 || threshold >= len(committee) {
		return nil, invalid("%s: threshold %d of %d (need 1 <= threshold < committee size)", what, threshold, len(committee))
	}
	return committee, nil
}

// adminApproved counts the registry's admin quorum over change id's
// payload hash.
func (t *txn) adminApproved(what, id string, payload quorum.Hash, approvals []quorum.Approval) error {
	reg := t.registry()
	tally := quorum.Count(reg, quorum.Subject{RequestID: id, PayloadHash: payload},
		quorum.Requirement{Required: reg.AdminQuorum, Roles: []quorum.Role{quorum.RoleAdmin}}, approvals, t.now)
	if err := tally.Err(); err != nil {
		return approvalErr(fmt.Errorf("%s: %w", what, err))
	}
	return nil
}

// attestedByAll checks that atts hold exactly one attestation by each
// member of committee, each passing verify (ErrApproval otherwise).
func attestedByAll(wallet string, committee []pki.NodeID, atts []CheckpointSig, verify func(CheckpointSig) error) error {
	if len(atts) != len(committee) {
		return fmt.Errorf("%w: wallet %q: %d attestations for a committee of %d", ErrApproval, wallet, len(atts), len(committee))
	}
	seen := map[pki.NodeID]bool{}
	for _, a := range atts {
		if !slices.Contains(committee, a.Node) || seen[a.Node] {
			return fmt.Errorf("%w: wallet %q: attestation by %q, not a committee member or repeated", ErrApproval, wallet, a.Node)
		}
		seen[a.Node] = true
		if err := verify(a); err != nil {
			return err
		}
	}
	return nil
}

// attestationDigest is the SHA-256 a node signs to attest head: the
// domain, then the head's JSON.
func attestationDigest(domain string, head any) []byte { return pki.AttestationDigest(domain, head) }

// walletKeyDomain separates wallet key attestations from every other
// signature made with a node key.
const walletKeyDomain = "custody/wallet-key/v1\x00"

// WalletKeyHead is what a committee member attests after its keygen: the
// cluster and genesis, the wallet as the ledger describes it, and the
// public key its keygen produced (33-byte compressed secp256k1, hex).
type WalletKeyHead struct {
	ClusterID   string       `json:"cluster_id"`
	GenesisHash string       `json:"genesis_hash"`
	Wallet      string       `json:"wallet"`
	Committee   []pki.NodeID `json:"committee"`
	Threshold   int          `json:"threshold"`
	PubKey      string       `json:"pubkey"`
	// Session is the tss session (hex) whose keygen produced PubKey: the
	// ledger records it (Wallet.KeySession) and each member keeps exactly
	// that session's share (member.RetireOld), never another session's.
	Session string `json:"session"`
}

// WalletKeyHeadOf is the head a member attests for wallet w (as its own
// ledger state st records it), the key pubkey and the keygen session.
func WalletKeyHeadOf(st *State, w *Wallet, session string, pubkey []byte) WalletKeyHead {
	return WalletKeyHead{ClusterID: st.Registry.ClusterID, GenesisHash: st.GenesisHash, Wallet: w.ID,
		Committee: slices.Clone(w.Committee), Threshold: w.Threshold, PubKey: hex.EncodeToString(pubkey), Session: session}
}

// Digest is the SHA-256 a node signs: the domain, then the head's JSON.
func (h WalletKeyHead) Digest() []byte { return attestationDigest(walletKeyDomain, h) }

// SignWalletKey is node's attestation of h with its node key (the key the
// node set pins for it: its certificate's key, or the same key in its HSM).
func SignWalletKey(h WalletKeyHead, node pki.NodeID, key crypto.Signer) (CheckpointSig, error) {
	sig, err := signNodeDigest(h.Digest(), node, key)
	if err != nil {
		return CheckpointSig{}, fmt.Errorf("ledger: attest key of wallet %q: %w", h.Wallet, err)
	}
	return sig, nil
}

// VerifyWalletKey checks one attestation of h against the node set.
func VerifyWalletKey(h WalletKeyHead, sig CheckpointSig, nodes map[pki.NodeID]*Node) error {
	if err := sig.VerifyDigest(h.Digest(), nodes); err != nil {
		return fmt.Errorf("%w: key attestation of wallet %q: %w", ErrApproval, h.Wallet, err)
	}
	return nil
}

// WalletKeyed makes a wallet in WalletKeygen active with PubKey, when
// every committee member attested exactly that key from exactly that
// keygen session (one attestation per member, made with the node key the
// node set pins for it, over the head this ledger computes from its own
// record of the wallet), and records the session (Wallet.KeySession):
// attestations of different sessions cannot be combined, and each member
// keeps only the share of the recorded session. A missing,
// extra, repeated or forged attestation is refused (ErrApproval), and so
// is a wallet not in WalletKeygen (ErrWrongStatus). The key's chain address
// is not recorded: readers derive it from the key.
type WalletKeyed struct {
	Wallet       string          `json:"wallet"`
	PubKey       []byte          `json:"pubkey"`
	Session      string          `json:"session"`
	Attestations []CheckpointSig `json:"attestations"`
}

// Type implements Command.
func (WalletKeyed) Type() string { return CmdWalletKeyed }

func (p WalletKeyed) apply(t *txn) (applyOut, error) {
	if err := t.needGenesis(); err != nil {
		return applyOut{}, err
	}
	w := t.wallet(p.Wallet)
	if w == nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q", ErrNotFound, p.Wallet)
	}
	if w.Status != WalletKeygen {
		return applyOut{}, fmt.Errorf("%w: wallet %q is %s, not %s", ErrWrongStatus, w.ID, w.statusName(), WalletKeygen)
	}
	if err := ValidWalletPubKey(p.PubKey); err != nil {
		return applyOut{}, invalid("wallet %q: %v", w.ID, err)
	}
	if !validSession(p.Session) {
		return applyOut{}, invalid("wallet %q: the keygen session %q is not 64 lowercase hex digits", w.ID, p.Session)
	}
	head := WalletKeyHead{ClusterID: t.registry().ClusterID, GenesisHash: t.st.GenesisHash, Wallet: w.ID,
		Committee: w.Committee, Threshold: w.Threshold, PubKey: hex.EncodeToString(p.PubKey), Session: p.Session}
	nodes := t.nodeSet()
	if err := attestedByAll(w.ID, w.Committee, p.Attestations, func(a CheckpointSig) error { return VerifyWalletKey(head, a, nodes) }); err != nil {
		return applyOut{}, err
	}
	w.Status = WalletActive
	w.PubKey = slices.Clone(p.PubKey)
	w.KeySession = p.Session
	t.putWallet(w)
	return changed(w.ID)
}

// ValidWalletPubKey checks the encoding of a wallet key: 33 bytes, a
// compressed secp256k1 point's prefix (0x02 or 0x03). Whether it is on the
// curve is every member's check (it attests only its own keygen's key).
func ValidWalletPubKey(pub []byte) error {
	if len(pub) != 33 || (pub[0] != 2 && pub[0] != 3) {
		return fmt.Errorf("public key is not a 33-byte compressed secp256k1 key (%d bytes)", len(pub))
	}
	return nil
}
