package ledger

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Status is a request's position in its lifecycle (see docs/ledger.md).
type Status string

// Request statuses (docs/ledger.md, "Request lifecycle"). Terminal:
// expired, rejected, confirmed, replaced, reverted; failed only until a
// reclaim; signed and imported until broadcast (a wallet whose transactions
// the cluster does not broadcast stays signed); dropped is flagged for a
// human and still tracked (the same transaction may yet be mined).
const (
	StatusAwaitingApprovals Status = "awaiting_approvals"
	StatusApproved          Status = "approved"
	StatusClaimed           Status = "claimed"
	StatusSigned            Status = "signed"
	StatusFailed            Status = "failed"
	StatusExpired           Status = "expired"
	StatusRejected          Status = "rejected"
	StatusExported          Status = "exported"
	StatusImported          Status = "imported"
	// StatusBroadcast: the leader sent the signed transaction (the one
	// whose hash Result.TxHash records) to its chain (RecordBroadcast).
	StatusBroadcast Status = "broadcast"
	// StatusConfirmed: mined successfully under enough confirmations.
	StatusConfirmed Status = "confirmed"
	// StatusReverted: mined, but the transaction failed (an ETH receipt
	// with status 0); its nonce and fee are spent.
	StatusReverted Status = "reverted"
	// StatusDropped: no longer known to the leader's node and not mined;
	// reported, still tracked, never re-signed.
	StatusDropped Status = "dropped"
	// StatusReplaced: another transaction spent its nonce or outpoints.
	// Reported; nothing is released or re-signed (a new signature needs a
	// new approved request).
	StatusReplaced Status = "replaced"
)

// Terminal reports whether no further transition is possible.
func (s Status) Terminal() bool {
	switch s {
	case StatusExpired, StatusRejected, StatusConfirmed, StatusReverted, StatusReplaced:
		return true
	}
	return false
}

// Signed reports whether a request in status s holds its signed
// transaction: signed, or any status the chain tracking moved it to. None of
// these ever leads to another signature.
func (s Status) Signed() bool {
	switch s {
	case StatusSigned, StatusBroadcast, StatusConfirmed, StatusReverted, StatusDropped, StatusReplaced:
		return true
	}
	return false
}

// Voter is a raft voter as recorded in the ledger.
type Voter struct {
	ID      pki.NodeID `json:"id"`
	Address string     `json:"address"`
}

// RulesDoc is one policy rules file, stored by its policy hash
// ([policy.Rules.Hash]); the parsed form is rebuilt from Body.
type RulesDoc struct {
	Hash string `json:"hash"`
	Body []byte `json:"body"`
}

// Wallet is a key and the committee of nodes holding its shares.
type Wallet struct {
	ID        string       `json:"id"`
	Chain     string       `json:"chain"`
	Network   string       `json:"network"`
	Committee []pki.NodeID `json:"committee"`
	Threshold int          `json:"threshold"`
	// Status is WalletKeygen from the admins' WalletCreate until the
	// committee's WalletKeyed, then WalletActive; empty for a wallet the
	// legacy WalletSet recorded (active, no key). Omitted when empty, so
	// states without it encode (and hash) as before.
	Status WalletStatus `json:"status,omitempty"`
	// PubKey is the wallet's 33-byte compressed secp256k1 key as every
	// committee member attested it (WalletKeyed); readers derive addresses
	// from it. Empty until then, and for legacy wallets.
	PubKey []byte `json:"pubkey,omitempty"`
	// Reshare is the admin-approved reshare in progress (WalletReshare,
	// status WalletResharing): the new committee and threshold. Committee
	// and Threshold stay the old ones, which keep signing, until the new
	// committee's WalletReshared. Omitted when nil.
	Reshare *ReshareSpec `json:"reshare,omitempty"`
	// KeySession is the tss session (hex) whose shares the committee holds,
	// as WalletKeyed or the last WalletReshared named it: a member signs
	// only with the share that session gave it (tss.KeygenShareID or
	// tss.ReshareShareID) and retires every other share of the wallet.
	// Empty for a wallet.set wallet and a cold wallet; omitted when empty.
	KeySession string `json:"key_session,omitempty"`
	// Cold is a cold wallet's registration (WalletRegister): its
	// custodians, their threshold and the ceremony's transcript hash. Nil
	// for wallets the nodes sign for; omitted when nil.
	Cold *ColdWalletSpec `json:"cold,omitempty"`
}

