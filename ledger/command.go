package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// CommandVersion is the only envelope version this build applies. A log entry
// with any other version halts the node (see [ErrHalted]).
const CommandVersion = 1

// Command types. Adding one is a protocol change: every node must run a build
// that knows it before any leader proposes it (an unknown type halts a node).
const (
	CmdGenesis        = "genesis"
	CmdMemberSet      = "member.set"
	CmdMemberRemove   = "member.remove"
	CmdRegistryChange = "registry.change"
	CmdPolicyChange   = "policy.change"
	CmdRulesSet       = "rules.set"
	CmdWalletSet      = "wallet.set"
	CmdRequestCreate  = "request.create"
	CmdApprove        = "request.approve"
	CmdClaim          = "request.claim"
	CmdReclaim        = "request.reclaim"
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

// Genesis initialises an empty ledger from the cluster's init ceremony: the
// first registry (see [quorum.NewRegistry]) and rules file. Refused once the
// ledger has a registry.
type Genesis struct {
	ClusterID   string            `json:"cluster_id"`
	AdminQuorum int               `json:"admin_quorum"`
	Operators   []quorum.Operator `json:"operators"`
	Devices     []quorum.Device   `json:"devices"`
	Rules       []byte            `json:"rules"`
}

// RegistryChange applies a quorum-approved registry change
// ([quorum.Registry.Apply]).
type RegistryChange struct {
	Change    quorum.Change     `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
}

// PolicyChange applies an approved allowlist or lock change
// ([policy.State.Apply]). The leader canonicalised the address first.
type PolicyChange struct {
	Change    policy.Change     `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
}

// RulesSet replaces the rules with Body after the admin quorum approved it
// ([policy.AuthorizeRulesChange]) under change ID.
type RulesSet struct {
	ID        string            `json:"id"`
	Body      []byte            `json:"body"`
	Approvals []quorum.Approval `json:"approvals"`
}

// WalletSet records a wallet created by a key ceremony (system command from
// the node runtime after keygen).
type WalletSet struct {
	Wallet
}

// RequestCreate submits a withdrawal. The leader built the payload (unsigned
// transaction), derived the policy view (asset, canonical destination,
// amount), allocated Nonce or chose Outpoints; the FSM evaluates policy and
// records them, refusing a second allocation. The envelope's actor is the
// initiator.
type RequestCreate struct {
	ID          string        `json:"id"`
	Wallet      string        `json:"wallet"`
	Asset       string        `json:"asset"`
	Chain       string        `json:"chain"`
	Network     string        `json:"network"`
	To          string        `json:"to"`
	Amount      amount.Amount `json:"amount"`
	Payload     []byte        `json:"payload"`
	PayloadHash quorum.Hash   `json:"payload_hash"`
	Nonce       *uint64       `json:"nonce,omitempty"`
	Outpoints   []string      `json:"outpoints,omitempty"`
	ExpiresAt   time.Time     `json:"expires_at"`
}

// Approve records one operator's signed approval or rejection.
type Approve struct {
	RequestID string          `json:"request_id"`
	Approval  quorum.Approval `json:"approval"`
}

// ClaimCmd is the compare-and-set claim of a signing session. Term is the
// proposer's raft term when it built the command; an entry committed in any
// other term was proposed by a deposed leader and is refused. Signers names
// the nodes that run the session: distinct members of the wallet's
// committee, at least threshold+1 of them (any such set can sign; more than
// threshold+1 only adds parties that can abort).
type ClaimCmd struct {
	RequestID    string   `json:"request_id"`
	ExpectStatus Status   `json:"expect_status"`
	SessionID    string   `json:"session_id"`
	Term         uint64   `json:"term"`
	Signers      []string `json:"signers"`
}

// ReclaimCmd grants a new signing session to a request whose session failed:
// same payload, same nonce/outpoints, a fresh SessionID and signer set. It is
// a compare-and-set on the failed claim: FailedSession must be the session
// of the request's current (failed) claim, so two leaders retrying the same
// failure cannot both win; Term fences a deposed leader as for a claim.
type ReclaimCmd struct {
	RequestID     string   `json:"request_id"`
	FailedSession string   `json:"failed_session"`
	SessionID     string   `json:"session_id"`
	Term          uint64   `json:"term"`
	Signers       []string `json:"signers"`
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
