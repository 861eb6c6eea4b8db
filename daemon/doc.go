// Package daemon is the signer node: its configuration now, `custody node
// run` (wiring ledger, engine, member, withdraw, chains and api) later.
// Only cmd/custody imports it.
//
// # Configuration
//
// A node's config is strict YAML ([LoadConfig]): unknown keys, duplicate
// keys, aliases, nulls and wrong types are refused, and every error names
// the YAML path of the offending value ("ledger.log_store: ..."). Secrets
// are never in it: the HSM PIN and the btcd password are in files it
// names. docs/config.md documents every field and its default.
//
// # One node per token, one node per data dir
//
// [CheckDistinct] refuses configs sharing an HSM token serial or a data
// dir (SECURITY 20); [ClaimDataDir] stamps a data dir with its node ID and
// token serial at first start and refuses it to any other node or token.
package daemon