// Active reports whether the wallet may be used for withdrawals: its
// committee attested its key (or it is a legacy wallet.set wallet). A
// wallet being reshared is active: its old committee keeps signing until
// the new committee's WalletReshared.
func (w *Wallet) Active() bool {
	return w.Status == "" || w.Status == WalletActive || w.Status == WalletResharing
}

func (w *Wallet) statusName() string {
	if w.Status == "" {
		return "active (wallet.set)"
	}
	return string(w.Status)
}

// Clone returns a deep copy of the wallet (nil for nil): readers take one
// out of a state read and keep it.
func (w *Wallet) Clone() *Wallet {
	if w == nil {
		return nil
	}
	c := *w
	c.Committee = slices.Clone(w.Committee)
	c.PubKey = slices.Clone(w.PubKey)
	if w.Reshare != nil {
		r := *w.Reshare
		r.NewCommittee = slices.Clone(w.Reshare.NewCommittee)
		c.Reshare = &r
	}
	if w.Cold != nil {
		k := *w.Cold
		k.PubKey, k.Custodians = slices.Clone(w.Cold.PubKey), slices.Clone(w.Cold.Custodians)
		c.Cold = &k
	}
	return &c
}

// Claim is the compare-and-set grant of a signing session. Index, the raft
// index of the claim entry, is the fencing token: signers refuse work for a
// request whose current claim index differs from the one they were given.
// Signers is the session's signer set (sorted, distinct committee members,
// at least threshold+1): every member checks it was handed exactly this set.
type Claim struct {
	SessionID string       `json:"session_id"`
	Signers   []pki.NodeID `json:"signers,omitempty"`
	Index     uint64       `json:"index"`
	Term      uint64       `json:"term"`
	By        string       `json:"by"`
	At        time.Time    `json:"at"`
	// AuditSeq and AuditHead are the audit chain's head right after the
	// claim: the whole history the claim was granted on. The FSM stamps
	// them; nodes of the node set attest them (CheckpointSign naming the
	// request), and the claim is Attested once a checkpoint quorum did.
	// Members sign only attested claims: a leader that fed one follower a
	// log the others never saw cannot get the others to attest it.
	AuditSeq     uint64          `json:"audit_seq,omitempty"`
	AuditHead    string          `json:"audit_head,omitempty"`
	Attestations []CheckpointSig `json:"attestations,omitempty"`
	Attested     bool            `json:"attested,omitempty"`
}

// ClaimHead is the head nodes sign to attest the request's claim (no state
// hash: the audit head names the history).
func (r *Request) ClaimHead(clusterID, genesisHash string) CheckpointHead {
	if r.Claim == nil {
		return CheckpointHead{}
	}
	return CheckpointHead{ClusterID: clusterID, GenesisHash: genesisHash, Index: r.Claim.Index, AuditSeq: r.Claim.AuditSeq, AuditHead: r.Claim.AuditHead}
}

// VerifyAttestation checks that a checkpoint quorum of nodes signed the
// request's claim head; it is what a member checks before it signs.
func (r *Request) VerifyAttestation(clusterID, genesisHash string, nodes map[pki.NodeID]*Node) error {
	if r.Claim == nil || !r.Claim.Attested || r.Claim.AuditHead == "" {
		return fmt.Errorf("%w: the claim of %q is not attested by the node set", ErrCheckpoint, r.ID)
	}
	return VerifyCheckpoint(Checkpoint{CheckpointHead: r.ClaimHead(clusterID, genesisHash), Sigs: r.Claim.Attestations}, nodes)
}

