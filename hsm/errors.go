package hsm

import (
	"errors"

	"github.com/miekg/pkcs11"
)

// Sentinel errors a caller can branch on with errors.Is. Errors returned by
// this package wrap one of these where one applies, and the underlying
// pkcs11.Error where there is one.
var (
	// ErrModuleLoad means the PKCS#11 library could not be loaded or initialised.
	ErrModuleLoad = errors.New("hsm: cannot load PKCS#11 module")
	// ErrTokenNotFound means no token matches the configuration, or the token
	// disappeared (removed, not present) while in use.
	ErrTokenNotFound = errors.New("hsm: token not found")
	// ErrAmbiguousToken means more than one token matches the configuration.
	ErrAmbiguousToken = errors.New("hsm: more than one token matches")
	// ErrPINIncorrect means the token refused the user PIN.
	ErrPINIncorrect = errors.New("hsm: PIN incorrect")
	// ErrPINLocked means the token locked the user PIN after failed attempts.
	ErrPINLocked = errors.New("hsm: PIN locked")
	// ErrNoPIN means no PIN was supplied (neither environment nor file).
	ErrNoPIN = errors.New("hsm: no PIN supplied")
	// ErrKeyNotFound means no key with the requested label exists in the token.
	ErrKeyNotFound = errors.New("hsm: key not found")
	// ErrKeyExists means a key with the requested label already exists.
	ErrKeyExists = errors.New("hsm: key already exists")
	// ErrUnsafeKey means a key exists but its attributes do not guarantee it
	// never left the token (not ALWAYS_SENSITIVE, not NEVER_EXTRACTABLE, wrong
	// type or size); it is refused rather than used.
	ErrUnsafeKey = errors.New("hsm: key attributes are not safe")
	// ErrMalformedBlob means a sealed blob is empty, truncated or not a blob.
	ErrMalformedBlob = errors.New("hsm: malformed sealed blob")
	// ErrUnknownVersion means a sealed blob has a format version this code
	// does not know.
	ErrUnknownVersion = errors.New("hsm: unknown sealed blob version")
	// ErrWrongKEK means a sealed blob was sealed under another KEK.
	ErrWrongKEK = errors.New("hsm: blob sealed under another KEK")
	// ErrAuthFailed means GCM authentication failed: the AAD differs from the
	// one used to seal, or the blob was modified.
	ErrAuthFailed = errors.New("hsm: authentication failed (wrong AAD or modified blob)")
	// ErrBadSignature means the token returned a signature that does not
	// verify against the key's public key; it is never handed out.
	ErrBadSignature = errors.New("hsm: token returned an invalid signature")
	// ErrClosed means the Token was closed.
	ErrClosed = errors.New("hsm: token closed")
)

// rvOf returns the PKCS#11 return value inside err, if any.
func rvOf(err error) (pkcs11.Error, bool) {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return e, true
	}
	return 0, false
}

// isRV reports whether err carries the PKCS#11 return value rv.
func isRV(err error, rv uint) bool {
	e, ok := rvOf(err)
	return ok && uint(e) == rv
}

// errSessionUnusable marks an error after which the session is in an unknown
// state (e.g. an object search that could not be finalised); withSession
// closes such a session instead of returning it to the pool.
var errSessionUnusable = errors.New("hsm: session left in an unusable state")

// tokenGone reports whether err means the token or the session is no longer
// usable. Such sessions are discarded and the error maps to ErrTokenNotFound,
// so a vanished token fails closed.
func tokenGone(err error) bool {
	e, ok := rvOf(err)
	if !ok {
		return false
	}
	switch uint(e) {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SLOT_ID_INVALID,
		pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return true
	}
	return false
}
