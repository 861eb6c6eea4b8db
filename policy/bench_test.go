package policy

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkAuthorize5Approvals10kAllowlist: one full decision (locks, rule,
// allowlist lookup, limits, velocity over 100 spends, 5 Ed25519 approvals
// verified and counted) against a 10,000-address allowlist.
func BenchmarkAuthorize5Approvals10kAllowlist(b *testing.B) {
	rules := loadRules(b)
	w := newWorld(b)
	entries := make([]AllowlistEntry, 0, 10000)
	for i := range 10000 {
		entries = append(entries, AllowlistEntry{Wallet: "eth-hot-1", Chain: "eth", Network: "mainnet",
			Address: fmt.Sprintf("0x%040x", i), ApprovedAt: t0.Add(-48 * time.Hour), ActiveAt: t0.Add(-24 * time.Hour)})
	}
	var history []Spend
	for i := range 100 {
		history = append(history, Spend{Wallet: "eth-hot-1", Asset: "ETH", Amount: units(b, "0.01", 18), At: t0.Add(-time.Duration(i) * time.Minute)})
	}
	st, err := NewState(entries, nil, history)
	if err != nil {
		b.Fatal(err)
	}
	req := ethReq(b, "wd-bench", "eth-hot-1", fmt.Sprintf("0x%040x", 7777), "6")
	approvals := w.approveReq(b, req, "alice", "bob", "carol", "dave", "erin")
	if d := Authorize(rules, st, w.reg, req, approvals, t0); !d.Approved {
		b.Fatalf("benchmark request not approved: %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Authorize(rules, st, w.reg, req, approvals, t0)
	}
}

// BenchmarkEvaluate10kAllowlist: the policy part alone, without signatures.
func BenchmarkEvaluate10kAllowlist(b *testing.B) {
	rules := loadRules(b)
	entries := make([]AllowlistEntry, 0, 10000)
	for i := range 10000 {
		entries = append(entries, AllowlistEntry{Wallet: "eth-hot-1", Chain: "eth", Network: "mainnet", Address: fmt.Sprintf("0x%040x", i)})
	}
	st, _ := NewState(entries, nil, nil)
	req := ethReq(b, "wd-bench", "eth-hot-1", fmt.Sprintf("0x%040x", 7777), "6")
	b.ReportAllocs()
	for b.Loop() {
		Evaluate(rules, st, req, t0)
	}
}
