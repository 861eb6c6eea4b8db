package noderpc

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// Paths of the node RPC, version 1. A changed wire format gets new paths.
const (
	PathSubmit     = "/node/v1/submit"
	PathReadIndex  = "/node/v1/read-index"
	PathSign       = "/node/v1/sign"
	PathStatus     = "/node/v1/status"
	PathKeygen     = "/node/v1/keygen"
	PathTestSign   = "/node/v1/test-sign"
	PathRequest    = "/node/v1/request"
	PathWallet     = "/node/v1/wallet"
	PathReshare    = "/node/v1/reshare"
	PathWalletInfo = "/node/v1/wallet-info"
	// PathWithdrawals creates a backend's withdrawal on the leader
	// (a follower's backend API forwards it).
	PathWithdrawals = "/node/v1/withdrawals"
)

// MaxBody bounds a request body (a forwarded command with its transaction
// payload and approvals). A larger body is refused with 413 unread.
const MaxBody = 4 << 20

// maxResponse bounds a response body the client reads: an outcome carries
// the request, whose payload came in a body of at most MaxBody.
const maxResponse = 2 * MaxBody

// submitRequest is the body of POST PathSubmit: a ledger command by type
// and payload (json.Marshal of the command: ledger.DecodeCommand's input),
// on behalf of actor.
type submitRequest struct {
	Actor   string          `json:"actor"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// submitResponse is a ledger.Outcome.
type submitResponse struct {
	Index    uint64          `json:"index"`
	Existing bool            `json:"existing"`
	Request  *ledger.Request `json:"request"`
}

// readIndexResponse is the answer of GET PathReadIndex.
type readIndexResponse struct {
	Index uint64 `json:"index"`
}

// signRequest is the body of POST PathSign: member.Member.SignClaimed's
// arguments, the 32-byte values in hex.
type signRequest struct {
	RequestID string    `json:"request_id"`
	Claim     wireClaim `json:"claim"`
}

type wireClaim struct {
	SessionID   string       `json:"session_id"`
	Index       uint64       `json:"index"`
	Signers     []pki.NodeID `json:"signers"`
	PayloadHash quorum.Hash  `json:"payload_hash"`
	Digest      string       `json:"digest"`
}

// signResponse is a member.Signed.
type signResponse struct {
	RequestID string `json:"request_id"`
	SessionID string `json:"session_id"`
	Raw       []byte `json:"raw"`
	TxHash    string `json:"tx_hash"`
	Signature []byte `json:"signature,omitempty"`
}

// keygenRequest is the body of POST PathKeygen: member.Member.Keygen's
// arguments (session in hex).
type keygenRequest struct {
	Wallet  string `json:"wallet"`
	Session string `json:"session"`
}

// keygenResponse is a member.KeygenResult.
type keygenResponse struct {
	Wallet      string               `json:"wallet"`
	Session     string               `json:"session"`
	PubKey      []byte               `json:"pubkey"`
	Attestation ledger.CheckpointSig `json:"attestation"`
}

// testSignRequest is the body of POST PathTestSign: member.Member.TestSign's
// arguments.
type testSignRequest struct {
	Wallet  string       `json:"wallet"`
	PubKey  []byte       `json:"pubkey"`
	Session string       `json:"session"`
	Signers []pki.NodeID `json:"signers"`
}

// testSignResponse is the test signature, r || s || v.
type testSignResponse struct {
	Signature []byte `json:"signature"`
}

// reshareRequest is the body of POST PathReshare: member.Member.Reshare's
// arguments (session in hex).
type reshareRequest struct {
	Wallet     string       `json:"wallet"`
	Session    string       `json:"session"`
	OldSigners []pki.NodeID `json:"old_signers"`
	OldMembers []tss.Party  `json:"old_members"`
}

// reshareResponse is a member.ReshareResult (attestation absent from a
// member that only leaves).
type reshareResponse struct {
	Wallet      string                `json:"wallet"`
	Session     string                `json:"session"`
	PubKey      []byte                `json:"pubkey"`
	Attestation *ledger.CheckpointSig `json:"attestation,omitempty"`
}

// walletRequest is the body of POST PathWalletInfo.
type walletRequest struct {
	Wallet string `json:"wallet"`
}

// decodeReshare parses a reshare body strictly.
func decodeReshare(body []byte) (reshareRequest, tss.SessionID, error) {
	var req reshareRequest
	if err := decodeStrict(body, &req); err != nil {
		return req, tss.SessionID{}, err
	}
	if req.Wallet == "" || len(req.OldSigners) == 0 {
		return req, tss.SessionID{}, errors.New("wallet and old signers are required")
	}
	sid, err := parse32("session", req.Session)
	return req, sid, err
}

// decodeWallet parses a wallet-info body strictly.
func decodeWallet(body []byte) (string, error) {
	var req walletRequest
	if err := decodeStrict(body, &req); err != nil {
		return "", err
	}
	if req.Wallet == "" {
		return "", errors.New("wallet is required")
	}
	return req.Wallet, nil
}

// decodeKeygen parses a keygen body strictly.
func decodeKeygen(body []byte) (string, tss.SessionID, error) {
	var req keygenRequest
	if err := decodeStrict(body, &req); err != nil {
		return "", tss.SessionID{}, err
	}
	if req.Wallet == "" {
		return "", tss.SessionID{}, errors.New("wallet is required")
	}
	sid, err := parse32("session", req.Session)
	return req.Wallet, sid, err
}

// decodeTestSign parses a test-sign body strictly.
func decodeTestSign(body []byte) (testSignRequest, tss.SessionID, error) {
	var req testSignRequest
	if err := decodeStrict(body, &req); err != nil {
		return req, tss.SessionID{}, err
	}
	if req.Wallet == "" || len(req.PubKey) == 0 || len(req.Signers) == 0 {
		return req, tss.SessionID{}, errors.New("wallet, pubkey and signers are required")
	}
	sid, err := parse32("session", req.Session)
	return req, sid, err
}

// errorBody is the one error shape of every endpoint.
type errorBody struct {
	Error wireError `json:"error"`
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// LeaderID and LeaderAddr come with CodeNotLeader (when a leader is
	// known), Index with a refusal that has a log index.
	LeaderID   pki.NodeID `json:"leader_id,omitempty"`
	LeaderAddr string     `json:"leader_addr,omitempty"`
	Index      uint64     `json:"index,omitempty"`
}

func toWireClaim(c member.Claim) wireClaim {
	return wireClaim{SessionID: hex.EncodeToString(c.SessionID[:]), Index: c.Index, Signers: c.Signers,
		PayloadHash: c.PayloadHash, Digest: hex.EncodeToString(c.Digest[:])}
}

func (w wireClaim) claim() (member.Claim, error) {
	sid, err := parse32("claim.session_id", w.SessionID)
	if err != nil {
		return member.Claim{}, err
	}
	dig, err := parse32("claim.digest", w.Digest)
	if err != nil {
		return member.Claim{}, err
	}
	return member.Claim{SessionID: sid, Index: w.Index, Signers: w.Signers, PayloadHash: w.PayloadHash, Digest: dig}, nil
}

// parse32 reads exactly 64 hex digits.
func parse32(field, s string) ([32]byte, error) {
	var b [32]byte
	if len(s) != 2*len(b) {
		return b, fmt.Errorf("%s: want %d hex digits, got %d characters", field, 2*len(b), len(s))
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return [32]byte{}, fmt.Errorf("%s: not hex", field)
	}
	return b, nil
}

// decodeSubmit parses a submit body strictly and decodes its command.
func decodeSubmit(body []byte) (actor string, cmd ledger.Command, err error) {
	var req submitRequest
	if err := decodeStrict(body, &req); err != nil {
		return "", nil, err
	}
	if req.Actor == "" {
		return "", nil, errors.New("actor is required")
	}
	if req.Type == "" || len(req.Payload) == 0 {
		return "", nil, errors.New("type and payload are required")
	}
	cmd, err = ledger.DecodeCommand(req.Type, req.Payload)
	if err != nil {
		return "", nil, err
	}
	return req.Actor, cmd, nil
}

// decodeSign parses a sign body strictly.
func decodeSign(body []byte) (string, member.Claim, error) {
	var req signRequest
	if err := decodeStrict(body, &req); err != nil {
		return "", member.Claim{}, err
	}
	if req.RequestID == "" {
		return "", member.Claim{}, errors.New("request_id is required")
	}
	c, err := req.Claim.claim()
	if err != nil {
		return "", member.Claim{}, err
	}
	return req.RequestID, c, nil
}

// decodeStrict parses exactly one JSON value into v: unknown fields and
// anything after the value are refused.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed JSON: data after the value")
	}
	return nil
}

// Error codes of the RPC itself (the ledger's and the member's are in
// codes.go).
const (
	CodeBadRequest  = "rpc.bad_request"
	CodeTooLarge    = "rpc.too_large"
	CodeForbidden   = "rpc.forbidden"
	CodeNoRoute     = "rpc.no_route"
	CodeMethod      = "rpc.method"
	CodeUnavailable = "rpc.unavailable"
	CodeInternal    = "rpc.internal"
	// CodeCreateRefused is ErrCreateRefused (422).
	CodeCreateRefused = "rpc.create_refused"
)

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"rpc.internal","message":"noderpc: cannot encode the response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// RequestView is GET PathRequest?id=: a request as the answering node's
// own replica holds it (not a linearizable read: compare StateIndex with
// the leader's), with the tss sessions its ledger granted for it.
type RequestView struct {
	StateIndex uint64          `json:"state_index"`
	Request    *ledger.Request `json:"request"`
	Sessions   []string        `json:"sessions"`
}

// WalletView is GET PathWallet?id=: a wallet as the answering node's own
// replica holds it.
type WalletView struct {
	StateIndex uint64         `json:"state_index"`
	Wallet     *ledger.Wallet `json:"wallet"`
}

// Withdrawal is a backend's withdrawal as the leader builds it: the
// backend API's request with its amount in base units of the asset and
// the backend principal's signed initiation, which travels into the
// ledger unchanged.
type Withdrawal struct {
	ID     string        `json:"id"`
	Wallet string        `json:"wallet"`
	Asset  string        `json:"asset"`
	To     string        `json:"to"`
	Amount amount.Amount `json:"amount"`
	// ExpiresAt is the request's expiry (required: the ledger refuses a
	// request without one).
	ExpiresAt  time.Time       `json:"expires_at"`
	Initiation quorum.Approval `json:"initiation"`
	// Note is the initiator's note, part of the signed intent.
	Note string `json:"note,omitempty"`
}

// createRequest is the body of POST PathWithdrawals: the withdrawal and
// the backend principal the forwarding node authenticated (a label in the
// audit log; the initiation's signature is what the ledger checks).
type createRequest struct {
	Principal  string     `json:"principal"`
	Withdrawal Withdrawal `json:"withdrawal"`
}

// createResponse is the answer of POST PathWithdrawals: the request as
// recorded (a policy denial included) and whether it existed before.
type createResponse struct {
	Request  *ledger.Request `json:"request"`
	Existing bool            `json:"existing"`
}

// decodeCreate parses a create body strictly.
func decodeCreate(body []byte) (string, Withdrawal, error) {
	var req createRequest
	if err := decodeStrict(body, &req); err != nil {
		return "", Withdrawal{}, err
	}
	w := req.Withdrawal
	if req.Principal == "" || w.ID == "" || w.Wallet == "" || w.Asset == "" || w.To == "" {
		return "", Withdrawal{}, errors.New("principal, id, wallet, asset and to are required")
	}
	if w.Amount.Sign() <= 0 || w.ExpiresAt.IsZero() {
		return "", Withdrawal{}, errors.New("a positive amount and an expiry are required")
	}
	if w.Initiation.Decision != quorum.Initiate || w.Initiation.DeviceID == "" || len(w.Initiation.Signature) == 0 {
		return "", Withdrawal{}, errors.New("the initiator's signed initiate statement is required")
	}
	return req.Principal, w, nil
}
