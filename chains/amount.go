// Package chains holds what chains/eth and chains/btc share: exact decimal
// amount conversion between human strings ("1.5") and integer base units.
//
// # Why no floats
//
// A withdrawal amount is compared byte for byte by every signer against what
// operators approved. Binary floating point cannot represent 0.1, so every
// amount in this module is an integer number of base units (wei, satoshi,
// token units) carried as *big.Int, and the only conversions are the exact
// string ones below.
package chains

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Errors returned by ParseAmount. Callers branch on them with errors.Is.
var (
	// ErrMalformedAmount means the string is not a plain decimal number.
	ErrMalformedAmount = errors.New("chains: malformed amount")
	// ErrNegativeAmount means the amount has a leading minus sign.
	ErrNegativeAmount = errors.New("chains: negative amount")
	// ErrAmountTooPrecise means the amount has more fractional digits than
	// the asset has decimals, so it cannot be expressed in base units.
	ErrAmountTooPrecise = errors.New("chains: amount has more decimal places than the asset")
	// ErrAmountOverflow means the amount does not fit the asset's maximum
	// (2^256-1 base units for ParseAmount).
	ErrAmountOverflow = errors.New("chains: amount overflows")
)

// MaxUint256 is 2^256-1, the largest value an EVM word (and thus an ETH or
// ERC-20 amount) can hold. Callers must not modify it.
var MaxUint256 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))

// MaxDecimals bounds the decimals an asset may declare; 77 digits is the
// width of 2^256, so anything larger cannot hold even one whole unit.
const MaxDecimals = 77

// ParseAmount converts a decimal string such as "1.5", "0.000001" or "42"
// into base units for an asset with the given number of decimals, exactly.
// Accepted: ASCII digits with at most one '.', at least one digit, no sign,
// exponent, spaces, underscores or thousands separators. The result is at
// most MaxUint256; callers with a smaller range (bitcoin) check their own.
func ParseAmount(s string, decimals uint8) (*big.Int, error) {
	if decimals > MaxDecimals {
		return nil, fmt.Errorf("%w: %d decimals is more than %d", ErrMalformedAmount, decimals, MaxDecimals)
	}
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformedAmount)
	}
	if len(s) > 200 {
		return nil, fmt.Errorf("%w: %d characters", ErrMalformedAmount, len(s))
	}
	if s[0] == '-' {
		return nil, fmt.Errorf("%w: %q", ErrNegativeAmount, s)
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" && frac == "" {
		return nil, fmt.Errorf("%w: %q has no digits", ErrMalformedAmount, s)
	}
	if hasDot && frac == "" {
		return nil, fmt.Errorf("%w: %q ends with '.'", ErrMalformedAmount, s)
	}
	for _, part := range []string{whole, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return nil, fmt.Errorf("%w: %q", ErrMalformedAmount, s)
			}
		}
	}
	// Trailing zeros in the fraction carry no precision: "1.50" is fine for
	// an asset with one decimal.
	frac = strings.TrimRight(frac, "0")
	if len(frac) > int(decimals) {
		return nil, fmt.Errorf("%w: %q has %d decimal places, the asset has %d", ErrAmountTooPrecise, s, len(frac), decimals)
	}
	digits := whole + frac + strings.Repeat("0", int(decimals)-len(frac))
	v, ok := new(big.Int).SetString(digits, 10)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrMalformedAmount, s)
	}
	if v.Cmp(MaxUint256) > 0 {
		return nil, fmt.Errorf("%w: %q is more than 2^256-1 base units", ErrAmountOverflow, s)
	}
	return v, nil
}

// FormatAmount renders base units as a decimal string with no trailing
// fractional zeros ("1.5", "0", "0.000000000000000001"). It is the exact
// inverse of ParseAmount for non-negative values. A nil or negative v is
// rendered with a leading '-' so that it can never be mistaken for a valid
// amount in a description.
func FormatAmount(v *big.Int, decimals uint8) string {
	if v == nil {
		return "<nil>"
	}
	neg := v.Sign() < 0
	digits := new(big.Int).Abs(v).String()
	if int(decimals) > 0 {
		if len(digits) <= int(decimals) {
			digits = strings.Repeat("0", int(decimals)-len(digits)+1) + digits
		}
		cut := len(digits) - int(decimals)
		whole, frac := digits[:cut], strings.TrimRight(digits[cut:], "0")
		digits = whole
		if frac != "" {
			digits += "." + frac
		}
	}
	if neg {
		return "-" + digits
	}
	return digits
}
