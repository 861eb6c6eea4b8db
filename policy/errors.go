package policy

import (
	"errors"

	"github.com/custody-dev/custody/quorum"
)

// Errors a caller branches on with errors.Is. Decision.Err wraps exactly one.
var (
	ErrLocked           = errors.New("policy: locked")
	ErrNotAllowlisted   = errors.New("policy: destination is not allowlisted")
	ErrCoolingOff       = errors.New("policy: destination is still in its cooling-off period")
	ErrOverLimit        = errors.New("policy: amount over the per-transaction limit")
	ErrFeeOverCap       = errors.New("policy: maximum fee over the rule's cap")
	ErrFeeRateOverCap   = errors.New("policy: fee rate over the rule's cap")
	ErrVelocityExceeded = errors.New("policy: velocity limit exceeded")
	ErrNoRule           = errors.New("policy: no rule matches")
	ErrInvalidRequest   = errors.New("policy: invalid request")
	ErrInvalidChange    = errors.New("policy: invalid change")
	// ErrInsufficientApprovals and ErrRejected are quorum's sentinels, so a
	// caller can test either package's name.
	ErrInsufficientApprovals = quorum.ErrInsufficientApprovals
	ErrRejected              = quorum.ErrRejected
)

// Reason is the machine-readable denial reason of a Decision.
type Reason string

// Denial reasons; the empty Reason means not denied.
const (
	ReasonLocked                Reason = "locked"
	ReasonNotAllowlisted        Reason = "not_allowlisted"
	ReasonCoolingOff            Reason = "cooling_off"
	ReasonOverLimit             Reason = "over_limit"
	ReasonFeeOverCap            Reason = "fee_over_cap"
	ReasonFeeRateOverCap        Reason = "fee_rate_over_cap"
	ReasonVelocityExceeded      Reason = "velocity_exceeded"
	ReasonNoRule                Reason = "no_rule"
	ReasonInvalidRequest        Reason = "invalid_request"
	ReasonInsufficientApprovals Reason = "insufficient_approvals"
	ReasonRejected              Reason = "rejected"
)

var reasonErr = map[Reason]error{
	ReasonLocked:                ErrLocked,
	ReasonNotAllowlisted:        ErrNotAllowlisted,
	ReasonCoolingOff:            ErrCoolingOff,
	ReasonOverLimit:             ErrOverLimit,
	ReasonFeeOverCap:            ErrFeeOverCap,
	ReasonFeeRateOverCap:        ErrFeeRateOverCap,
	ReasonVelocityExceeded:      ErrVelocityExceeded,
	ReasonNoRule:                ErrNoRule,
	ReasonInvalidRequest:        ErrInvalidRequest,
	ReasonInsufficientApprovals: ErrInsufficientApprovals,
	ReasonRejected:              ErrRejected,
}

// Sentinel returns the error a Reason stands for (nil for the empty Reason).
func (r Reason) Sentinel() error { return reasonErr[r] }
