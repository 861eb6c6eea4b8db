// Package chains will hold the one chain interface every chain adapter
// implements (parse, payload hash, digests, watermark keys, description,
// assemble, verify); chains/eth and chains/btc are the adapters. It is
// being added separately.
//
// Amounts are not here: every package, chains included, uses the amount
// package's type and its one grammar.
package chains
