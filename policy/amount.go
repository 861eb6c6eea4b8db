package policy

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// maxAmountDigits bounds amounts to 78 decimal digits (2^256 has 78).
const maxAmountDigits = 78

var maxUint256 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))

// Amount is an exact non-negative integer in base units, at most 2^256-1. It
// encodes as a decimal string in JSON so no parser ever rounds it through a
// float. The zero value is 0.
type Amount struct{ i *big.Int }

// NewAmount returns an Amount of v base units.
func NewAmount(v uint64) Amount { return Amount{new(big.Int).SetUint64(v)} }

// ParseAmount parses a base-unit decimal integer: digits only, no sign,
// no leading zeros (except "0"), no exponent.
func ParseAmount(s string) (Amount, error) {
	if s == "" || len(s) > maxAmountDigits {
		return Amount{}, fmt.Errorf("policy: amount %q: want 1..%d decimal digits", trunc(s), maxAmountDigits)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return Amount{}, fmt.Errorf("policy: amount %q: only decimal digits are allowed (base units)", trunc(s))
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return Amount{}, fmt.Errorf("policy: amount %q: leading zero", trunc(s))
	}
	v, _ := new(big.Int).SetString(s, 10)
	if v.Cmp(maxUint256) > 0 {
		return Amount{}, fmt.Errorf("policy: amount %q exceeds 2^256-1", trunc(s))
	}
	return Amount{v}, nil
}

// ParseUnits converts a whole-unit decimal ("1.5") into base units given the
// asset's decimals, exactly. More fraction digits than decimals is an error.
func ParseUnits(s string, decimals int) (Amount, error) {
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && frac == "") {
		return Amount{}, fmt.Errorf("policy: amount %q: want digits with an optional .fraction", trunc(s))
	}
	if len(frac) > decimals {
		return Amount{}, fmt.Errorf("policy: amount %q has %d fraction digits, the asset has %d decimals", trunc(s), len(frac), decimals)
	}
	if strings.Trim(whole+frac, "0123456789") != "" {
		return Amount{}, fmt.Errorf("policy: amount %q: only digits and one '.' are allowed", trunc(s))
	}
	if len(whole) > 1 && whole[0] == '0' {
		return Amount{}, fmt.Errorf("policy: amount %q: leading zero", trunc(s))
	}
	digits := strings.TrimLeft(whole+frac+strings.Repeat("0", decimals-len(frac)), "0")
	if digits == "" {
		digits = "0"
	}
	return ParseAmount(digits)
}

func trunc(s string) string {
	if len(s) > 90 {
		return s[:90] + "..."
	}
	return s
}

func (a Amount) big() *big.Int {
	if a.i == nil {
		return new(big.Int)
	}
	return a.i
}

// Big returns a copy of a as a *big.Int.
func (a Amount) Big() *big.Int { return new(big.Int).Set(a.big()) }

// Cmp compares a and b like big.Int.Cmp.
func (a Amount) Cmp(b Amount) int { return a.big().Cmp(b.big()) }

// Add returns a+b (unbounded: sums of history may exceed 2^256).
func (a Amount) Add(b Amount) Amount { return Amount{new(big.Int).Add(a.big(), b.big())} }

// Sign reports 0 for zero and 1 otherwise.
func (a Amount) Sign() int { return a.big().Sign() }

// String returns the base-unit decimal string.
func (a Amount) String() string { return a.big().String() }

// FormatUnits renders a in whole units with the given decimals, trimming
// trailing zeros of the fraction ("1.5").
func (a Amount) FormatUnits(decimals int) string {
	s := a.String()
	if decimals == 0 {
		return s
	}
	if len(s) <= decimals {
		s = strings.Repeat("0", decimals-len(s)+1) + s
	}
	w, f := s[:len(s)-decimals], strings.TrimRight(s[len(s)-decimals:], "0")
	if f == "" {
		return w
	}
	return w + "." + f
}

// MarshalText encodes the base-unit decimal string (quoted in JSON).
func (a Amount) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses a base-unit decimal string.
func (a *Amount) UnmarshalText(b []byte) error {
	v, err := ParseAmount(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// UnmarshalJSON refuses JSON numbers: amounts must be strings.
func (a *Amount) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return errors.New("policy: amount must be a JSON string of base units")
	}
	return a.UnmarshalText(b[1 : len(b)-1])
}
