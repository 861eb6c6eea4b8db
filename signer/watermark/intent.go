package watermark

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kinds of one-time resources a Key can name.
const (
	// KindETHNonce is an Ethereum account nonce: Scope "<wallet>/<chainID>",
	// ID the decimal nonce.
	KindETHNonce = "eth-nonce"
	// KindBTCOutpoint is a Bitcoin outpoint: Scope "<wallet>", ID
	// "<txid>:<vout>" with the txid in lowercase hex as displayed by RPCs.
	KindBTCOutpoint = "btc-outpoint"
	// KindRequest appears only in a ConflictError, naming a request ID that
	// was reserved for a different message. It is not valid in Intent.Keys.
	KindRequest = "request"
)

// Limits on the sizes of what is recorded. They bound a record and keep
// what a human reads in a conflict short.
const (
	maxIDLen   = 255  // request ID
	maxKeys    = 4096 // one-time resources in one intent (BTC inputs)
	maxWallet  = 128
	digestSize = 32
)

// Errors a caller branches on.
var (
	// ErrConflict: the intent names a request ID or one-time resource this
	// node already reserved for a different message. The node must not sign.
	// The concrete error is a *ConflictError.
	ErrConflict = errors.New("watermark: conflict with an earlier reservation")
	// ErrCorrupt: the log holds a damaged record before its end, or a
	// sequence of records that could not have been written. Open refuses to
	// continue; a human must look. The concrete error is a *CorruptError.
	ErrCorrupt = errors.New("watermark: log corrupted")
	// ErrLocked: another Store (in this or another process) holds the
	// directory.
	ErrLocked = errors.New("watermark: directory locked by another store")
	// ErrInvalidIntent: the intent or key is malformed; nothing was recorded.
	ErrInvalidIntent = errors.New("watermark: invalid intent")
	// ErrUnknownTicket: Complete was given a ticket this store did not issue
	// (unknown request, or its digest or payload hash differ).
	ErrUnknownTicket = errors.New("watermark: unknown ticket")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("watermark: store closed")
	// ErrFailed: an earlier write or fsync failed; the Store refuses further
	// work until it is reopened.
	ErrFailed = errors.New("watermark: store failed, reopen required")
)

// Key names a one-time resource: signing two different messages that spend
// it would be a double spend. Build keys with ETHNonceKey and BTCOutpointKey;
// Reserve refuses non-canonical spellings so that one resource has exactly
// one Key.
type Key struct {
	Kind  string
	Scope string
	ID    string
}

// String returns "kind scope/id" for logs and errors.
func (k Key) String() string {
	if k.Kind == KindRequest {
		return fmt.Sprintf("request %q", k.ID)
	}
	return fmt.Sprintf("%s %s/%s", k.Kind, k.Scope, k.ID)
}

func (k Key) compare(o Key) int {
	if c := strings.Compare(k.Kind, o.Kind); c != 0 {
		return c
	}
	if c := strings.Compare(k.Scope, o.Scope); c != 0 {
		return c
	}
	return strings.Compare(k.ID, o.ID)
}

// ETHNonceKey names nonce of wallet's account on chainID. wallet is the
// custody wallet ID as recorded in the ledger.
func ETHNonceKey(wallet string, chainID, nonce uint64) Key {
	return Key{
		Kind:  KindETHNonce,
		Scope: wallet + "/" + strconv.FormatUint(chainID, 10),
		ID:    strconv.FormatUint(nonce, 10),
	}
}

// BTCOutpointKey names the outpoint txid:vout spent by wallet. txid is the
// transaction ID in the usual display (byte-reversed) lowercase hex.
func BTCOutpointKey(wallet, txid string, vout uint32) Key {
	return Key{
		Kind:  KindBTCOutpoint,
		Scope: wallet,
		ID:    txid + ":" + strconv.FormatUint(uint64(vout), 10),
	}
}

// Validate reports whether k is a canonical key of a known kind.
func (k Key) Validate() error {
	switch k.Kind {
	case KindETHNonce:
		i := strings.LastIndexByte(k.Scope, '/')
		if i < 0 {
			return fmt.Errorf("%w: %s: scope must be <wallet>/<chainID>", ErrInvalidIntent, k.Kind)
		}
		if err := validWallet(k.Scope[:i]); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidIntent, k.Kind, err)
		}
		if !canonicalUint(k.Scope[i+1:], 64) {
			return fmt.Errorf("%w: %s: chain ID %q is not a canonical decimal", ErrInvalidIntent, k.Kind, k.Scope[i+1:])
		}
		if !canonicalUint(k.ID, 64) {
			return fmt.Errorf("%w: %s: nonce %q is not a canonical decimal", ErrInvalidIntent, k.Kind, k.ID)
		}
	case KindBTCOutpoint:
		if err := validWallet(k.Scope); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidIntent, k.Kind, err)
		}
		txid, vout, ok := strings.Cut(k.ID, ":")
		if !ok || !lowerHex(txid, 64) {
			return fmt.Errorf("%w: %s: id %q is not <64 lowercase hex>:<vout>", ErrInvalidIntent, k.Kind, k.ID)
		}
		if !canonicalUint(vout, 32) {
			return fmt.Errorf("%w: %s: vout %q is not a canonical decimal", ErrInvalidIntent, k.Kind, vout)
		}
	default:
		return fmt.Errorf("%w: unknown key kind %q", ErrInvalidIntent, k.Kind)
	}
	return nil
}

