package presign

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Sentinel errors a caller branches on.
var (
	// ErrAlreadyBound: the presignature was bound to a digest before. A
	// presignature is bound at most once, whatever the digest; the error
	// returned is an *AlreadyBoundError.
	ErrAlreadyBound = errors.New("presign: presignature already bound")
	// ErrUnknown: no such presignature on this node (never made here,
	// destroyed, or lost in a restart).
	ErrUnknown = errors.New("presign: unknown presignature")
	// ErrExpired: the presignature outlived its TTL and was destroyed.
	ErrExpired = errors.New("presign: presignature expired")
	// ErrNotReady: the offline phase of the presignature is still running.
	ErrNotReady = errors.New("presign: presignature not ready")
	// ErrDigestRange: the digest, read as a big-endian integer, is not below
	// the curve order N (tss-lib's round-1 check).
	ErrDigestRange = errors.New("presign: digest out of range")
	// ErrRefused: the caller's check refused the digest for the request.
	ErrRefused = errors.New("presign: digest refused")
	// ErrEmpty: no ready presignature for the wallet and subset.
	ErrEmpty = errors.New("presign: pool empty")
	// ErrDestroyed: the presignature was destroyed while in use (abort,
	// expiry, timeout); it is never bound again.
	ErrDestroyed = errors.New("presign: presignature destroyed")
	// ErrBadParams: invalid configuration or arguments.
	ErrBadParams = errors.New("presign: bad parameters")
)

// AlreadyBoundError is returned for a second binding of a presignature. It
// names the digest of the first binding, which is public (it will be signed).
type AlreadyBoundError struct {
	ID     ID
	Digest [32]byte
}

func (e *AlreadyBoundError) Error() string {
	return fmt.Sprintf("presign: presignature %s already bound to digest %s", e.ID, hex.EncodeToString(e.Digest[:]))
}

// Is makes errors.Is(err, ErrAlreadyBound) true.
func (e *AlreadyBoundError) Is(target error) bool { return target == ErrAlreadyBound }
