// Package node is the signer node runtime as a library: the committee
// member's signing path (Member) and the leader's thin orchestration
// (Coordinator) of a hot withdrawal, DESIGN.md "The hot withdrawal, as data
// flows", steps 1-6.
//
// # Member
//
// Member.SignClaimed is step 5. It trusts nothing it is handed: the claim
// only names what the coordinator wants signed. The member reads its own
// ledger node at or after the claim index (linearizably), re-counts every
// approval against the registry in that state, re-evaluates policy,
// re-parses the stored unsigned transaction, recomputes the payload hash and
// the signing digest, compares the transaction with the request the
// operators approved, and only then reserves the message in its watermark,
// unseals its share and joins the tss session bound to the claim's session
// ID. The signature is verified against the wallet key the member learned at
// keygen (not the ledger's word) before it is released. The order of the
// checks and what each defends is in docs/node.md.
//
// # Coordinator
//
// Coordinator builds the unsigned transaction, allocates the nonce through
// the ledger command, records approvals, claims (fresh 256-bit session ID,
// fencing token = raft index), asks the signers to sign and commits the
// result. A compromised coordinator can at worst fail to get anything
// signed: every member checks everything itself.
package node
