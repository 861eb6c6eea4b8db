package amount_test

import (
	"encoding/json"
	"errors"
	"math/big"
	"regexp"
	"testing"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/amount/amounttest"
)

// The grammar of the package doc as regular expressions: an independent
// statement of it the parsers are checked against.
var (
	unitsGrammar = regexp.MustCompile(`^(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$`)
	baseGrammar  = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)
	maxBig, _    = new(big.Int).SetString(amounttest.Max, 10)
)

// refUnits is the reference: the value of s if the grammar, decimals and
// range admit it, else nil. It uses big.Rat, a different road to the value.
func refUnits(s string, decimals int) *big.Int {
	if decimals < 0 || decimals > amount.MaxDecimals || len(s) > 400 || !unitsGrammar.MatchString(s) {
		return nil
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil)))
	if !r.IsInt() || r.Num().Cmp(maxBig) > 0 {
		return nil
	}
	return r.Num()
}

// oneSentinel fails unless err wraps exactly one of the package's sentinels.
func oneSentinel(t *testing.T, err error) {
	t.Helper()
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v wraps %d sentinels", err, n)
	}
}

// FuzzParseUnits: a string is accepted exactly when the reference grammar
// accepts it, with the reference's value; an accepted string formats back
// to itself (it is the canonical spelling); refusals wrap one sentinel;
// nothing panics.
func FuzzParseUnits(f *testing.F) {
	for _, c := range amounttest.Units {
		f.Add(c.In, uint8(c.Decimals))
	}
	f.Fuzz(func(t *testing.T, s string, dec uint8) {
		d := int(dec)
		a, err := amount.ParseUnits(s, d)
		want := refUnits(s, d)
		if err != nil {
			oneSentinel(t, err)
			if want != nil {
				t.Fatalf("ParseUnits(%q, %d) refused a canonical amount: %v", s, d, err)
			}
			return
		}
		if want == nil || a.Big().Cmp(want) != 0 {
			t.Fatalf("ParseUnits(%q, %d) = %s, reference %v", s, d, a, want)
		}
		if f := a.Format(d); f != s {
			t.Fatalf("ParseUnits(%q, %d) = %s formats as %q", s, d, a, f)
		}
		if b, err := amount.ParseBase(a.String()); err != nil || b != a {
			t.Fatalf("base round trip of %s: %s %v", a, b, err)
		}
	})
}

// FuzzParseBase: accepted exactly when the base grammar and range admit the
// string; String gives it back; text and JSON decoding agree with it.
func FuzzParseBase(f *testing.F) {
	for _, c := range amounttest.Bases {
		f.Add(c.In)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := amount.ParseBase(s)
		ok := baseGrammar.MatchString(s) && len(s) <= 78
		if ok {
			v, _ := new(big.Int).SetString(s, 10)
			ok = v.Cmp(maxBig) <= 0
		}
		var viaJSON amount.Amount
		jsonErr := json.Unmarshal(append(append([]byte{'"'}, s...), '"'), &viaJSON)
		if err != nil {
			oneSentinel(t, err)
			if ok {
				t.Fatalf("ParseBase(%q) refused a canonical amount: %v", s, err)
			}
			if jsonErr == nil {
				t.Fatalf("JSON accepted %q, ParseBase refused it: %v", s, err)
			}
			return
		}
		if !ok || a.String() != s {
			t.Fatalf("ParseBase(%q) = %s", s, a)
		}
		if jsonErr != nil || viaJSON != a {
			t.Fatalf("JSON of %q = %s, %v", s, viaJSON, jsonErr)
		}
	})
}

// FuzzFormat: for any value and decimals, Format's output re-parses to the
// same value, and String/MarshalText/JSON round-trip.
func FuzzFormat(f *testing.F) {
	f.Add([]byte{}, uint8(18))
	f.Add([]byte{1}, uint8(8))
	f.Add([]byte{0x14, 0xd1, 0x12, 0x0d, 0x7b, 0x16, 0x00, 0x00}, uint8(18))
	f.Add(maxBig.Bytes(), uint8(0))
	f.Add(maxBig.Bytes(), uint8(77))
	f.Add([]byte{10}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, dec uint8) {
		if len(b) > 32 {
			b = b[:32]
		}
		a, err := amount.FromBig(new(big.Int).SetBytes(b))
		if err != nil {
			t.Fatal(err)
		}
		d := int(dec) % (amount.MaxDecimals + 1)
		s := a.Format(d)
		back, err := amount.ParseUnits(s, d)
		if err != nil || back != a {
			t.Fatalf("Format(%s, %d) = %q re-parses as %s, %v", a, d, s, back, err)
		}
		j, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		var viaJSON amount.Amount
		if err := json.Unmarshal(j, &viaJSON); err != nil || viaJSON != a {
			t.Fatalf("JSON %s = %s, %v", j, viaJSON, err)
		}
		if base, err := amount.ParseBase(a.String()); err != nil || base != a {
			t.Fatalf("String %s re-parses as %s, %v", a, base, err)
		}
	})
}