// Result is the outcome of a signing session or cold import.
type Result struct {
	SessionID string    `json:"session_id,omitempty"`
	Signed    []byte    `json:"signed,omitempty"`
	TxHash    string    `json:"tx_hash,omitempty"`
	Error     string    `json:"error,omitempty"`
	Index     uint64    `json:"index"`
	At        time.Time `json:"at"`
}

// Request is a withdrawal request and everything recorded about it: the
// create command as committed (the withdrawal, its unsigned transaction and
// allocations, its expiry), then what the ledger decided and recorded.
type Request struct {
	RequestCreate
	// Initiator is the operator (backend or human with the initiator
	// role) whose signature the create command carries (Initiation).
	Initiator  string            `json:"initiator"`
	Decision   policy.Decision   `json:"decision"`
	Status     Status            `json:"status"`
	Approvals  []quorum.Approval `json:"approvals"`
	Claim      *Claim            `json:"claim,omitempty"`
	Result     *Result           `json:"result,omitempty"`
	BundleHash string            `json:"bundle_hash,omitempty"`
	// Export is what cold.export recorded and the nodes' attestations of
	// it (omitted until exported).
	Export *Export `json:"export,omitempty"`
	// OnChain is what the leader reported about the signed transaction on
	// its chain (RecordBroadcast, RecordChainStatus): the leader's word,
	// informational (docs/trust.md). Omitted until then, so states without
	// it encode (and hash) as before.
	OnChain *OnChain `json:"on_chain,omitempty"`
	// RejectReason is what the rejecting operator wrote (Approve.Reason):
	// unsigned, informational. Omitted when empty.
	RejectReason string `json:"reject_reason,omitempty"`
	// History is every status the request had, oldest first, as the FSM
	// recorded it (StatusChange); the webhook events are derived from it.
	// Webhook is the leaders' recorded delivery progress of those events
	// (WebhookDelivered). Both omitted while empty.
	History    []StatusChange   `json:"history,omitempty"`
	Webhook    *WebhookProgress `json:"webhook,omitempty"`
	CreatedAt  time.Time        `json:"created_at"`
	CreatedIdx uint64           `json:"created_index"`
	UpdatedIdx uint64           `json:"updated_index"`
}

// PolicyRequest is the request as policy evaluates it.
func (r *Request) PolicyRequest() policy.Request {
	return policy.Request{ID: r.ID, Withdrawal: r.Withdrawal, Initiator: r.Initiator, PayloadHash: r.PayloadHash, VSize: r.VSize}
}

