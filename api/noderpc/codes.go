package noderpc

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
)

// Errors of the RPC itself, as the client returns them (wrapped in an
// *Error naming the peer, or around a transport error).
var (
	// ErrForbidden: the peer refused the caller (not a node certificate,
	// not of the node set, a node forwarding as another node, a sign
	// request from a node that is not the member's leader).
	ErrForbidden = errors.New("noderpc: forbidden")
	// ErrBadRequest: the peer could not decode the request (malformed,
	// unknown fields, too large, wrong method or path).
	ErrBadRequest = errors.New("noderpc: bad request")
	// ErrUnavailable: the peer cannot serve the endpoint now (no member on
	// that node, no status yet).
	ErrUnavailable = errors.New("noderpc: unavailable")
	// ErrInternal: the peer failed; its log says why.
	ErrInternal = errors.New("noderpc: internal error on the peer")
	// ErrUnreachable: no request reached the peer (no address for the node,
	// no connection, TLS refused); nothing happened there.
	ErrUnreachable = errors.New("noderpc: peer unreachable")
	// ErrNoLeader: the cluster has no leader known to this node yet.
	ErrNoLeader = errors.New("noderpc: no leader known")
	// ErrCreateRefused: the leader could not build the withdrawal asked
	// for (a destination or amount its chain refuses, not enough funds, an
	// unknown wallet or token); nothing was recorded. The message says
	// why.
	ErrCreateRefused = errors.New("noderpc: the leader refused to build the withdrawal")
)

// code is one error code of the wire: its sentinel and HTTP status.
type code struct {
	code   string
	err    error
	status int
}

// ledgerCodes carry the ledger's sentinels. The first match wins, so the
// codes a caller retries on come first.
var ledgerCodes = []code{
	{"ledger.not_leader", ledger.ErrNotLeader, http.StatusMisdirectedRequest},
	{"ledger.timeout", ledger.ErrTimeout, http.StatusGatewayTimeout},
	{"ledger.halted", ledger.ErrHalted, http.StatusServiceUnavailable},
	{"ledger.not_caught_up", ledger.ErrNotCaughtUp, http.StatusServiceUnavailable},
	{"ledger.invalid", ledger.ErrInvalid, http.StatusBadRequest},
	{"ledger.conflict", ledger.ErrConflict, http.StatusConflict},
	{"ledger.not_found", ledger.ErrNotFound, http.StatusConflict},
	{"ledger.wrong_status", ledger.ErrWrongStatus, http.StatusConflict},
	{"ledger.stale_leader", ledger.ErrStaleLeader, http.StatusConflict},
	{"ledger.stale_session", ledger.ErrStaleSession, http.StatusConflict},
	{"ledger.locked", ledger.ErrLocked, http.StatusConflict},
	{"ledger.allocated", ledger.ErrAllocated, http.StatusConflict},
	{"ledger.initiation", ledger.ErrInitiation, http.StatusConflict},
	{"ledger.replayed", ledger.ErrReplayed, http.StatusConflict},
	{"ledger.approval", ledger.ErrApproval, http.StatusConflict},
	{"ledger.quorum", ledger.ErrQuorum, http.StatusConflict},
	{"ledger.policy", ledger.ErrPolicy, http.StatusConflict},
	{"ledger.no_certified_base", ledger.ErrNoCertifiedBase, http.StatusConflict},
	{"ledger.genesis_mismatch", ledger.ErrGenesisMismatch, http.StatusConflict},
	{"ledger.not_in_node_set", ledger.ErrNotInNodeSet, http.StatusConflict},
}

// memberCodes carry a member's refusal (member.RefusalError): which check
// refused.
var memberCodes = []code{
	{"member.bad_claim", member.ErrBadClaim, http.StatusBadRequest},
	{"member.ledger_read", member.ErrLedgerRead, http.StatusConflict},
	{"member.unknown_request", member.ErrUnknownRequest, http.StatusConflict},
	{"member.claim_mismatch", member.ErrClaimMismatch, http.StatusConflict},
	{"member.wallet", member.ErrWallet, http.StatusConflict},
	{"member.quorum", member.ErrQuorum, http.StatusConflict},
	{"member.not_attested", member.ErrNotAttested, http.StatusConflict},
	{"member.ledger_clock", member.ErrLedgerClock, http.StatusConflict},
	{"member.initiation", member.ErrInitiation, http.StatusConflict},
	{"member.seen", member.ErrSeen, http.StatusConflict},
	{"member.policy", member.ErrPolicy, http.StatusConflict},
	{"member.payload", member.ErrPayload, http.StatusConflict},
	{"member.watermark", member.ErrWatermark, http.StatusConflict},
	{"member.share", member.ErrShare, http.StatusConflict},
	{"member.session", member.ErrSession, http.StatusConflict},
	{"member.signature", member.ErrSignature, http.StatusConflict},
	{"member.keygen", member.ErrKeygen, http.StatusConflict},
}

