package amount

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Errors a caller branches on with errors.Is; every parse error wraps
// exactly one of them. The message after the sentinel's text names the rule
// that failed and quotes the input.
var (
	// ErrMalformed means the string is not in the grammar of the package
	// doc: empty, a character other than a digit or one '.', no digit before
	// or after the '.', a leading zero, a trailing zero in the fraction, a
	// '.' in base units, or a JSON value that is not a string.
	ErrMalformed = errors.New("amount: malformed")
	// ErrNegative means the string starts with '-' (or a *big.Int is
	// negative). Amounts are never negative.
	ErrNegative = errors.New("amount: negative")
	// ErrTooPrecise means the fraction has more digits than the asset has
	// decimals, so the value is not a whole number of base units.
	ErrTooPrecise = errors.New("amount: too precise")
	// ErrOverflow means the value is more than 2^256-1 base units, or more
	// than a caller's own maximum (chains/btc: 21e6 BTC).
	ErrOverflow = errors.New("amount: too large")
	// ErrDecimals means the decimals argument is outside 0..MaxDecimals.
	ErrDecimals = errors.New("amount: decimals out of range")
)

// MaxDecimals is the most decimals an asset may have: 2^256-1 has 78
// digits, so with more than 77 decimals not even one whole unit fits.
const MaxDecimals = 77

// maxDigits is the number of decimal digits of 2^256-1.
const maxDigits = 78

// ParseBase parses a base-unit decimal integer ("1500000000000000000"):
// the base production of the package doc, at most 2^256-1. It is the
// inverse of Amount.String and what MarshalText/UnmarshalText and JSON use.
func ParseBase(s string) (Amount, error) {
	digits, _, _, err := scan(s, false)
	if err != nil {
		return Amount{}, err
	}
	if len(digits) > maxDigits {
		return Amount{}, fmt.Errorf("%w: %s is more than 2^256-1 base units", ErrOverflow, quote(s))
	}
	return fromDigits(s, digits)
}

// ParseUnits parses what a person types, in whole units of an asset with
// the given decimals ("1.5" with 18 decimals is 1500000000000000000 base
// units), exactly: the units production of the package doc. It is the
// inverse of Amount.Format.
func ParseUnits(s string, decimals int) (Amount, error) {
	if decimals < 0 || decimals > MaxDecimals {
		return Amount{}, fmt.Errorf("%w: %d is not in 0..%d", ErrDecimals, decimals, MaxDecimals)
	}
	whole, frac, _, err := scan(s, true)
	if err != nil {
		return Amount{}, err
	}
	significant := strings.TrimRight(frac, "0")
	if len(significant) > decimals {
		return Amount{}, fmt.Errorf("%w: %s has %d fraction digits, the asset has %d decimals", ErrTooPrecise, quote(s), len(frac), decimals)
	}
	if len(significant) < len(frac) {
		return Amount{}, fmt.Errorf("%w: %s: trailing zero in the fraction (write %s)", ErrMalformed, quote(s), quote(canonical(whole, significant)))
	}
	// A whole part of n digits (no leading zero) is at least 10^(n-1) units,
	// 10^(n-1+decimals) base units; 10^78 > 2^256. Checked before building
	// the digit string so huge inputs cost no allocation.
	if whole != "0" && len(whole)+decimals > maxDigits {
		return Amount{}, fmt.Errorf("%w: %s is more than 2^256-1 base units with %d decimals", ErrOverflow, quote(s), decimals)
	}
	digits := strings.TrimLeft(whole+frac+strings.Repeat("0", decimals-len(frac)), "0")
	return fromDigits(s, digits)
}

// canonical is the spelling of whole.frac without trailing zeros; used only
// to suggest a fix in an error message.
func canonical(whole, frac string) string {
	if frac == "" {
		return whole
	}
	return whole + "." + frac
}

// scan checks everything about s that does not depend on decimals: no
// sign, only ASCII digits and (if dot) at most one '.', digits on both sides
// of it, no leading zero. It returns the digits before and after the '.'.
func scan(s string, dot bool) (whole, frac string, hasDot bool, err error) {
	if s == "" {
		return "", "", false, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if s[0] == '-' {
		return "", "", false, fmt.Errorf("%w: %s", ErrNegative, quote(s))
	}
	cut := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
		case c == '.' && !dot:
			return "", "", false, fmt.Errorf("%w: %s: '.' at byte %d: base units are a whole number", ErrMalformed, quote(s), i)
		case c == '.' && cut >= 0:
			return "", "", false, fmt.Errorf("%w: %s: second '.' at byte %d", ErrMalformed, quote(s), i)
		case c == '.':
			cut = i
		default:
			allowed := "digits"
			if dot {
				allowed = "digits and one '.'"
			}
			r, _ := utf8.DecodeRuneInString(s[i:])
			return "", "", false, fmt.Errorf("%w: %s: %q at byte %d: only %s are allowed%s", ErrMalformed, quote(s), r, i, allowed, hint(c))
		}
	}
	whole = s
	if cut >= 0 {
		whole, frac, hasDot = s[:cut], s[cut+1:], true
	}
	switch {
	case whole == "":
		return "", "", false, fmt.Errorf("%w: %s: no digit before '.'", ErrMalformed, quote(s))
	case hasDot && frac == "":
		return "", "", false, fmt.Errorf("%w: %s: no digit after '.'", ErrMalformed, quote(s))
	case len(whole) > 1 && whole[0] == '0':
		return "", "", false, fmt.Errorf("%w: %s: leading zero", ErrMalformed, quote(s))
	}
	return whole, frac, hasDot, nil
}

// hint explains the usual reasons for an unexpected byte.
func hint(c byte) string {
	switch c {
	case '+':
		return " (no sign)"
	case 'e', 'E':
		return " (no exponent)"
	case ',', '_', '\'', ' ', '\t', '\n', '\r':
		return " (no separators or spaces)"
	case 'x', 'X':
		return " (decimal only)"
	}
	return ""
}

// fromDigits converts a string of at most maxDigits decimal digits (no
// leading zeros; "" is 0) to an Amount; s is the input, for the error.
func fromDigits(s, digits string) (Amount, error) {
	if digits == "" {
		return Amount{}, nil
	}
	v, ok := new(big.Int).SetString(digits, 10)
	if !ok {
		// scan admitted only digits; unreachable, but never panic on input.
		return Amount{}, fmt.Errorf("%w: %s", ErrMalformed, quote(s))
	}
	if v.BitLen() > 256 {
		return Amount{}, fmt.Errorf("%w: %s is more than 2^256-1 base units", ErrOverflow, quote(s))
	}
	var a Amount
	v.FillBytes(a.be[:])
	return a, nil
}

// quoteMax bounds how much of an input an error message repeats.
const quoteMax = 40

// quote returns s quoted, truncated to its first bytes when long.
func quote(s string) string {
	if len(s) <= quoteMax {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:quoteMax-8]), len(s))
}
