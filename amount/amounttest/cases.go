// Package amounttest holds the amount inputs that every entry point where
// people or files supply amounts runs through its own front door: the same
// string must be accepted with the same value, or refused with the same
// sentinel, by amount itself, policy rules files, chains/eth assets,
// chains/btc and the CLI. Tests import it; production code must not.
package amounttest

import (
	"strings"

	"github.com/custody-dev/custody/amount"
)

// Max is 2^256-1 in base units.
const Max = "115792089237316195423570985008687907853269984665640564039457584007913129639935"

// Unit is one amount typed in whole units of an asset with Decimals decimals.
type Unit struct {
	In       string
	Decimals int
	// Base is the value in base units when accepted ("" when refused).
	Base string
	// Err is the sentinel the refusal wraps (nil when accepted).
	Err error
}

// Units are inputs in whole units. Decimals stay within 0..36 (what a
// policy rules file may declare) and values at 8 decimals within 21e6 BTC,
// so every entry point can run every row.
var Units = []Unit{
	// Canonical spellings.
	{In: "1.5", Decimals: 18, Base: "1500000000000000000"},
	{In: "0.000000000000000001", Decimals: 18, Base: "1"},
	{In: "10", Decimals: 18, Base: "10000000000000000000"},
	{In: "10.001", Decimals: 18, Base: "10001000000000000000"},
	{In: "42", Decimals: 0, Base: "42"},
	{In: "0", Decimals: 0, Base: "0"},
	{In: "0", Decimals: 8, Base: "0"},
	{In: "0.5", Decimals: 8, Base: "50000000"},
	{In: "0.00000001", Decimals: 8, Base: "1"},
	{In: "21000000", Decimals: 8, Base: "2100000000000000"},
	{In: "1.5", Decimals: 1, Base: "15"},
	{In: "0.1", Decimals: 1, Base: "1"},
	{In: "250000.5", Decimals: 6, Base: "250000500000"},
	{In: Max, Decimals: 0, Base: Max},
	{In: Max[:60] + "." + Max[60:], Decimals: 18, Base: Max},
	{In: Max[:50] + "." + Max[50:], Decimals: 28, Base: Max},

	// The four spellings chains accepted and policy refused (one decimal),
	// and their kin: every one is a second spelling of a value.
	{In: "1.50", Decimals: 1, Err: amount.ErrMalformed},
	{In: "01.5", Decimals: 1, Err: amount.ErrMalformed},
	{In: ".5", Decimals: 1, Err: amount.ErrMalformed},
	{In: "0.10", Decimals: 1, Err: amount.ErrMalformed},
	{In: "10.000", Decimals: 18, Err: amount.ErrMalformed},
	{In: "1.000", Decimals: 8, Err: amount.ErrMalformed}, // one thousand, in Europe
	{In: "5.0", Decimals: 0, Err: amount.ErrMalformed},
	{In: "0.0", Decimals: 8, Err: amount.ErrMalformed},
	{In: "00", Decimals: 8, Err: amount.ErrMalformed},
	{In: "007", Decimals: 0, Err: amount.ErrMalformed},
	{In: "00.5", Decimals: 8, Err: amount.ErrMalformed},

	// Not numbers in the grammar at all.
	{In: "", Decimals: 8, Err: amount.ErrMalformed},
	{In: ".", Decimals: 8, Err: amount.ErrMalformed},
	{In: "1.", Decimals: 8, Err: amount.ErrMalformed},
	{In: "0.", Decimals: 8, Err: amount.ErrMalformed},
	{In: "1.2.3", Decimals: 8, Err: amount.ErrMalformed},
	{In: "+1", Decimals: 8, Err: amount.ErrMalformed},
	{In: "1e3", Decimals: 8, Err: amount.ErrMalformed},
	{In: "1E3", Decimals: 8, Err: amount.ErrMalformed},
	{In: "1e18", Decimals: 18, Err: amount.ErrMalformed},
	{In: "0x10", Decimals: 8, Err: amount.ErrMalformed},
	{In: "1,000", Decimals: 8, Err: amount.ErrMalformed},
	{In: "1_000", Decimals: 8, Err: amount.ErrMalformed},
	{In: " 1", Decimals: 8, Err: amount.ErrMalformed},
	{In: "1 ", Decimals: 8, Err: amount.ErrMalformed},
	{In: "NaN", Decimals: 8, Err: amount.ErrMalformed},
	{In: ".inf", Decimals: 8, Err: amount.ErrMalformed},
	{In: "１", Decimals: 8, Err: amount.ErrMalformed}, // fullwidth digit one
	{In: "٣", Decimals: 8, Err: amount.ErrMalformed}, // Arabic-Indic three

	{In: "-1", Decimals: 18, Err: amount.ErrNegative},
	{In: "-0.1", Decimals: 18, Err: amount.ErrNegative},
	{In: "-0", Decimals: 8, Err: amount.ErrNegative},

	{In: "1.5", Decimals: 0, Err: amount.ErrTooPrecise},
	{In: "0.000000001", Decimals: 8, Err: amount.ErrTooPrecise},
	{In: "0.0000000010", Decimals: 8, Err: amount.ErrTooPrecise},
	{In: "0.0000000000000000001", Decimals: 18, Err: amount.ErrTooPrecise},
	{In: "1.0000000000000000001", Decimals: 18, Err: amount.ErrTooPrecise},
	{In: "0.05", Decimals: 1, Err: amount.ErrTooPrecise},

	{In: Max[:60] + "." + Max[60:77] + "6", Decimals: 18, Err: amount.ErrOverflow}, // 2^256
	{In: "1" + strings.Repeat("0", 60), Decimals: 18, Err: amount.ErrOverflow},
	{In: strings.Repeat("9", 79), Decimals: 0, Err: amount.ErrOverflow},
	{In: "1" + strings.Repeat("0", 300), Decimals: 36, Err: amount.ErrOverflow},
}

// Base is one amount in base units, as JSON request and state files and
// the ledger carry it. Accepted means Err is nil and the value is In.
type Base struct {
	In  string
	Err error
}

// Bases are inputs in base units.
var Bases = []Base{
	{In: "0"},
	{In: "1"},
	{In: "2500000000000000000"},
	{In: Max},

	{In: "", Err: amount.ErrMalformed},
	{In: "00", Err: amount.ErrMalformed},
	{In: "01", Err: amount.ErrMalformed},
	{In: "1.5", Err: amount.ErrMalformed},
	{In: "1.0", Err: amount.ErrMalformed},
	{In: "+1", Err: amount.ErrMalformed},
	{In: "1e3", Err: amount.ErrMalformed},
	{In: " 1", Err: amount.ErrMalformed},
	{In: "0x10", Err: amount.ErrMalformed},
	{In: "1,000", Err: amount.ErrMalformed},
	{In: "-1", Err: amount.ErrNegative},
	{In: "115792089237316195423570985008687907853269984665640564039457584007913129639936", Err: amount.ErrOverflow},
	{In: strings.Repeat("9", 79), Err: amount.ErrOverflow},
}
