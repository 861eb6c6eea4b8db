package member

import (
	"errors"
	"fmt"

	"github.com/custody-dev/custody/pki"
)

// Refusals. SignClaimed wraps exactly one of these in a *RefusalError so a
// caller (and the audit log) can branch on which check failed. None of them
// leaves a watermark reservation behind unless it is ErrWatermark or comes
// after the reservation (ErrSession, ErrSignature).
var (
	// ErrBadClaim: the claim handed to the member is malformed.
	ErrBadClaim = errors.New("member: malformed claim")
	// ErrLedgerRead: the member could not read its ledger at or after the
	// claim index.
	ErrLedgerRead = errors.New("member: ledger read failed")
	// ErrUnknownRequest: the ledger has no such request.
	ErrUnknownRequest = errors.New("member: unknown request")
	// ErrClaimMismatch: the ledger's current claim of the request is not the
	// one presented (other session or fencing index, or not claimed at all).
	ErrClaimMismatch = errors.New("member: claim does not match the ledger")
	// ErrWallet: the wallet, its committee or the signer set does not fit
	// what this member knows from keygen and what the ledger records.
	ErrWallet = errors.New("member: wallet or signer set refused")
	// ErrQuorum: the approvals in the ledger do not meet the quorum when
	// re-counted here, or one of them fails verification.
	ErrQuorum = errors.New("member: approval quorum not met")
	// ErrNotAttested: the claim is not attested by a checkpoint quorum of
	// the node set (ledger.Request.VerifyAttestation) within AttestWait:
	// the member cannot tell its replica from one a leader fed only it.
	ErrNotAttested = errors.New("member: claim not attested by the node set")
	// ErrLedgerClock: the ledger's clock runs ahead of this member's own
	// clock by more than the allowed skew (a leader stamping future times).
	ErrLedgerClock = errors.New("member: ledger clock ahead of this member's clock")
	// ErrInitiation: the request's initiation does not verify (no
	// signature, another withdrawal, a signer without the initiator role),
	// or the ledger names another initiator than the signer.
	ErrInitiation = errors.New("member: initiation refused")
	// ErrSeen: this member could not record when it first saw a
	// governance change (its first-seen record failed).
	ErrSeen = errors.New("member: first-seen record failed")
	// ErrPolicy: policy denies the request at the ledger state read, at this
	// member's own time.
	ErrPolicy = errors.New("member: policy denies")
	// ErrPayload: the stored unsigned transaction does not parse (for the
	// request's chain and network), does not hash to the approved payload
	// hash, or does not do what the request says (destination, asset,
	// amount, nonce or outpoints), or the digest the leader expects differs
	// from the one recomputed here.
	ErrPayload = errors.New("member: payload does not match the approved request")
	// ErrWatermark: the local high-water mark refused the message (another
	// message already reserved for this request, nonce or outpoint), or the
	// store failed.
	ErrWatermark = errors.New("member: watermark refused")
	// ErrShare: the share could not be unsealed.
	ErrShare = errors.New("member: share unavailable")
	// ErrSession: the tss signing session failed.
	ErrSession = errors.New("member: signing session failed")
	// ErrKeygen: a keygen or test signature asked of this member does not
	// fit its own ledger: the wallet is not there, not created by the
	// admins, not in keygen (test-sign) or without this node in its
	// committee, or the key named is not the one its keygen produced.
	ErrKeygen = errors.New("member: keygen refused")
	// ErrSignature: the session's signature does not verify against the
	// wallet key, is not low-S, or does not assemble into the transaction.
	ErrSignature = errors.New("member: signature refused")
)

// RefusalError is what SignClaimed returns: which member refused which
// request, and why. errors.Is(err, ErrQuorum) etc. select the check.
type RefusalError struct {
	Member    pki.NodeID
	RequestID string
	Err       error
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("member: member %s refuses request %q: %v", e.Member, e.RequestID, e.Err)
}

// Unwrap exposes the sentinel and its cause.
func (e *RefusalError) Unwrap() error { return e.Err }
