package amount

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/big"
	"strings"
)

// Amount is an exact non-negative integer number of base units, at most
// 2^256-1. The zero value is 0. Amounts are comparable values: == and Cmp
// agree, and copies never alias.
//
// Amount encodes as its base-unit decimal string (MarshalText), so JSON
// carries it quoted ("2500000000000000000") and no JSON parser ever rounds
// it through a float; JSON numbers are refused on decoding.
type Amount struct {
	be [32]byte // big-endian uint256
}

// FromUint64 returns an Amount of v base units.
func FromUint64(v uint64) Amount {
	var a Amount
	binary.BigEndian.PutUint64(a.be[24:], v)
	return a
}

// FromBig returns v as an Amount: ErrNegative when v < 0, ErrOverflow when
// v > 2^256-1, ErrMalformed when v is nil. v is not retained.
func FromBig(v *big.Int) (Amount, error) {
	switch {
	case v == nil:
		return Amount{}, fmt.Errorf("%w: nil *big.Int", ErrMalformed)
	case v.Sign() < 0:
		return Amount{}, fmt.Errorf("%w: %s", ErrNegative, quote(v.String()))
	case v.BitLen() > 256:
		return Amount{}, fmt.Errorf("%w: %s is more than 2^256-1 base units", ErrOverflow, quote(v.String()))
	}
	var a Amount
	v.FillBytes(a.be[:])
	return a, nil
}

// Max returns 2^256-1, the largest Amount.
func Max() Amount {
	var a Amount
	for i := range a.be {
		a.be[i] = 0xff
	}
	return a
}

// Big returns a as a new *big.Int the caller may modify.
func (a Amount) Big() *big.Int { return new(big.Int).SetBytes(a.be[:]) }

// Cmp returns -1, 0 or +1 as a is less than, equal to or greater than b.
func (a Amount) Cmp(b Amount) int { return bytes.Compare(a.be[:], b.be[:]) }

// Sign returns 0 for zero and 1 otherwise (an Amount is never negative).
func (a Amount) Sign() int {
	if a == (Amount{}) {
		return 0
	}
	return 1
}

// Add returns a+b, or ErrOverflow when the sum exceeds 2^256-1.
func (a Amount) Add(b Amount) (Amount, error) {
	var s Amount
	carry := uint16(0)
	for i := len(s.be) - 1; i >= 0; i-- {
		t := uint16(a.be[i]) + uint16(b.be[i]) + carry
		s.be[i], carry = byte(t), t>>8
	}
	if carry != 0 {
		return Amount{}, fmt.Errorf("%w: %s + %s is more than 2^256-1 base units", ErrOverflow, quote(a.String()), quote(b.String()))
	}
	return s, nil
}

// String returns the base-unit decimal string, the canonical spelling
// ParseBase accepts ("1500000000000000000", "0").
func (a Amount) String() string { return a.Big().String() }

// Format returns a in whole units of an asset with the given decimals, in
// the canonical spelling ParseUnits accepts: no trailing zeros in the
// fraction and no '.' without one ("1.5", "0.00000001", "42", "0").
//
// decimals outside 0..MaxDecimals cannot be parsed back, so they are
// rendered in the fmt package's style for bad arguments, as
// "%!(BADDECIMALS=78)15", which no parser accepts as an amount.
func (a Amount) Format(decimals int) string {
	digits := a.String()
	if decimals < 0 || decimals > MaxDecimals {
		return fmt.Sprintf("%%!(BADDECIMALS=%d)%s", decimals, digits)
	}
	if decimals == 0 {
		return digits
	}
	if len(digits) <= decimals {
		digits = strings.Repeat("0", decimals-len(digits)+1) + digits
	}
	whole, frac := digits[:len(digits)-decimals], strings.TrimRight(digits[len(digits)-decimals:], "0")
	if frac == "" {
		return whole
	}
	return whole + "." + frac
}

// MarshalText returns the base-unit decimal string.
func (a Amount) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses a base-unit decimal string with ParseBase.
func (a *Amount) UnmarshalText(b []byte) error {
	v, err := ParseBase(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// UnmarshalJSON accepts only a JSON string holding a base-unit decimal
// integer. Numbers, null and strings with escapes are refused: a JSON number
// may already have been rounded by whoever wrote it.
func (a *Amount) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("%w: %s: in JSON an amount is a string of base units, such as \"1500\"", ErrMalformed, quote(string(b)))
	}
	return a.UnmarshalText(b[1 : len(b)-1])
}
