package amount_test

import (
	"encoding/json"
	"errors"
	"math/big"
	"testing"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/amount/amounttest"
)

func mustBase(t testing.TB, s string) amount.Amount {
	t.Helper()
	a, err := amount.ParseBase(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestZeroValue(t *testing.T) {
	var z amount.Amount
	if z.String() != "0" || z.Sign() != 0 || z.Format(18) != "0" || z.Big().Sign() != 0 || z != amount.FromUint64(0) {
		t.Fatalf("zero value: %s %d %s", z, z.Sign(), z.Format(18))
	}
	if amount.FromUint64(1).Sign() != 1 {
		t.Fatal("Sign(1) != 1")
	}
}

func TestCompare(t *testing.T) {
	a, b := amount.FromUint64(5), mustBase(t, "5")
	if a != b || a.Cmp(b) != 0 {
		t.Fatal("equal values differ")
	}
	big1 := mustBase(t, "18446744073709551616") // 2^64
	if amount.FromUint64(^uint64(0)).Cmp(big1) != -1 || big1.Cmp(a) != 1 || amount.Max().Cmp(big1) != 1 {
		t.Fatal("Cmp order")
	}
	if amount.Max().String() != amounttest.Max {
		t.Fatalf("Max = %s", amount.Max())
	}
}

func TestFromBig(t *testing.T) {
	m, _ := new(big.Int).SetString(amounttest.Max, 10)
	a, err := amount.FromBig(m)
	if err != nil || a != amount.Max() {
		t.Fatalf("FromBig(max) = %s, %v", a, err)
	}
	m.SetInt64(7) // FromBig must not retain its argument
	if a != amount.Max() {
		t.Fatal("FromBig aliases its argument")
	}
	b := a.Big()
	b.SetInt64(1) // nor does Big hand out internals
	if a != amount.Max() {
		t.Fatal("Big aliases the amount")
	}
	over, _ := new(big.Int).SetString(amounttest.Max, 10)
	over.Add(over, big.NewInt(1))
	for _, c := range []struct {
		v    *big.Int
		want error
	}{
		{over, amount.ErrOverflow},
		{big.NewInt(-5), amount.ErrNegative},
		{nil, amount.ErrMalformed},
	} {
		_, err := amount.FromBig(c.v)
		checkRefusal(t, "FromBig", err, c.want)
	}
}

func TestAdd(t *testing.T) {
	s, err := amount.FromUint64(^uint64(0)).Add(amount.FromUint64(1))
	if err != nil || s.String() != "18446744073709551616" {
		t.Fatalf("carry: %s %v", s, err)
	}
	if s, err := amount.Max().Add(amount.Amount{}); err != nil || s != amount.Max() {
		t.Fatalf("max+0: %s %v", s, err)
	}
	_, err = amount.Max().Add(amount.FromUint64(1))
	checkRefusal(t, "max+1", err, amount.ErrOverflow)
}

// TestFormat keeps the former FormatUnits and FormatAmount assertions.
func TestFormat(t *testing.T) {
	for _, c := range []struct {
		base string
		dec  int
		want string
	}{
		{"1500000000000000000", 18, "1.5"},
		{"1", 18, "0.000000000000000001"},
		{"1", 8, "0.00000001"},
		{"0", 18, "0"},
		{"100000000", 8, "1"},
		{"123", 0, "123"},
		{"10", 1, "1"},
		{amounttest.Max, 18, amounttest.Max[:60] + "." + amounttest.Max[60:]},
		{amounttest.Max, 77, "1.15792089237316195423570985008687907853269984665640564039457584007913129639935"},
		{"15", 78, "%!(BADDECIMALS=78)15"},
		{"15", -1, "%!(BADDECIMALS=-1)15"},
	} {
		a := mustBase(t, c.base)
		got := a.Format(c.dec)
		if got != c.want {
			t.Fatalf("Format(%s, %d) = %q, want %q", c.base, c.dec, got, c.want)
		}
		if back, err := amount.ParseUnits(got, c.dec); c.dec >= 0 && c.dec <= amount.MaxDecimals && (err != nil || back != a) {
			t.Fatalf("round trip of %s: %s %v", c.base, back, err)
		}
	}
}

// TestJSON keeps the former policy.Amount JSON assertions.
func TestJSON(t *testing.T) {
	var a amount.Amount
	if err := json.Unmarshal([]byte(`"`+amounttest.Max+`"`), &a); err != nil || a != amount.Max() {
		t.Fatal(a, err)
	}
	for _, bad := range []string{`5`, `"5.0"`, `"-5"`, `"115792089237316195423570985008687907853269984665640564039457584007913129639936"`, `null`, `"0x5"`, `"\u0035"`, `"05"`, `""`, `"`, `5.0`, `true`, `["5"]`} {
		if err := json.Unmarshal([]byte(bad), &a); err == nil {
			t.Errorf("accepted %s", bad)
		} else if !errors.Is(err, amount.ErrMalformed) && !errors.Is(err, amount.ErrNegative) && !errors.Is(err, amount.ErrOverflow) {
			// json reports bad syntax and non-scalars itself.
			var ute *json.UnmarshalTypeError
			var se *json.SyntaxError
			if !errors.As(err, &ute) && !errors.As(err, &se) {
				t.Errorf("%s: error %v wraps no amount sentinel", bad, err)
			}
		}
	}
	b, err := json.Marshal(struct {
		A amount.Amount  `json:"a"`
		P *amount.Amount `json:"p"`
	}{amount.FromUint64(42), new(amount.Amount)})
	if err != nil || string(b) != `{"a":"42","p":"0"}` {
		t.Errorf("marshal = %s, %v", b, err)
	}
	for _, c := range amounttest.Bases {
		var v amount.Amount
		err := json.Unmarshal([]byte(`"`+c.In+`"`), &v)
		if c.Err != nil {
			checkRefusal(t, "JSON "+c.In, err, c.Err)
		} else if err != nil || v.String() != c.In {
			t.Errorf("JSON %q = %s, %v", c.In, v, err)
		}
	}
}
