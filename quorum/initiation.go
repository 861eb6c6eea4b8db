package quorum

import (
	"errors"
	"fmt"
	"time"
)

// ErrInitiation is wrapped by VerifyInitiation for an initiation that does
// not prove who created a request.
var ErrInitiation = errors.New("quorum: initiation refused")

// VerifyInitiation checks an initiator's signed creation of request
// requestID whose content hashes to intent: a Statement with decision
// Initiate for this cluster, request and intent, signed by an active
// device of an active operator holding the initiator role. With
// checkExpiry the statement must not have expired at now (at creation);
// members re-checking an existing request pass false, since the signature
// proves who created it whenever it is checked. It returns the initiating
// operator: the request's initiator, whose own approval never counts.
func VerifyInitiation(r Registry, a Approval, requestID string, intent Hash, now time.Time, checkExpiry bool) (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrInitiation, fmt.Sprintf(format, args...))
	}
	switch {
	case a.Decision != Initiate:
		return bad("the statement's decision is %s, not initiate", a.Decision)
	case a.ClusterID != r.ClusterID:
		return bad("signed for cluster %q", a.ClusterID)
	case a.RequestID != requestID:
		return bad("signed for request %q, not %q", a.RequestID, requestID)
	case a.PayloadHash != intent:
		return bad("signed another withdrawal than the request's (intent %x, signed %x)", intent[:6], a.PayloadHash[:6])
	case checkExpiry && !now.Before(a.Expiry):
		return bad("expired at %s", a.Expiry.UTC().Format(time.RFC3339))
	}
	digest, err := a.Statement.Digest()
	if err != nil {
		return bad("%v", err)
	}
	dev, ok := r.Devices[a.DeviceID]
	if !ok {
		return bad("unknown device %q", a.DeviceID)
	}
	if dev.Status != DeviceActive {
		return bad("device %q is revoked", a.DeviceID)
	}
	if err := dev.VerifyDigest(digest, a.Signature); err != nil {
		return bad("signature: %v", err)
	}
	op, ok := r.Operators[dev.OperatorID]
	if !ok || op.Status != StatusActive {
		return bad("operator %q is not active", dev.OperatorID)
	}
	if !op.HasRole(RoleInitiator) {
		return bad("operator %q does not hold the initiator role", op.ID)
	}
	return op.ID, nil
}
