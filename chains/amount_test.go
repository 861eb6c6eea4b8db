package chains

import (
	"errors"
	"math/big"
	"strings"
	"testing"
)

func TestParseAmount(t *testing.T) {
	wei := func(s string) *big.Int { v, _ := new(big.Int).SetString(s, 10); return v }
	good := []struct {
		in   string
		dec  uint8
		want *big.Int
	}{
		{"1.5", 18, wei("1500000000000000000")},
		{"0.000000000000000001", 18, big.NewInt(1)},
		{"42", 0, big.NewInt(42)},
		{"1.50", 1, big.NewInt(15)},
		{".5", 8, big.NewInt(50000000)},
		{"0", 8, big.NewInt(0)},
		{"21000000", 8, wei("2100000000000000")},
		{MaxUint256.String(), 0, MaxUint256},
	}
	for _, c := range good {
		got, err := ParseAmount(c.in, c.dec)
		if err != nil {
			t.Fatalf("ParseAmount(%q, %d): %v", c.in, c.dec, err)
		}
		if got.Cmp(c.want) != 0 {
			t.Fatalf("ParseAmount(%q, %d) = %s, want %s", c.in, c.dec, got, c.want)
		}
	}
	bad := []struct {
		in   string
		dec  uint8
		want error
	}{
		{"-1", 18, ErrNegativeAmount},
		{"-0.1", 18, ErrNegativeAmount},
		{"1.0000000000000000001", 18, ErrAmountTooPrecise},
		{"0.000000001", 8, ErrAmountTooPrecise},
		{"1.5", 0, ErrAmountTooPrecise},
		{new(big.Int).Add(MaxUint256, big.NewInt(1)).String(), 0, ErrAmountOverflow},
		{"1" + strings.Repeat("0", 60), 18, ErrAmountOverflow},
		{"", 18, ErrMalformedAmount},
		{".", 18, ErrMalformedAmount},
		{"1.", 18, ErrMalformedAmount},
		{"1e18", 18, ErrMalformedAmount},
		{"+1", 18, ErrMalformedAmount},
		{"1,000", 18, ErrMalformedAmount},
		{" 1", 18, ErrMalformedAmount},
		{"1.2.3", 18, ErrMalformedAmount},
		{"0x10", 18, ErrMalformedAmount},
		{"NaN", 18, ErrMalformedAmount},
		{"１", 18, ErrMalformedAmount},
		{"1", 78, ErrMalformedAmount},
	}
	for _, c := range bad {
		_, err := ParseAmount(c.in, c.dec)
		if !errors.Is(err, c.want) {
			t.Fatalf("ParseAmount(%q, %d) error = %v, want %v", c.in, c.dec, err, c.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "chains: ") {
			t.Fatalf("error %q lacks package prefix", err)
		}
	}
}

func TestFormatAmountRoundTrip(t *testing.T) {
	cases := []struct {
		v   *big.Int
		dec uint8
		out string
	}{
		{big.NewInt(1500000000000000000), 18, "1.5"},
		{big.NewInt(1), 18, "0.000000000000000001"},
		{big.NewInt(0), 18, "0"},
		{big.NewInt(100000000), 8, "1"},
		{big.NewInt(123), 0, "123"},
		{big.NewInt(-5), 1, "-0.5"},
		{MaxUint256, 18, FormatAmount(MaxUint256, 18)},
	}
	for _, c := range cases {
		got := FormatAmount(c.v, c.dec)
		if got != c.out {
			t.Fatalf("FormatAmount(%s, %d) = %q, want %q", c.v, c.dec, got, c.out)
		}
		if c.v.Sign() < 0 {
			continue
		}
		back, err := ParseAmount(got, c.dec)
		if err != nil || back.Cmp(c.v) != 0 {
			t.Fatalf("round trip of %s: %v %v", c.v, back, err)
		}
	}
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"1.5", "0", "-1", "1e5", "0.000000000000000001", "99999999999999999999999999999999999999999999999999999999999999999999999999999999"} {
		f.Add(s, uint8(18))
	}
	f.Fuzz(func(t *testing.T, s string, dec uint8) {
		v, err := ParseAmount(s, dec)
		if err != nil {
			return
		}
		if v.Sign() < 0 || v.Cmp(MaxUint256) > 0 {
			t.Fatalf("out of range %s", v)
		}
		back, err := ParseAmount(FormatAmount(v, dec), dec)
		if err != nil || back.Cmp(v) != 0 {
			t.Fatalf("round trip %q -> %s -> %v (%v)", s, v, back, err)
		}
	})
}