// State is the whole replicated ledger. Readers get it under the FSM's read
// lock and must not modify or retain it.
type State struct {
	// Index is the raft index of the last command that changed the state
	// (refused and idempotent commands leave the state, and its hash, alone).
	Index uint64 `json:"index"`
	// Clock is the largest command time applied so far; the FSM's notion of
	// "now" never goes backwards across leaders with skewed clocks.
	Clock  time.Time             `json:"clock"`
	Voters map[pki.NodeID]*Voter `json:"voters"`
	// Registry holds operators, devices and the admin quorum (package quorum).
	Registry quorum.Registry `json:"registry"`
	// Rules holds every rules file ever active, by hash; ActiveRules names
	// the one in force.
	Rules       map[string]*RulesDoc `json:"rules"`
	ActiveRules string               `json:"active_rules,omitempty"`
	// Policy holds allowlists, locks and the spend history (package policy).
	Policy   policy.State        `json:"policy"`
	Wallets  map[string]*Wallet  `json:"wallets"`
	Requests map[string]*Request `json:"requests"`
	// Nonces maps "wallet/nonce" to the request that allocated it.
	Nonces map[string]string `json:"nonces"`
	// Outpoints maps "txid:vout" to the request that reserved it.
	Outpoints map[string]string `json:"outpoints"`
	// Sessions maps every tss session ID ever claimed to its request. A
	// session ID is never claimed twice: tss-lib v2.0.2's proofs replay
	// across sessions of one committee, and members' own memory of used IDs
	// is bounded and lost on restart (SECURITY 1).
	Sessions map[string]string `json:"sessions"`
	// Changes maps every governance change ID ever applied (registry,
	// policy and rules changes share one namespace) to the raft index that
	// applied it: a change ID is single-use forever (SECURITY 28).
	Changes map[string]uint64 `json:"changes"`
	// MaxApprovalValidity is the cluster's ceiling on how far in the future
	// an approval may expire, from the genesis; a longer-lived approval is
	// refused, so an old approval cannot be hoarded for later.
	MaxApprovalValidity time.Duration `json:"max_approval_validity"`
	// GenesisHash is the hash of the genesis file the ledger was
	// initialised from (Genesis.Hash); every node pins it in its config.
	GenesisHash string `json:"genesis_hash,omitempty"`
	// Nodes is the cluster's node set, from the genesis: each node's ID and
	// the fingerprint of its certificate's public key.
	Nodes map[pki.NodeID]*Node `json:"nodes"`
	// Checkpoints are the certified checkpoints, oldest first: each the
	// head of the state at a checkpoint index signed by a checkpoint quorum of the
	// node set (see CheckpointSign). The last one is the base of this
	// node's snapshots; all of them are signed audit heads.
	Checkpoints []Checkpoint `json:"checkpoints"`
	// Tokens binds each node of the node set to the serial of the HSM token
	// that holds its shares, as the node itself declared it (NodeToken): no
	// two nodes on one token (SECURITY 20). Omitted while empty.
	Tokens map[pki.NodeID]string `json:"tokens,omitempty"`
	// Proposals are the governance changes collecting approvals (staged by
	// ChangePropose and ChangeApprove, by change ID). They authorize
	// nothing: the real command carries the approvals and is verified as
	// any other. Omitted while empty, so states without them encode (and
	// hash) as before.
	Proposals map[string]*Proposal `json:"proposals,omitempty"`
	// CheckpointInterval is the genesis's (0: DefaultCheckpointInterval).
	CheckpointInterval uint64       `json:"checkpoint_interval,omitempty"`
	Audit              []AuditEvent `json:"audit"`
	// Governance is every governance command applied after the genesis
	// (registry.change, policy.change, rules.set, wallet.register: the
	// evidence a cold bundle carries), in order, with its payload as
	// logged; GovernanceHead is the chain head after the last
	// (genesis.GovernanceHash, starting at the genesis hash). Omitted while
	// empty, so states without them encode (and hash) as before.
	Governance     []GovernanceRecord `json:"governance,omitempty"`
	GovernanceHead string             `json:"governance_head,omitempty"`

	// rules is the parsed ActiveRules (derived, never serialised).
	rules *policy.Rules
}

// ActivePolicy returns the parsed rules in force (nil before genesis).
func (s *State) ActivePolicy() *policy.Rules { return s.rules }

// NewState returns an empty ledger.
func NewState() *State {
	return &State{
		Voters:    map[pki.NodeID]*Voter{},
		Rules:     map[string]*RulesDoc{},
		Wallets:   map[string]*Wallet{},
		Requests:  map[string]*Request{},
		Nonces:    map[string]string{},
		Outpoints: map[string]string{},
		Sessions:  map[string]string{},
		Changes:   map[string]uint64{},
		Nodes:     map[pki.NodeID]*Node{},
		Tokens:    map[pki.NodeID]string{},
		Proposals: map[string]*Proposal{},
	}
}

// Encode is the canonical serialisation of the state (JSON with struct fields
// in declaration order and map keys sorted), used by snapshots and [State.Hash].
func (s *State) Encode() ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode state: %w", err)
	}
	return b, nil
}

