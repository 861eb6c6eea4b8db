package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/quorum"
)

// RulesVersion is the only rules file format version this build reads.
const RulesVersion = 1

// Class is a wallet's key class: hot keys sign online, cold keys only in an
// air-gapped ceremony.
type Class string

// Wallet classes.
const (
	ClassHot  Class = "hot"
	ClassCold Class = "cold"
)

// Route is how an allowed request gets signed.
type Route string

// Routes.
const (
	RouteHot  Route = "hot"
	RouteCold Route = "cold"
)

// Duration is a time.Duration written as Go duration text ("24h", "90m").
type Duration time.Duration

// MarshalText writes the canonical Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string; negative durations are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("policy: duration: %w", err)
	}
	if v < 0 {
		return fmt.Errorf("policy: duration %q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// Rules is a parsed, validated rules file. Build it with ParseRules and treat
// it as read-only: the hash and the lookup index are computed at parse time.
// The zero value (and nil) denies everything.
type Rules struct {
	Version   int                 `json:"version"`
	Assets    map[string]Asset    `json:"assets"`
	Groups    map[string][]string `json:"groups,omitempty"`
	Allowlist AllowlistPolicy     `json:"allowlist"`
	Lock      LockPolicy          `json:"lock"`
	Wallets   []Rule              `json:"wallets"`

	hash  string
	index map[string]int // wallet "\x00" asset -> rule index
}

// Asset declares an asset ID ("ETH", "BTC", "ERC20:0x...") and its decimals.
type Asset struct {
	Decimals int `json:"decimals"`
}

// AllowlistPolicy governs additions to allowlists.
type AllowlistPolicy struct {
	// CoolingOff is the delay between an addition's approval and the first
	// payment to it.
	CoolingOff Duration `json:"cooling_off"`
	// Approvals distinct operators with one of Roles approve an addition.
	Approvals int           `json:"approvals"`
	Roles     []quorum.Role `json:"roles"`
}

// LockPolicy governs unlocking. Unlocking always needs the registry's admin
// quorum; UnlockDelay then passes before the lock lifts.
type LockPolicy struct {
	UnlockDelay Duration `json:"unlock_delay"`
}

// Rule applies to withdrawals of one asset from a set of wallets.
type Rule struct {
	Name              string         `json:"name"`
	Wallets           []string       `json:"wallets,omitempty"`
	Groups            []string       `json:"groups,omitempty"`
	Asset             string         `json:"asset"`
	FeeAsset          string         `json:"fee_asset"`
	Class             Class          `json:"class"`
	AllowlistRequired bool           `json:"allowlist_required"`
	Limits            Limits         `json:"limits"`
	Route             RouteRule      `json:"route"`
	Approvals         []ApprovalTier `json:"approvals"`
}

// Limits bound single withdrawals and their rate, in base units. MaxFee
// caps a transaction's maximum fee, in base units of the rule's FeeAsset;
// when the fee is paid in the withdrawn asset (native wallets) the maximum
// fee also counts toward PerTx and Velocity (see [Rules.Charge]).
//
// MaxFeeRate, when not 0, also caps the fee per virtual byte (base units of
// FeeAsset per vbyte: sat/vB for Bitcoin) of requests that name their
// virtual size (Request.VSize); MaxFee stays the absolute cap.
type Limits struct {
	PerTx      amount.Amount `json:"per_tx"`
	MaxFee     amount.Amount `json:"max_fee"`
	MaxFeeRate uint64        `json:"max_fee_rate,omitempty"`
	Velocity   *Velocity     `json:"velocity,omitempty"`
}

// Velocity bounds the sum of signed amounts of the asset from one wallet
// within the rolling window ending now, including the request itself.
type Velocity struct {
	Window Duration      `json:"window"`
	Max    amount.Amount `json:"max"`
}

// RouteRule decides hot or cold. A cold wallet always routes cold. A hot
// wallet routes hot unless AlwaysCold, or the amount exceeds ColdAbove.
type RouteRule struct {
	ColdAbove  *amount.Amount `json:"cold_above,omitempty"`
	AlwaysCold bool           `json:"always_cold,omitempty"`
}

// ApprovalTier applies to amounts >= Min (the highest such tier wins).
type ApprovalTier struct {
	Min      amount.Amount `json:"min"`
	Required int           `json:"required"`
	Roles    []quorum.Role `json:"roles"`
}

// Hash is the rules' identity: hex SHA-256 of "custody/policy-rules/v1" 0x00
// and the canonical JSON of the parsed rules (amounts in base units, maps
// sorted). Comments, key order and "1.50" vs "1.5" do not change it.
func (r *Rules) Hash() string { return r.hash }

// CanonicalJSON returns the bytes the hash is computed over (after the tag).
func (r *Rules) CanonicalJSON() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic("policy: rules are not JSON-encodable: " + err.Error())
	}
	return b
}

// finish computes the hash and the lookup index of validated rules.
func (r *Rules) finish() {
	sum := sha256.Sum256(append([]byte("custody/policy-rules/v1\x00"), r.CanonicalJSON()...))
	r.hash = hex.EncodeToString(sum[:])
	r.index = map[string]int{}
	for i, rule := range r.Wallets {
		for _, w := range r.ruleWallets(rule) {
			r.index[w+"\x00"+rule.Asset] = i
		}
	}
}

// ruleWallets expands a rule's wallets and groups.
func (r *Rules) ruleWallets(rule Rule) []string {
	ws := slices.Clone(rule.Wallets)
	for _, g := range rule.Groups {
		ws = append(ws, r.Groups[g]...)
	}
	slices.Sort(ws)
	return slices.Compact(ws)
}

// Match returns the rule for withdrawals of asset from wallet.
func (r *Rules) Match(wallet, asset string) (*Rule, bool) {
	if r == nil || r.index == nil {
		return nil, false
	}
	i, ok := r.index[wallet+"\x00"+asset]
	if !ok {
		return nil, false
	}
	return &r.Wallets[i], true
}

// tier returns the approval tier for v: the one with the highest Min not
// above it. Validation guarantees a tier with Min 0.
func (rule *Rule) tier(v amount.Amount) ApprovalTier {
	t := rule.Approvals[0]
	for _, c := range rule.Approvals[1:] {
		if v.Cmp(c.Min) >= 0 {
			t = c
		}
	}
	return t
}

// route applies the routing rule to v.
func (rule *Rule) route(v amount.Amount) Route {
	switch {
	case rule.Class == ClassCold, rule.Route.AlwaysCold:
		return RouteCold
	case rule.Route.ColdAbove != nil && v.Cmp(*rule.Route.ColdAbove) > 0:
		return RouteCold
	}
	return RouteHot
}
