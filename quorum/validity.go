package quorum

import "time"

// Bounds of a cluster's approval-validity ceiling (the genesis's
// max_approval_validity): no approval may be recorded with an expiry
// further than the ceiling ahead.
const (
	MinApprovalValidity = time.Minute
	MaxApprovalCeiling  = 30 * 24 * time.Hour
)
