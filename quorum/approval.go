package quorum

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Errors a caller branches on after counting.
var (
	// ErrInsufficientApprovals: fewer distinct valid approvals than required.
	ErrInsufficientApprovals = errors.New("quorum: insufficient approvals")
	// ErrRejected: at least one valid rejection cancelled the request.
	ErrRejected = errors.New("quorum: rejected by an operator")
)

// Approval is a signed Statement as submitted by an operator's device. The
// operator is not part of it: it is looked up from the device in the registry
// the approval is evaluated against.
type Approval struct {
	Statement
	DeviceID  string `json:"device_id"`
	Signature []byte `json:"signature"`
}

// Sign makes an Approval of st with signer, the private half of device
// deviceID. Ed25519 keys sign the digest as the message; ECDSA signers (such
// as an hsm.ECKey) get the digest with crypto.SHA256 and must return ASN.1
// DER. rnd may be nil (crypto/rand).
func Sign(st Statement, deviceID string, signer crypto.Signer, rnd io.Reader) (Approval, error) {
	digest, err := st.Digest()
	if err != nil {
		return Approval{}, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	var opts crypto.SignerOpts = crypto.SHA256
	if _, ok := signer.Public().(ed25519.PublicKey); ok {
		opts = crypto.Hash(0)
	}
	sig, err := signer.Sign(rnd, digest[:], opts)
	if err != nil {
		return Approval{}, fmt.Errorf("quorum: sign approval: %w", err)
	}
	return Approval{Statement: st, DeviceID: deviceID, Signature: sig}, nil
}

// Subject is what approvals are counted for: the request (or change) ID, the
// hash of its exact payload, and the initiator, whose approval never counts
// (for a device or role change, the operator being changed).
type Subject struct {
	RequestID   string `json:"request_id"`
	PayloadHash Hash   `json:"payload_hash"`
	Initiator   string `json:"initiator,omitempty"`
}

// Requirement is how many distinct operators with which roles must approve.
// Required below 1 is never met: counting fails closed.
type Requirement struct {
	Required int    `json:"required"`
	Roles    []Role `json:"roles"`
}

// IgnoreReason says why an approval did not count.
type IgnoreReason string

// Reasons an approval is ignored.
const (
	ReasonWrongCluster         IgnoreReason = "wrong_cluster"
	ReasonWrongRequest         IgnoreReason = "wrong_request"
	ReasonWrongPayload         IgnoreReason = "wrong_payload"
	ReasonMalformed            IgnoreReason = "malformed"
	ReasonExpired              IgnoreReason = "expired"
	ReasonNotAVote             IgnoreReason = "not_a_vote"
	ReasonUnknownDevice        IgnoreReason = "unknown_device"
	ReasonDeviceRevoked        IgnoreReason = "device_revoked"
	ReasonUnsupportedDevice    IgnoreReason = "unsupported_device"
	ReasonBadSignature         IgnoreReason = "bad_signature"
	ReasonOperatorInactive     IgnoreReason = "operator_inactive"
	ReasonInitiator            IgnoreReason = "initiator"
	ReasonRoleNotAllowed       IgnoreReason = "role_not_allowed"
	ReasonDuplicateOperator    IgnoreReason = "duplicate_operator"
	ReasonBackendCannotApprove IgnoreReason = "backend_cannot_approve"
)

// Vote is one approval or rejection that counted.
type Vote struct {
	Index      int    `json:"index"` // position in the input slice
	OperatorID string `json:"operator_id"`
	DeviceID   string `json:"device_id"`
}

// Ignored is one approval that did not count, and why.
type Ignored struct {
	Index      int          `json:"index"`
	OperatorID string       `json:"operator_id,omitempty"`
	DeviceID   string       `json:"device_id"`
	Reason     IgnoreReason `json:"reason"`
}

// Tally is the explained result of Count.
type Tally struct {
	Required   int       `json:"required"`
	Roles      []Role    `json:"roles"`
	Counted    []Vote    `json:"counted"`
	Rejections []Vote    `json:"rejections,omitempty"`
	Ignored    []Ignored `json:"ignored,omitempty"`
}

// Met reports whether the requirement is satisfied and nobody validly
// rejected.
func (t Tally) Met() bool {
	return t.Required >= 1 && len(t.Rejections) == 0 && len(t.Counted) >= t.Required
}

// Err is nil when Met, otherwise wraps ErrRejected or ErrInsufficientApprovals.
func (t Tally) Err() error {
	switch {
	case len(t.Rejections) > 0:
		return fmt.Errorf("%w: operator %s rejected", ErrRejected, t.Rejections[0].OperatorID)
	case !t.Met():
		return fmt.Errorf("%w: %d of %d required", ErrInsufficientApprovals, len(t.Counted), t.Required)
	}
	return nil
}

// Count evaluates approvals for subj against req under registry r at time now.
//
// An approval counts when: its statement names r.ClusterID, subj's request ID
// and payload hash; it has not expired (now < Expiry); its device is known and
// active and its signature verifies; its operator is active, is not the
// initiator, is human, and holds a role in req.Roles; and no earlier approval
// in the slice already counted for the same operator.
//
// A rejection that passes the same checks cancels the request. The role check
// is wider for rejections (admins and the initiator may always cancel),
// because a rejection can only stop a signature, never cause one.
func Count(r Registry, subj Subject, req Requirement, approvals []Approval, now time.Time) Tally {
	t := Tally{Required: req.Required, Roles: slices.Clone(req.Roles), Counted: []Vote{}}
	counted := map[string]bool{}
	rejected := map[string]bool{}
	for i, a := range approvals {
		ign := func(op string, why IgnoreReason) {
			t.Ignored = append(t.Ignored, Ignored{Index: i, OperatorID: op, DeviceID: a.DeviceID, Reason: why})
		}
		switch {
		case a.ClusterID != r.ClusterID:
			ign("", ReasonWrongCluster)
			continue
		case a.RequestID != subj.RequestID:
			ign("", ReasonWrongRequest)
			continue
		case a.PayloadHash != subj.PayloadHash:
			ign("", ReasonWrongPayload)
			continue
		}
		digest, err := a.Statement.Digest()
		if err != nil {
			ign("", ReasonMalformed)
			continue
		}
		if !now.Before(a.Expiry) {
			ign("", ReasonExpired)
			continue
		}
		dev, ok := r.Devices[a.DeviceID]
		if !ok {
			ign("", ReasonUnknownDevice)
			continue
		}
		if dev.Status != DeviceActive {
			ign(dev.OperatorID, ReasonDeviceRevoked)
			continue
		}
		if err := dev.VerifyDigest(digest, a.Signature); err != nil {
			if errors.Is(err, ErrUnsupportedDevice) {
				ign(dev.OperatorID, ReasonUnsupportedDevice)
			} else {
				ign(dev.OperatorID, ReasonBadSignature)
			}
			continue
		}
		op, ok := r.Operators[dev.OperatorID]
		if !ok || op.Status != StatusActive {
			ign(dev.OperatorID, ReasonOperatorInactive)
			continue
		}
		v := Vote{Index: i, OperatorID: op.ID, DeviceID: dev.ID}
		if a.Decision != Approve && a.Decision != Reject {
			// An initiation (or anything else) is not a vote.
			ign(op.ID, ReasonNotAVote)
			continue
		}
		if a.Decision == Reject {
			if !op.HasRole(req.Roles...) && !op.HasRole(RoleAdmin) && op.ID != subj.Initiator {
				ign(op.ID, ReasonRoleNotAllowed)
				continue
			}
			if rejected[op.ID] {
				ign(op.ID, ReasonDuplicateOperator)
				continue
			}
			rejected[op.ID] = true
			t.Rejections = append(t.Rejections, v)
			continue
		}
		switch {
		case op.ID == subj.Initiator:
			ign(op.ID, ReasonInitiator)
		case op.Kind != KindHuman:
			ign(op.ID, ReasonBackendCannotApprove)
		case !op.HasRole(req.Roles...):
			ign(op.ID, ReasonRoleNotAllowed)
		case counted[op.ID]:
			ign(op.ID, ReasonDuplicateOperator)
		default:
			counted[op.ID] = true
			t.Counted = append(t.Counted, v)
		}
	}
	return t
}
