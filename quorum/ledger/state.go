package ledger

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"
)

// Status is a request's position in its lifecycle (see docs/ledger.md).
type Status string

// Request statuses. Terminal: signed, failed, expired, rejected, imported.
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
)

// Terminal reports whether no further transition is possible.
func (s Status) Terminal() bool {
	switch s {
	case StatusSigned, StatusFailed, StatusExpired, StatusRejected, StatusImported:
		return true
	}
	return false
}

// Route says where an allowed request is signed.
type Route string

// Routes.
const (
	RouteHot  Route = "hot"
	RouteCold Route = "cold"
)

// Decision is the policy outcome recorded with a request. It is computed inside
// Apply by the FSM's [Evaluator] from the replicated state and the command's
// time, so every node records the same decision.
type Decision struct {
	Allow             bool   `json:"allow"`
	Reason            string `json:"reason,omitempty"`
	Route             Route  `json:"route,omitempty"`
	ApprovalsRequired int    `json:"approvals_required"`
	RulesHash         string `json:"rules_hash,omitempty"`
}

// Member is a raft voter as recorded in the ledger.
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// Device is an operator's approval key.
type Device struct {
	ID        string    `json:"id"`
	PublicKey []byte    `json:"public_key"`
	AddedAt   time.Time `json:"added_at"`
	Revoked   bool      `json:"revoked,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Operator is an enrolled human approver.
type Operator struct {
	ID      string             `json:"id"`
	Roles   []string           `json:"roles"`
	Devices map[string]*Device `json:"devices"`
	Revoked bool               `json:"revoked,omitempty"`
}

// Rules is one policy document, stored by its SHA-256 (hex).
type Rules struct {
	Hash string `json:"hash"`
	Body []byte `json:"body"`
}

// Wallet is a key and the committee of nodes holding its shares.
type Wallet struct {
	ID        string   `json:"id"`
	Chain     string   `json:"chain"`
	Committee []string `json:"committee"`
	Threshold int      `json:"threshold"`
	Cold      bool     `json:"cold,omitempty"`
}

// AllowEntry is an allowlisted destination, usable from EffectiveAt.
type AllowEntry struct {
	Wallet      string    `json:"wallet"`
	Address     string    `json:"address"`
	Label       string    `json:"label,omitempty"`
	AddedAt     time.Time `json:"added_at"`
	EffectiveAt time.Time `json:"effective_at"`
}

// Lock is the account lock; while Locked nothing is claimed, exported or
// added to the allowlist.
type Lock struct {
	Locked bool      `json:"locked"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// Approval is one operator's signed approval or rejection.
type Approval struct {
	Operator  string    `json:"operator"`
	Device    string    `json:"device"`
	Reject    bool      `json:"reject,omitempty"`
	Signature []byte    `json:"signature"`
	Expiry    time.Time `json:"expiry"`
	Index     uint64    `json:"index"`
	At        time.Time `json:"at"`
}

// Claim is the compare-and-set grant of a signing session. Index, the raft
// index of the claim entry, is the fencing token: signers refuse work for a
// request whose current claim index differs from the one they were given.
type Claim struct {
	SessionID string    `json:"session_id"`
	Index     uint64    `json:"index"`
	Term      uint64    `json:"term"`
	By        string    `json:"by"`
	At        time.Time `json:"at"`
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

// Request is a withdrawal request and everything recorded about it.
type Request struct {
	ID          string     `json:"id"`
	Wallet      string     `json:"wallet"`
	Initiator   string     `json:"initiator"`
	Destination string     `json:"destination,omitempty"`
	Amount      string     `json:"amount,omitempty"`
	Payload     []byte     `json:"payload"`
	PayloadHash string     `json:"payload_hash"`
	Nonce       *uint64    `json:"nonce,omitempty"`
	Outpoints   []string   `json:"outpoints,omitempty"`
	Decision    Decision   `json:"decision"`
	Status      Status     `json:"status"`
	Approvals   []Approval `json:"approvals"`
	Claim       *Claim     `json:"claim,omitempty"`
	Result      *Result    `json:"result,omitempty"`
	BundleHash  string     `json:"bundle_hash,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	CreatedIdx  uint64     `json:"created_index"`
	UpdatedIdx  uint64     `json:"updated_index"`
}

// State is the whole replicated ledger. Readers get it under the FSM's read
// lock and must not modify or retain it.
type State struct {
	// Index is the raft index of the last command that changed the state
	// (refused and idempotent commands leave the state, and its hash, alone).
	Index uint64 `json:"index"`
	// Clock is the largest command time applied so far; the FSM's notion of
	// "now" never goes backwards across leaders with skewed clocks.
	Clock       time.Time              `json:"clock"`
	Members     map[string]*Member     `json:"members"`
	Operators   map[string]*Operator   `json:"operators"`
	Rules       map[string]*Rules      `json:"rules"`
	ActiveRules string                 `json:"active_rules,omitempty"`
	Wallets     map[string]*Wallet     `json:"wallets"`
	Allowlist   map[string]*AllowEntry `json:"allowlist"`
	Lock        Lock                   `json:"lock"`
	Requests    map[string]*Request    `json:"requests"`
	// Nonces maps "wallet/nonce" to the request that allocated it.
	Nonces map[string]string `json:"nonces"`
	// Outpoints maps "txid:vout" to the request that reserved it.
	Outpoints map[string]string `json:"outpoints"`
	Audit     []AuditEvent      `json:"audit"`
}

// NewState returns an empty ledger.
func NewState() *State {
	return &State{
		Members:   map[string]*Member{},
		Operators: map[string]*Operator{},
		Rules:     map[string]*Rules{},
		Wallets:   map[string]*Wallet{},
		Allowlist: map[string]*AllowEntry{},
		Requests:  map[string]*Request{},
		Nonces:    map[string]string{},
		Outpoints: map[string]string{},
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
	fill := NewState()
	if st.Members == nil {
		st.Members = fill.Members
	}
	if st.Operators == nil {
		st.Operators = fill.Operators
	}
	if st.Rules == nil {
		st.Rules = fill.Rules
	}
	if st.Wallets == nil {
		st.Wallets = fill.Wallets
	}
	if st.Allowlist == nil {
		st.Allowlist = fill.Allowlist
	}
	if st.Requests == nil {
		st.Requests = fill.Requests
	}
	if st.Nonces == nil {
		st.Nonces = fill.Nonces
	}
	if st.Outpoints == nil {
		st.Outpoints = fill.Outpoints
	}
	return st, nil
}

// clone deep-copies a request through its JSON form, so callers outside the
// lock never share memory with the FSM.
func (r *Request) clone() *Request {
	b, err := json.Marshal(r)
	if err != nil {
		panic("ledger: request not serialisable: " + err.Error())
	}
	var c Request
	if err := json.Unmarshal(b, &c); err != nil {
		panic("ledger: request not serialisable: " + err.Error())
	}
	return &c
}
