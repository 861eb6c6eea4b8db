package policy

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseUnits(t *testing.T) {
	tests := []struct {
		in   string
		dec  int
		want string // "" means error
	}{
		{"1", 18, "1000000000000000000"},
		{"1.5", 18, "1500000000000000000"},
		{"0.000000000000000001", 18, "1"},
		{"0.0000000000000000001", 18, ""},
		{"10.000", 18, "10000000000000000000"},
		{"0", 8, "0"},
		{"21000000", 8, "2100000000000000"},
		{"5", 0, "5"},
		{"5.0", 0, ""},
		{"01", 8, ""},
		{"-1", 8, ""},
		{"+1", 8, ""},
		{"1e3", 8, ""},
		{"1.", 8, ""},
		{".5", 8, ""},
		{"1.2.3", 8, ""},
		{" 1", 8, ""},
		{"", 8, ""},
		{"0x10", 8, ""},
		{strings.Repeat("9", 79), 0, ""},
	}
	for _, tc := range tests {
		a, err := ParseUnits(tc.in, tc.dec)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseUnits(%q, %d) = %s, want error", tc.in, tc.dec, a)
			}
			continue
		}
		if err != nil || a.String() != tc.want {
			t.Errorf("ParseUnits(%q, %d) = %s, %v; want %s", tc.in, tc.dec, a, err, tc.want)
		}
	}
	if got := units(t, "1.5", 18).FormatUnits(18); got != "1.5" {
		t.Errorf("FormatUnits = %s", got)
	}
	if got := NewAmount(1).FormatUnits(8); got != "0.00000001" {
		t.Errorf("FormatUnits = %s", got)
	}
}

func TestAmountJSON(t *testing.T) {
	var a Amount
	if err := json.Unmarshal([]byte(`"115792089237316195423570985008687907853269984665640564039457584007913129639935"`), &a); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`5`, `"5.0"`, `"-5"`, `"115792089237316195423570985008687907853269984665640564039457584007913129639936"`, `null`, `"0x5"`} {
		if err := json.Unmarshal([]byte(bad), &a); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	b, _ := json.Marshal(NewAmount(42))
	if string(b) != `"42"` {
		t.Errorf("marshal = %s", b)
	}
}

func TestAlwaysColdAndMaxWindow(t *testing.T) {
	b := `version: 1
assets: {ETH: {decimals: 18}}
allowlist: {cooling_off: 1h, approvals: 1, roles: [admin]}
lock: {unlock_delay: 0s}
wallets:
  - name: vault
    wallets: [w1]
    asset: ETH
    class: hot
    allowlist_required: false
    limits: {per_tx: "1", velocity: {window: 72h, max: "2"}}
    route: {always_cold: true}
    approvals: [{min: "0", required: 1, roles: [admin]}]
`
	r, err := ParseRules([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	req := ethReq(t, "r", "w1", dest1, "0.1")
	if d := Evaluate(r, State{}, req, t0); !d.Allowed || d.Route != RouteCold {
		t.Fatalf("always_cold: %+v", d)
	}
	if r.MaxWindow().Hours() != 72 {
		t.Fatalf("MaxWindow = %v", r.MaxWindow())
	}
}
