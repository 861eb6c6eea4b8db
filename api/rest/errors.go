package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/custody-dev/custody/ledger"
)

// Error codes of the backend API (docs/api.md). They are stable: a
// client branches on the code, never on the message.
const (
	CodeMalformed         = "malformed"              // 400: not one JSON object of the schema (unknown field, wrong type, trailing data)
	CodeInvalid           = "invalid"                // 400: a field's value is not acceptable (field names it)
	CodeIdempotencyKey    = "idempotency_key"        // 400: Idempotency-Key differs from the body's id
	CodeUnknownWallet     = "unknown_wallet"         // 400: no such wallet, or not usable for withdrawals
	CodeUnknownAsset      = "unknown_asset"          // 400: the rules declare no such asset, or not on the wallet's chain
	CodeInvalidAddress    = "invalid_address"        // 400: not an address of the wallet's chain and network (checksum included)
	CodeAddressCase       = "address_not_canonical"  // 400: a valid address not in its canonical spelling (EIP-55)
	CodeAmountMalformed   = "amount_malformed"       // 400
	CodeAmountNegative    = "amount_negative"        // 400
	CodeAmountZero        = "amount_zero"            // 400
	CodeAmountTooPrecise  = "amount_too_precise"     // 400: more decimals than the asset has
	CodeAmountTooLarge    = "amount_too_large"       // 400
	CodeInvalidInitiation = "invalid_initiation"     // 400: the initiation is not a valid signed initiate statement for this withdrawal
	CodeUnauthenticated   = "unauthenticated"        // 401: no client certificate of the cluster CA valid by the node's clock
	CodePrincipalInactive = "principal_inactive"     // 401: the certificate's principal is not an active registry entry of its kind (suspended, never enrolled)
	CodeForbidden         = "forbidden"              // 403: the certificate's role may not use this endpoint
	CodeInitiatorMismatch = "initiator_mismatch"     // 403: the initiation is signed by another principal's device
	CodeNotFound          = "not_found"              // 404
	CodeMethod            = "method_not_allowed"     // 405
	CodeConflict          = "conflict"               // 409: the id exists with another withdrawal (field names the first difference)
	CodeLedgerRefused     = "ledger_refused"         // 409: the ledger refused the create (message says why)
	CodeTooLarge          = "too_large"              // 413
	CodeMediaType         = "unsupported_media_type" // 415
	CodeRateLimited       = "rate_limited"           // 429 + Retry-After: the principal's rate limit on this node
	CodeBuildRefused      = "build_refused"          // 422: the leader cannot build it (funds, chain); nothing recorded
	CodeInternal          = "internal"               // 500
	CodeUnavailable       = "unavailable"            // 503 + Retry-After: no leader, or the outcome is unknown (retry with the same id)
)

// Codes are every code the API answers with and its HTTP status, for the
// docs and the tests.
func Codes() map[string]int {
	m := map[string]int{
		CodeMalformed: 400, CodeInvalid: 400, CodeIdempotencyKey: 400, CodeUnknownWallet: 400, CodeUnknownAsset: 400,
		CodeInvalidAddress: 400, CodeAddressCase: 400, CodeAmountMalformed: 400, CodeAmountNegative: 400, CodeAmountZero: 400,
		CodeAmountTooPrecise: 400, CodeAmountTooLarge: 400, CodeInvalidInitiation: 400, CodeUnauthenticated: 401,
		CodePrincipalInactive: 401, CodeRateLimited: 429, CodeForbidden: 403, CodeInitiatorMismatch: 403, CodeNotFound: 404, CodeMethod: 405, CodeConflict: 409,
		CodeLedgerRefused: 409, CodeTooLarge: 413, CodeMediaType: 415, CodeBuildRefused: 422, CodeInternal: 500,
		CodeUnavailable: 503,
	}
	maps.Copy(m, operatorCodes())
	return m
}

// apiError is an answer other than success.
type apiError struct {
	status int
	code   string
	field  string
	msg    string
	// public: msg may be shown (caller mistakes, ledger refusals about
	// public ledger data); otherwise a fixed message, the cause only in
	// the log.
	public bool
	// retryAfter is the Retry-After of a 429 (a 503's is the server's).
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

func (e *apiError) message() string {
	if e.public {
		return e.msg
	}
	switch e.code {
	case CodeUnavailable:
		return "no leader answered or the outcome is unknown; retry (with the same id)"
	default:
		return "internal error (see the node's log)"
	}
}

func apiErr(status int, code, field, format string, a ...any) error {
	return &apiError{status: status, code: code, field: field, msg: fmt.Sprintf(format, a...), public: true}
}

// toError maps a handler's or the service's error to the answer.
func toError(err error) *apiError {
	var e *apiError
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, ledger.ErrNotLeader), errors.Is(err, ledger.ErrTimeout), errors.Is(err, ledger.ErrHalted),
		errors.Is(err, ledger.ErrNotCaughtUp), errors.Is(err, ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, msg: err.Error()}
	case errors.Is(err, ledger.ErrInitiation):
		return &apiError{status: http.StatusBadRequest, code: CodeInvalidInitiation, field: "initiation", msg: err.Error(), public: true}
	case errors.Is(err, ErrRefused):
		return &apiError{status: http.StatusUnprocessableEntity, code: CodeBuildRefused, msg: err.Error(), public: true}
	case errors.Is(err, ledger.ErrInvalid):
		return &apiError{status: http.StatusBadRequest, code: CodeInvalid, msg: err.Error(), public: true}
	case errors.Is(err, ledger.ErrConflict), errors.Is(err, ledger.ErrLocked),
		errors.Is(err, ledger.ErrAllocated), errors.Is(err, ledger.ErrPolicy), errors.Is(err, ledger.ErrWrongStatus):
		return &apiError{status: http.StatusConflict, code: CodeLedgerRefused, msg: err.Error(), public: true}
	}
	return &apiError{status: http.StatusInternalServerError, code: CodeInternal, msg: err.Error()}
}

// errorBody is the one error shape.
type errorBody struct {
	Error wireError `json:"error"`
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error (see the node's log)"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
