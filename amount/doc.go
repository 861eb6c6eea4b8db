// Package amount is the one decimal amount type and the one amount grammar of
// custody. Every package that stores, compares or reads an amount (policy
// rules and requests, the ledger, chains/eth, chains/btc, the CLI) uses it, so
// one string typed by a person never means two things in two places.
//
// # Values
//
// An [Amount] is an exact non-negative integer number of an asset's base
// units (wei, satoshi, token units), at most 2^256-1, the largest EVM word.
// It is a comparable value: == compares values, the zero value is 0, and no
// operation mutates an Amount in place. Arithmetic is checked: [Amount.Add]
// refuses to leave the range instead of wrapping or growing.
//
// Binary floating point cannot represent 0.1, and a withdrawal amount is
// compared byte for byte by every signer against what operators approved, so
// no float is involved anywhere: the only conversions are the exact string
// ones below and [FromBig]/[Amount.Big].
//
// # Grammar
//
// What people type is in whole units of an asset with a given number of
// decimals ([ParseUnits], [Amount.Format]); what machines exchange is the
// base-unit integer ([ParseBase], [Amount.String], JSON and text encodings).
// Both grammars are canonical: every value has exactly one spelling, and a
// string is accepted only if it is that spelling.
//
//	units    = whole [ "." fraction ] .          (ParseUnits, Format)
//	whole    = "0" | nonzero { digit } .
//	fraction = { digit } nonzero .               (1..decimals digits)
//	base     = "0" | nonzero { digit } .         (ParseBase, String, JSON)
//	digit    = "0" | nonzero .
//	nonzero  = "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" .
//
// with decimals in 0..[MaxDecimals] and the value, in base units, at most
// 2^256-1. So, for an asset with 8 decimals, "1.5", "0.5", "42" and
// "0.00000001" are accepted, while "1.50" (trailing zero), "01.5" (leading
// zero), ".5", "5.", "+1", "-1", "1e3", "1_000", "1,000", " 1", "0x10" and
// "0.000000001" (9 fraction digits) are refused. With 0 decimals there is no
// fraction at all.
//
// Why canonical rather than merely unambiguous: the spelling an operator
// typed is then byte for byte the spelling every description, decision and
// audit record shows back; a thousands separator typed in the European way
// ("1.000" for one thousand) is refused instead of read as one; and a YAML
// tool that reads leading zeros as octal cannot disagree with us.
//
// # Errors
//
// Refusals wrap exactly one sentinel a caller can branch on with errors.Is:
// [ErrMalformed] (not the grammar above; the message names the rule),
// [ErrNegative], [ErrTooPrecise] (more fraction digits than the asset has
// decimals), [ErrOverflow] (more than 2^256-1 base units, or a caller's own
// smaller maximum) and [ErrDecimals] (decimals outside 0..MaxDecimals).
// Messages quote the input, truncated to a few dozen bytes.
package amount
