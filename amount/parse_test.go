package amount_test

import (
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/amount/amounttest"
)

var sentinels = []error{amount.ErrMalformed, amount.ErrNegative, amount.ErrTooPrecise, amount.ErrOverflow, amount.ErrDecimals}

// checkRefusal: err wraps want and no other sentinel, and its message has
// the package prefix.
func checkRefusal(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("%s: error %v also wraps %v", what, err, s)
		}
	}
	if !strings.HasPrefix(err.Error(), "amount: ") {
		t.Fatalf("%s: error %q lacks the package prefix", what, err)
	}
}

// TestUnitsTable is the shared table through ParseUnits and Format.
func TestUnitsTable(t *testing.T) {
	for _, c := range amounttest.Units {
		got, err := amount.ParseUnits(c.In, c.Decimals)
		if c.Err != nil {
			checkRefusal(t, strings.Join([]string{"ParseUnits", c.In}, " "), err, c.Err)
			continue
		}
		if err != nil || got.String() != c.Base {
			t.Fatalf("ParseUnits(%q, %d) = %s, %v; want %s", c.In, c.Decimals, got, err, c.Base)
		}
		if f := got.Format(c.Decimals); f != c.In {
			t.Fatalf("Format(%d) of %s = %q, want the input %q", c.Decimals, got, f, c.In)
		}
	}
}

// TestBasesTable is the shared table through ParseBase, String and
// UnmarshalText.
func TestBasesTable(t *testing.T) {
	for _, c := range amounttest.Bases {
		got, err := amount.ParseBase(c.In)
		var viaText amount.Amount
		textErr := viaText.UnmarshalText([]byte(c.In))
		if c.Err != nil {
			checkRefusal(t, "ParseBase "+c.In, err, c.Err)
			checkRefusal(t, "UnmarshalText "+c.In, textErr, c.Err)
			continue
		}
		if err != nil || got.String() != c.In || textErr != nil || viaText != got {
			t.Fatalf("ParseBase(%q) = %s, %v; UnmarshalText = %s, %v", c.In, got, err, viaText, textErr)
		}
	}
}

// TestParseUnits keeps the assertions of the former policy.ParseUnits and
// chains.ParseAmount tests that still hold under the canonical grammar.
func TestParseUnits(t *testing.T) {
	wei := func(s string) string { v, _ := new(big.Int).SetString(s, 10); return v.String() }
	good := []struct {
		in   string
		dec  int
		want string
	}{
		{"1", 18, "1000000000000000000"},
		{"1.5", 18, "1500000000000000000"},
		{"0.000000000000000001", 18, "1"},
		{"0", 8, "0"},
		{"21000000", 8, "2100000000000000"},
		{"5", 0, "5"},
		{"42", 0, "42"},
		{"0.5", 8, "50000000"}, // chains accepted ".5"; the one spelling is "0.5"
		{"1.5", 1, "15"},       // chains accepted "1.50"; the one spelling is "1.5"
		{amounttest.Max, 0, wei(amounttest.Max)},
		{"1", amount.MaxDecimals, "1" + strings.Repeat("0", 77)},
	}
	for _, c := range good {
		got, err := amount.ParseUnits(c.in, c.dec)
		if err != nil || got.String() != c.want {
			t.Fatalf("ParseUnits(%q, %d) = %s, %v; want %s", c.in, c.dec, got, err, c.want)
		}
	}
	bad := []struct {
		in   string
		dec  int
		want error
	}{
		{"1", amount.MaxDecimals + 1, amount.ErrDecimals},
		{"1", -1, amount.ErrDecimals},
		{"2", amount.MaxDecimals, amount.ErrOverflow},
		{"1.50", 1, amount.ErrMalformed}, // chains accepted it (trailing zeros carried no precision)
		{".5", 8, amount.ErrMalformed},   // chains accepted it
		{"01.5", 1, amount.ErrMalformed}, // chains accepted it
		{"0.10", 1, amount.ErrMalformed}, // chains accepted it
		{"10.000", 18, amount.ErrMalformed},
		{"-", 8, amount.ErrNegative},
		{"-x", 8, amount.ErrNegative},
		{"1.2.", 8, amount.ErrMalformed},
		{"\xff", 8, amount.ErrMalformed},
		{"1\x00", 8, amount.ErrMalformed},
		{strings.Repeat("9", 1<<20), 18, amount.ErrOverflow},
		{"0." + strings.Repeat("0", 1<<20) + "1", 18, amount.ErrTooPrecise},
		{"0." + strings.Repeat("1", 78), amount.MaxDecimals, amount.ErrTooPrecise},
	}
	for _, c := range bad {
		_, err := amount.ParseUnits(c.in, c.dec)
		checkRefusal(t, c.in, err, c.want)
	}
}

// TestParseBase keeps the former policy.ParseAmount assertions.
func TestParseBase(t *testing.T) {
	for _, s := range []string{"0", "1", "1000000", "100000000000000000000", amounttest.Max} {
		a, err := amount.ParseBase(s)
		if err != nil || a.String() != s {
			t.Fatalf("ParseBase(%q) = %s, %v", s, a, err)
		}
	}
	for s, want := range map[string]error{
		strings.Repeat("0", 91): amount.ErrMalformed,
		`""`:                    amount.ErrMalformed,
		"Ό":                     amount.ErrMalformed,
		"\x7f\x9f\x8c":          amount.ErrMalformed,
		"1.":                    amount.ErrMalformed,
		".1":                    amount.ErrMalformed,
		"-0":                    amount.ErrNegative,
	} {
		_, err := amount.ParseBase(s)
		checkRefusal(t, s, err, want)
	}
}

// TestErrorMessages: the message names the rule and quotes the input,
// truncated.
func TestErrorMessages(t *testing.T) {
	long := strings.Repeat("1", 1000) + "x"
	for _, c := range []struct {
		in   string
		dec  int
		want string
	}{
		{"1.50", 1, `amount: malformed: "1.50": trailing zero in the fraction (write "1.5")`},
		{"01.5", 1, `amount: malformed: "01.5": leading zero`},
		{".5", 1, `amount: malformed: ".5": no digit before '.'`},
		{"1.", 1, `amount: malformed: "1.": no digit after '.'`},
		{"1e3", 1, `amount: malformed: "1e3": 'e' at byte 1: only digits and one '.' are allowed (no exponent)`},
		{"1,000", 1, `(no separators or spaces)`},
		{"１", 1, `amount: malformed: "１": '１' at byte 0: only digits and one '.' are allowed`},
		{"", 1, `amount: malformed: empty`},
		{"-1", 1, `amount: negative: "-1"`},
		{"0.05", 1, `amount: too precise: "0.05" has 2 fraction digits, the asset has 1 decimals`},
		{"1" + strings.Repeat("0", 78), 0, `amount: too large: "10000000000000000000000000000000"… (79 bytes) is more than 2^256-1 base units`},
		{long, 0, `… (1001 bytes): 'x' at byte 1000`},
		{"1", 78, `amount: decimals out of range: 78 is not in 0..77`},
	} {
		_, err := amount.ParseUnits(c.in, c.dec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseUnits(%q, %d) error %v, want it to contain %s", c.in, c.dec, err, c.want)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("ParseUnits(%q...) error is %d bytes long", c.in[:10], len(err.Error()))
		}
	}
	if _, err := amount.ParseBase("1.5"); err == nil || !strings.Contains(err.Error(), "base units are a whole number") {
		t.Errorf("ParseBase(1.5) error %v", err)
	}
}
