// Package chains is the one interface every chain adapter implements for the
// signer: parse a stored unsigned transaction, recompute its payload hash and
// the digests to sign, say what it does in the ledger's terms, name the
// scarce things one signature spends (watermark keys), describe it for
// humans, assemble the signatures into the signed transaction and verify a
// signed one. chains/eth (eth.Chain) and chains/btc (btc.Chain, P2WPKH)
// implement it.
//
// # What an adapter decides
//
// Nothing: an adapter reports what a transaction does, and the committee
// member compares that with the request operators approved and the policy
// the ledger holds. An adapter only refuses what it cannot parse or
// represent (another network's chain ID, a kind of transaction the signer
// does not sign yet).
//
// Amounts are not here: every package, chains included, uses the amount
// package's type and its one grammar.
package chains
