// Package quorum models the operators who approve withdrawals and registry
// changes, the devices they approve with, the canonical approval digest they
// sign, and the counting of approvals against a requirement.
//
// Everything here is pure and deterministic: no clocks, disks or network. Time
// is an argument, and state (the [Registry]) is a value the raft FSM in
// ledger owns, persists and replaces with the result of
// [Registry.Apply].
//
// # Approval digest
//
// An approval is a signature over [Statement.Digest]: SHA-256 of a canonical,
// domain-separated, versioned encoding of (cluster ID, request ID, payload
// hash, decision, expiry). [Statement.Encode] is the only encoder; the layout
// is documented on it and pinned by testdata/digest_vectors.json.
//
// # Counting
//
// [Count] returns a [Tally] that lists every approval as counted, as a
// rejection, or as ignored with an [IgnoreReason]. Only distinct, active
// operators approving through an active device, with a role the requirement
// allows, count; the initiator never counts; expired approvals never count; one
// valid rejection cancels the request.
package quorum
