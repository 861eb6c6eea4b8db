package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// CommandVersion is the only envelope version this build applies. A log entry
// with any other version halts the node (see [ErrHalted]).
const CommandVersion = 1

// Command types. Adding one is a protocol change: bump nothing, but every node
// must run a build that knows it before any leader proposes it.
const (
	CmdMemberSet      = "member.set"
	CmdMemberRemove   = "member.remove"
	CmdOperatorEnroll = "operator.enroll"
	CmdOperatorRevoke = "operator.revoke"
	CmdDeviceAdd      = "device.add"
	CmdDeviceRevoke   = "device.revoke"
	CmdRulesSet       = "rules.set"
	CmdWalletSet      = "wallet.set"
	CmdAllowAdd       = "allowlist.add"
	CmdAllowRemove    = "allowlist.remove"
	CmdLock           = "lock"
	CmdUnlock         = "unlock"
	CmdRequestCreate  = "request.create"
	CmdApprove        = "request.approve"
	CmdClaim          = "request.claim"
	CmdResult         = "request.result"
	CmdExpire         = "request.expire"
	CmdColdExport     = "cold.export"
	CmdColdImport     = "cold.import"
)

// Envelope is the log entry format: JSON {v, type, time, actor, payload}.
// Time is set by the proposing leader; Apply never reads a clock.
type Envelope struct {
	V       int             `json:"v"`
	Type    string          `json:"type"`
	Time    time.Time       `json:"time"`
	Actor   string          `json:"actor"`
	Payload json.RawMessage `json:"payload"`
}

// EncodeCommand builds a log entry.
func EncodeCommand(typ, actor string, now time.Time, payload any) ([]byte, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode %s: %w", typ, err)
	}
	return json.Marshal(Envelope{V: CommandVersion, Type: typ, Time: now.UTC(), Actor: actor, Payload: p})
}

// decodeStrict parses JSON refusing unknown fields and trailing data: a field
// this build does not know means the entry was written by a newer protocol.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// MemberSet records a raft voter (after the raft configuration change).
type MemberSet struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// MemberRemove records a removed voter.
type MemberRemove struct {
	ID string `json:"id"`
}

// OperatorEnroll enrolls an operator with a first device.
type OperatorEnroll struct {
	ID     string   `json:"id"`
	Roles  []string `json:"roles"`
	Device string   `json:"device"`
	Key    []byte   `json:"key"`
}

// OperatorRevoke revokes an operator; their approvals stop counting.
type OperatorRevoke struct {
	ID string `json:"id"`
}

// DeviceAdd adds a device to an enrolled operator.
type DeviceAdd struct {
	Operator string `json:"operator"`
	Device   string `json:"device"`
	Key      []byte `json:"key"`
}

// DeviceRevoke revokes one device; approvals made with it stop counting.
type DeviceRevoke struct {
	Operator string `json:"operator"`
	Device   string `json:"device"`
}

// RulesSet stores a policy document and makes it active.
type RulesSet struct {
	Body []byte `json:"body"`
}

// WalletSet creates or replaces a wallet's description.
type WalletSet struct {
	Wallet
}

// AllowAdd adds a destination, effective after the cooling-off the leader
// computed (EffectiveAt).
type AllowAdd struct {
	Wallet      string    `json:"wallet"`
	Address     string    `json:"address"`
	Label       string    `json:"label,omitempty"`
	EffectiveAt time.Time `json:"effective_at"`
}

// AllowRemove removes a destination immediately.
type AllowRemove struct {
	Wallet  string `json:"wallet"`
	Address string `json:"address"`
}

// LockCmd locks the account.
type LockCmd struct {
	Reason string `json:"reason"`
}

// UnlockCmd unlocks the account.
type UnlockCmd struct{}

// RequestCreate submits a withdrawal. The leader built the payload (unsigned
// transaction), allocated Nonce or chose Outpoints; the FSM records them and
// refuses a second allocation.
type RequestCreate struct {
	ID          string    `json:"id"`
	Wallet      string    `json:"wallet"`
	Destination string    `json:"destination,omitempty"`
	Amount      string    `json:"amount,omitempty"`
	Payload     []byte    `json:"payload"`
	PayloadHash string    `json:"payload_hash"`
	Nonce       *uint64   `json:"nonce,omitempty"`
	Outpoints   []string  `json:"outpoints,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// Approve records one operator's approval or rejection.
type Approve struct {
	RequestID string    `json:"request_id"`
	Operator  string    `json:"operator"`
	Device    string    `json:"device"`
	Reject    bool      `json:"reject,omitempty"`
	Signature []byte    `json:"signature"`
	Expiry    time.Time `json:"expiry"`
}

// ClaimCmd is the compare-and-set claim of a signing session. Term is the
// proposer's raft term when it built the command; an entry committed in any
// other term was proposed by a deposed leader and is refused.
type ClaimCmd struct {
	RequestID    string `json:"request_id"`
	ExpectStatus Status `json:"expect_status"`
	SessionID    string `json:"session_id"`
	Term         uint64 `json:"term"`
}

// ResultCmd records the outcome of the session named by SessionID.
type ResultCmd struct {
	RequestID string `json:"request_id"`
	SessionID string `json:"session_id"`
	Signed    []byte `json:"signed,omitempty"`
	TxHash    string `json:"tx_hash,omitempty"`
	Error     string `json:"error,omitempty"`
}

// ExpireCmd expires a request whose ExpiresAt passed.
type ExpireCmd struct {
	RequestID string `json:"request_id"`
}

// ColdExport marks an approved cold request as exported in a bundle.
type ColdExport struct {
	RequestID  string `json:"request_id"`
	BundleHash string `json:"bundle_hash"`
}

// ColdImport records the offline-signed transaction.
type ColdImport struct {
	RequestID string `json:"request_id"`
	Signed    []byte `json:"signed"`
	TxHash    string `json:"tx_hash,omitempty"`
}
