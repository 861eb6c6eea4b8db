// Package member is one committee member's signing path (DESIGN.md "The hot
// withdrawal, as data flows", step 5): the independent checks a signer node
// makes before it lets its share take part in a threshold signature.
//
// Member.SignClaimed trusts nothing it is handed: the claim only names what
// the leader wants signed. The member reads its own ledger node at or after
// the claim index (linearizably), re-counts every approval against the
// registry in that state, re-evaluates policy, re-parses the stored unsigned
// transaction through the chain's adapter ([chains.Chain]), recomputes the
// payload hash and the signing digest, compares what the transaction does
// with the request the operators approved, and only then reserves the
// message in its watermark, unseals its share and joins the tss session
// bound to the claim's session ID. The signature is verified against the
// wallet key the member learned at keygen (not the ledger's word) before it
// is released. The order of the checks and what each defends is in
// docs/member.md.
//
// The chain-specific part of the check (parse, payload hash, digests,
// watermark keys, description, assembly, verification) is behind
// [chains.Chain]; everything else is the same for every chain.
//
// The leader's side (build, create, claim, collect) is package withdraw; a
// compromised leader can at worst fail to get anything signed.
package member