// validWallet: 1..128 bytes of printable ASCII without spaces.
func validWallet(s string) error {
	if len(s) == 0 || len(s) > maxWallet {
		return fmt.Errorf("wallet length %d not in 1..%d", len(s), maxWallet)
	}
	return printable(s)
}

// validRequestID: 1..255 bytes of printable ASCII without spaces, the same
// alphabet the ledger accepts.
func validRequestID(s string) error {
	if len(s) == 0 || len(s) > maxIDLen {
		return fmt.Errorf("%w: request ID length %d not in 1..%d", ErrInvalidIntent, len(s), maxIDLen)
	}
	if err := printable(s); err != nil {
		return fmt.Errorf("%w: request ID: %v", ErrInvalidIntent, err)
	}
	return nil
}

func printable(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return fmt.Errorf("byte 0x%02x at %d is not printable ASCII", s[i], i)
		}
	}
	return nil
}

// canonicalUint: decimal digits, no sign, no leading zero, fits in bits.
func canonicalUint(s string, bits int) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	_, err := strconv.ParseUint(s, 10, bits)
	return err == nil
}

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Intent is what a node is about to sign.
type Intent struct {
	// RequestID is the ledger's request ID (the backend's idempotency key).
	RequestID string
	// Digest is the exact hash the signing session signs. For a message
	// signed under several hashes (a BTC transaction with several inputs)
	// use DigestOf over them in input order.
	Digest [32]byte
	// PayloadHash is the hash of the approved unsigned payload.
	PayloadHash [32]byte
	// Keys are the one-time resources the signature spends; at least one.
	// Order does not matter; duplicates are refused.
	Keys []Key
}

// normalize validates in and returns a copy with its keys sorted, the form
// that is compared and recorded.
func (in Intent) normalize() (Intent, error) {
	if err := validRequestID(in.RequestID); err != nil {
		return Intent{}, err
	}
	if in.Digest == ([32]byte{}) {
		return Intent{}, fmt.Errorf("%w: zero digest", ErrInvalidIntent)
	}
	if in.PayloadHash == ([32]byte{}) {
		return Intent{}, fmt.Errorf("%w: zero payload hash", ErrInvalidIntent)
	}
	if len(in.Keys) == 0 || len(in.Keys) > maxKeys {
		return Intent{}, fmt.Errorf("%w: %d keys, want 1..%d", ErrInvalidIntent, len(in.Keys), maxKeys)
	}
	keys := slices.Clone(in.Keys)
	slices.SortFunc(keys, Key.compare)
	for i, k := range keys {
		if err := k.Validate(); err != nil {
			return Intent{}, err
		}
		if i > 0 && keys[i-1] == k {
			return Intent{}, fmt.Errorf("%w: duplicate key %s", ErrInvalidIntent, k)
		}
	}
	in.Keys = keys
	return in, nil
}

// sameMessage reports whether two normalised intents are the same
// reservation.
func (in Intent) sameMessage(o Intent) bool {
	return in.RequestID == o.RequestID && in.Digest == o.Digest &&
		in.PayloadHash == o.PayloadHash && slices.Equal(in.Keys, o.Keys)
}

// Record is what the store holds for one request.
type Record struct {
	Intent
	// ReservedAt is the wall-clock time of the first reservation; for
	// humans only, never used in a decision.
	ReservedAt time.Time
	// Signed is set once Complete recorded a signature.
	Signed bool
	// SignatureHash is the hash passed to the latest Complete.
	SignatureHash [32]byte
	// SignedAt is the wall-clock time of the latest Complete.
	SignedAt time.Time
}

// Ticket is returned by Reserve and passed to Complete.
type Ticket struct {
	Record
	// Retry is set when this exact intent had been reserved before (by an
	// earlier call or an earlier process); the node may sign it again in a
	// new session.
	Retry bool
}

// ConflictError is the error Reserve returns when the intent clashes with an
// earlier reservation. errors.Is(err, ErrConflict) holds.
type ConflictError struct {
	// Key is the clashing resource; Kind is KindRequest when the request ID
	// itself was reserved for a different message.
	Key Key
	// RequestID is the refused request.
	RequestID string
	// Previous is the earlier reservation holding Key.
	Previous Record
}

func (e *ConflictError) Error() string {
	if e.Key.Kind == KindRequest {
		return fmt.Sprintf("watermark: conflict on %s: already reserved for a different message (digest %x, payload %x)",
			e.Key, e.Previous.Digest[:8], e.Previous.PayloadHash[:8])
	}
	return fmt.Sprintf("watermark: conflict on %s: request %q refused, already reserved by request %q",
		e.Key, e.RequestID, e.Previous.RequestID)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// CorruptError locates damage in the log. errors.Is(err, ErrCorrupt) holds.
type CorruptError struct {
	Path   string
	Offset int64 // of the damaged record
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("watermark: log %s corrupted at offset %d: %s (refusing to start; a human must inspect the file)",
		e.Path, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
