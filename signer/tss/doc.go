// Package tss runs threshold ECDSA (secp256k1) keygen, signing and resharing
// on top of tss-lib v2.0.2, adding what that library leaves to the
// integrator (SECURITY.md items 1-8):
//
// # Session binding
//
// Every protocol message travels in an [Envelope] carrying the wallet, a
// 256-bit [SessionID], the message type, sender, recipient and broadcast flag.
// The sender is the peer the [Transport] authenticated; an envelope whose From
// differs is dropped. Messages of unknown or finished sessions, from parties
// outside the session's committee, or duplicates never reach tss-lib.
//
// # Echo broadcast
//
// A broadcast from X is handed to tss-lib only after every other recipient
// echoed the same SHA-256 of X's payload; a mismatch aborts naming X.
//
// # Aborts
//
// Failures return *[AbortError] naming culprit parties. A [Budget] counts
// failures per party and quarantines a party that keeps failing until a human
// clears it.
//
// Signing state lives only in memory: a session ID is never reused by an
// [Engine] and a crashed session is never resumed.
package tss
