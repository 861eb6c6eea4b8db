// Package genesis is the cluster's genesis: the document every node pins by
// hash in its config and the ledger is initialised from.
//
// # The document
//
// A [Genesis] names the cluster ID, the admin quorum, the initial operators
// (people and backend principals) with their device public keys, the node
// set (node IDs and the fingerprints of their certificates' public keys),
// the initial policy rules (verbatim YAML and their hash) and the ceiling on
// approval validity. It is JSON, versioned ("version":
// "custody/genesis/v1"). [Parse] reads one strictly and validates it;
// every error is an [*Error] naming its JSON path ("operators[2].roles").
//
// # The hash
//
// [Genesis.Hash] is the lowercase hex SHA-256 of "custody/genesis/v1", a
// zero byte and [Genesis.Canonical], the canonical encoding (sets sorted,
// no whitespace). Reordering operators, devices, roles or nodes, or
// reformatting the file, does not change it; changing anything else does.
//
// # The ledger
//
// The package imports no ledger, so the offline cold signer (package cold)
// reads genesis files without raft. The ledger imports it:
// ledger.GenesisCommand is the ledger command (ledger.Genesis) that
// initialises the FSM from the document; it carries the hash, which the
// ledger records as State.GenesisHash together with the node set.
// ledger.GenesisDocument rebuilds the document from a command and
// ledger.VerifyGenesisCommand checks a command against a pinned hash.
//
// # The ceremony
//
// A [Config] is the YAML input of `custody genesis create`: it names key
// files, public keys, node certificates and the rules file; [Config.Build]
// reads them (through a [ReadFile]) and returns the validated genesis.
//
// docs/genesis.md documents every field, the hash and the CLI.
package genesis
