// Package policy decides whether a withdrawal may be signed, on which route
// (hot or cold), and with how many approvals from which roles.
//
// It is pure and deterministic: rules, state and time are arguments; nothing
// here reads a clock, a disk or the network. The raft FSM (ledger)
// owns the State and the Rules and calls [Evaluate] when a request is created,
// [Authorize] before a claim, and [State.Apply] for allowlist and lock
// changes.
//
// # Deny by default
//
// A request that no rule matches is denied with [ErrNoRule]. Every denial
// carries a [Reason] and wraps a sentinel error the caller branches on with
// errors.Is.
//
// # Addresses
//
// Policy is chain-agnostic: it compares addresses as exact strings and
// expects them in the canonical form produced by chains/eth and chains/btc
// (EIP-55 for Ethereum, the lowercase bech32 or base58 string for Bitcoin).
// Callers that accept addresses from people pass an [AddressValidator] to
// [State.Apply], which canonicalises and validates allowlist additions; the
// withdrawal request carries the canonical destination the chain package
// derived from the unsigned transaction.
//
// # Amounts
//
// Amounts are [amount.Amount] values: exact non-negative integers in an
// asset's base units (wei, satoshi, token units), never floats. Rules files
// write limits in whole units ("1.5") and declare each asset's decimals; the
// parser reads them with [amount.ParseUnits] from the YAML source text, so a
// limit is accepted or refused exactly as everywhere else in custody, and a
// refusal wraps both [ErrInvalidRules] and the amount sentinel.
package policy
