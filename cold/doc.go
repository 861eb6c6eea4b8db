// Package cold is the offline side of cold wallets: the keygen ceremony
// among custodians' HSM tokens, the signing bundle and its offline
// verification from the genesis, and signing with t+1 custodians' tokens.
//
// It imports no raft and no network code of custody (layering_test.go):
// it runs on an air-gapped machine, and everything it decides comes from
// the bundle's bytes checked against the genesis hash the custodians pin,
// never from the exporter's word.
//
// # The ceremony
//
// [ParseCeremony] reads the strict YAML of `custody ceremony keygen`;
// [Keygen] runs the distributed keygen among the custodians' tokens (one
// share per token, sealed by a key-encryption key generated in that token),
// test-signs with two different t+1 subsets, and [Outputs.Write] writes the
// public wallet file, one sealed share per custodian and the transcript,
// never overwriting a file.
//
// # The bundle
//
// A [Bundle] is what `custody cold export` writes: the request with its
// unsigned transaction (and, for Bitcoin, a BIP-174 PSBT with the witness
// UTXOs), its approvals, and the evidence: the genesis and every governance
// change applied after it (registry, allowlist and locks, rules, cold wallet
// registrations), chained by hash from the genesis hash ([ChainHash]).
// [Verify] folds the evidence from the pinned genesis and re-checks the
// request as a committee member would; [Sign] unseals the shares in the
// custodians' tokens, signs every digest and verifies the result.
//
// docs/cold.md describes the formats and every field.
package cold