// Hash is SHA-256 over [State.Encode]. Two nodes that applied the same log
// prefix have the same hash.
func (s *State) Hash() ([32]byte, error) {
	b, err := s.Encode()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// DecodeState parses a serialised state and fills empty maps.
func DecodeState(b []byte) (*State, error) {
	st := NewState()
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("ledger: decode state: %w", err)
	}
	fillMaps(st)
	if st.ActiveRules != "" {
		doc := st.Rules[st.ActiveRules]
		if doc == nil {
			return nil, fmt.Errorf("ledger: decode state: active rules %s missing", st.ActiveRules)
		}
		r, err := policy.ParseRules(doc.Body)
		if err != nil || r.Hash() != st.ActiveRules {
			return nil, fmt.Errorf("ledger: decode state: active rules do not parse to their hash: %v", err)
		}
		st.rules = r
	}
	return st, nil
}

// fillMaps gives every nil map of st an empty one (a decoded "null", or a
// field an older encoding did not have), so no reader meets a nil map and a
// map added to State later needs no edit here.
func fillMaps(st *State) {
	v := reflect.ValueOf(st).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Map && f.IsNil() && f.CanSet() {
			f.Set(reflect.MakeMap(f.Type()))
		}
	}
}

// snapshotView returns a state that shares every stored record with s but
// none of its maps, so later commands do not show through it: a command
// never edits a stored record in place (the txn hands out copies and its
// commit replaces map entries; quorum.Registry and policy.State change by
// returning new values), and the audit chain only grows, so the view keeps
// its length. TestSnapshotViewUnchangedByLaterCommands holds this.
func (s *State) snapshotView() *State {
	v := *s
	v.Voters = maps.Clone(s.Voters)
	v.Rules = maps.Clone(s.Rules)
	v.Wallets = maps.Clone(s.Wallets)
	v.Requests = maps.Clone(s.Requests)
	v.Nonces = maps.Clone(s.Nonces)
	v.Outpoints = maps.Clone(s.Outpoints)
	v.Sessions = maps.Clone(s.Sessions)
	v.Changes = maps.Clone(s.Changes)
	v.Nodes = maps.Clone(s.Nodes)
	v.Tokens = maps.Clone(s.Tokens)
	v.Proposals = maps.Clone(s.Proposals)
	v.Audit = s.Audit[:len(s.Audit):len(s.Audit)]
	v.Governance = s.Governance[:len(s.Governance):len(s.Governance)]
	v.Checkpoints = s.Checkpoints[:len(s.Checkpoints):len(s.Checkpoints)]
	return &v
}

// Clone deep-copies a request through its JSON form, so callers outside the
// FSM's lock never share memory with the FSM. A nil request clones to nil.
func (r *Request) Clone() *Request { return cloneJSON(r) }

// cloneJSON deep-copies a record through its JSON form (nil for nil).
// Records are plain data, so a failure is a programming error.
func cloneJSON[T any](v *T) *T {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ledger: %T not serialisable: %v", v, err))
	}
	var c T
	if err := json.Unmarshal(b, &c); err != nil {
		panic(fmt.Sprintf("ledger: %T not serialisable: %v", v, err))
	}
	return &c
}

// Clone deep-copies the state through its canonical encoding (the same path
// as a snapshot and restore), for callers that keep or edit a state outside
// the read callback. It fails only on a state that could not be snapshotted.
func (s *State) Clone() (*State, error) {
	b, err := s.Encode()
	if err != nil {
		return nil, err
	}
	return DecodeState(b)
}

// HeldNonces returns, sorted, the ETH nonces of wallet that requests hold
// (allocated at create, kept through claimed, signed and failed; released on
// rejection or expiry before a claim).
func (s *State) HeldNonces(wallet string) []uint64 {
	var out []uint64
	prefix := wallet + "/"
	for k := range s.Nonces {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(rest, 10, 64); err == nil && nonceKey(wallet, n) == k {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// NonceHolder returns the request holding wallet's ETH nonce n, or "" when
// the nonce is free (a map lookup; HeldNonces scans every wallet's).
func (s *State) NonceHolder(wallet string, n uint64) string { return s.Nonces[nonceKey(wallet, n)] }
