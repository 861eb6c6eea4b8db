// Package withdraw is the leader's orchestration of a hot withdrawal
// (DESIGN.md "The hot withdrawal, as data flows", steps 2, 4 and 6): it
// builds the unsigned transaction (CreateETH, CreateBTC), commits
// request.create (policy is evaluated and the ETH nonce allocated or the
// BTC outpoints reserved in the ledger), records operators' approvals,
// claims a signing session (fresh 256-bit session ID, fencing token = raft
// index), asks the committee members to sign and commits the result.
//
// It signs nothing and decides nothing the members do not re-check (package
// signer/member): a compromised leader can at worst fail to get anything
// signed.
package withdraw