// rpcCodes are the RPC's own.
var rpcCodes = []code{
	{CodeBadRequest, ErrBadRequest, http.StatusBadRequest},
	{CodeTooLarge, ErrBadRequest, http.StatusRequestEntityTooLarge},
	{CodeNoRoute, ErrBadRequest, http.StatusNotFound},
	{CodeMethod, ErrBadRequest, http.StatusMethodNotAllowed},
	{CodeForbidden, ErrForbidden, http.StatusForbidden},
	{CodeUnavailable, ErrUnavailable, http.StatusServiceUnavailable},
	{CodeCreateRefused, ErrCreateRefused, http.StatusUnprocessableEntity},
	{CodeInternal, ErrInternal, http.StatusInternalServerError},
}

// Codes returns every error code the RPC answers with, for the docs and
// the tests.
func Codes() []string {
	var out []string
	for _, t := range [][]code{rpcCodes, ledgerCodes, memberCodes} {
		for _, c := range t {
			out = append(out, c.code)
		}
	}
	return out
}

func lookup(table []code, name string) (code, bool) {
	for _, c := range table {
		if c.code == name {
			return c, true
		}
	}
	return code{}, false
}

// rpcError is an error the server answers with its code.
type rpcError struct {
	code string
	msg  string
}

func (e *rpcError) Error() string { return e.msg }

func fail(c, format string, a ...any) error {
	return &rpcError{code: c, msg: fmt.Sprintf(format, a...)}
}

// encodeError turns a handler's error into the wire error and its status.
// Ledger and member errors keep their message (refusals about public
// ledger data, written for operators); anything else is internal and its
// text stays in the node's log (it reports internal=true).
func encodeError(err error) (we wireError, status int, internal bool) {
	var re *rpcError
	if errors.As(err, &re) {
		c, _ := lookup(rpcCodes, re.code)
		return wireError{Code: re.code, Message: re.msg}, c.status, re.code == CodeInternal
	}
	if errors.Is(err, ErrCreateRefused) {
		// A build refusal is about the caller's request (public data).
		return wireError{Code: CodeCreateRefused, Message: err.Error()}, http.StatusUnprocessableEntity, false
	}
	var ref *member.RefusalError
	if errors.As(err, &ref) {
		for _, c := range memberCodes {
			if errors.Is(ref.Err, c.err) {
				return wireError{Code: c.code, Message: ref.Err.Error()}, c.status, false
			}
		}
	}
	for _, c := range ledgerCodes {
		if errors.Is(err, c.err) {
			we := wireError{Code: c.code, Message: err.Error()}
			var nl *ledger.NotLeaderError
			if errors.As(err, &nl) {
				we.LeaderID, we.LeaderAddr = nl.LeaderID, nl.LeaderAddr
			}
			return we, c.status, false
		}
	}
	return wireError{Code: CodeInternal, Message: "noderpc: internal error (see the node's log)"}, http.StatusInternalServerError, true
}

// Error is an error a peer answered with: its code, message and the
// sentinel the code stands for (errors.Is(err, ledger.ErrConflict),
// errors.As(err, &notLeader) with a *ledger.NotLeaderError, ErrForbidden,
// ...). A member's refusal arrives as a *member.RefusalError wrapping an
// *Error.
type Error struct {
	// Peer is the node that answered.
	Peer pki.NodeID
	// Status is the HTTP status.
	Status int
	// Code is the stable error code (docs/noderpc.md).
	Code string
	// Message is the peer's message.
	Message string
	// Index is the log index of a refused command, when it has one.
	Index uint64

	sentinel error
}

func (e *Error) Error() string {
	return fmt.Sprintf("noderpc: %s answered %s: %s", e.Peer, e.Code, e.Message)
}

// Unwrap returns the sentinel of the code (nil for a code this build does
// not know); for ledger.not_leader a *ledger.NotLeaderError naming the
// leader the peer knows.
func (e *Error) Unwrap() error { return e.sentinel }

// decodeError rebuilds a peer's error; requestID names the request of a
// sign call (a member refusal), empty otherwise.
func decodeError(peer pki.NodeID, status int, we wireError, requestID string) error {
	e := &Error{Peer: peer, Status: status, Code: we.Code, Message: we.Message, Index: we.Index}
	if c, ok := lookup(ledgerCodes, we.Code); ok {
		e.sentinel = c.err
		if c.err == ledger.ErrNotLeader {
			e.sentinel = &ledger.NotLeaderError{LeaderID: we.LeaderID, LeaderAddr: we.LeaderAddr}
		}
		return e
	}
	if c, ok := lookup(memberCodes, we.Code); ok {
		e.sentinel = c.err
		return &member.RefusalError{Member: peer, RequestID: requestID, Err: e}
	}
	if c, ok := lookup(rpcCodes, we.Code); ok {
		e.sentinel = c.err
	}
	return e
}
