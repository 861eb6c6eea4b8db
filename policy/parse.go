package policy

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/quorum"
	"gopkg.in/yaml.v3"
)

// ErrInvalidRules is wrapped by every rules parsing and validation error.
var ErrInvalidRules = errors.New("policy: invalid rules")

// MaxRulesSize bounds a rules file.
const MaxRulesSize = 1 << 20

// ParseRules parses and validates a rules file. Parsing is strict: unknown
// keys, duplicate keys, aliases, wrong scalar types, several documents and
// missing required fields are errors, and every error names the YAML path
// (e.g. "wallets[1].limits.per_tx") and line.
func ParseRules(data []byte) (*Rules, error) {
	if len(data) > MaxRulesSize {
		return nil, fmt.Errorf("%w: file is larger than %d bytes", ErrInvalidRules, MaxRulesSize)
	}
	// Decoding into a yaml.Node and walking it (instead of KnownFields on a
	// struct) is what lets every error name its path, not just a line.
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrInvalidRules)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidRules, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: only one YAML document is allowed", ErrInvalidRules)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("%w: not a YAML document", ErrInvalidRules)
	}
	p := &parser{}
	r := p.rules(doc.Content[0])
	if p.err != nil {
		return nil, p.err
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	r.finish()
	return r, nil
}

// parser walks the node tree, recording the first error with its path.
type parser struct{ err error }

func (p *parser) fail(n *yaml.Node, path, format string, args ...any) {
	if p.err != nil {
		return
	}
	p.err = fmt.Errorf("%w: %s: %s", ErrInvalidRules, where(n, path), fmt.Sprintf(format, args...))
}

// failWrap is fail for an error a caller may branch on as well (an amount
// too precise for its asset): the result wraps both err and ErrInvalidRules.
func (p *parser) failWrap(n *yaml.Node, path string, err error) {
	if p.err != nil {
		return
	}
	p.err = fmt.Errorf("%w: %s: %w", ErrInvalidRules, where(n, path), err)
}

// where names a place in the file: its YAML path and line.
func where(n *yaml.Node, path string) string {
	if path == "" {
		path = "(top level)"
	}
	if n != nil {
		return fmt.Sprintf("%s (line %d)", path, n.Line)
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping visits each key of a mapping node; unknown keys and missing
// required keys are errors.
func (p *parser) mapping(n *yaml.Node, path string, fields map[string]func(*yaml.Node, string), required ...string) {
	if p.err != nil {
		return
	}
	if n.Kind == yaml.AliasNode {
		p.fail(n, path, "aliases are not allowed")
		return
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "must be a mapping")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			p.fail(k, path, "keys must be plain strings")
			return
		}
		f, ok := fields[k.Value]
		if !ok {
			known := make([]string, 0, len(fields))
			for name := range fields {
				known = append(known, name)
			}
			slices.Sort(known)
			p.fail(k, join(path, k.Value), "unknown field (known: %s)", strings.Join(known, ", "))
			return
		}
		if seen[k.Value] {
			p.fail(k, join(path, k.Value), "duplicate key")
			return
		}
		seen[k.Value] = true
		if v.Kind == yaml.AliasNode {
			p.fail(v, join(path, k.Value), "aliases are not allowed")
			return
		}
		f(v, join(path, k.Value))
		if p.err != nil {
			return
		}
	}
	for _, req := range required {
		if !seen[req] {
			p.fail(n, join(path, req), "required field is missing")
			return
		}
	}
}

// dict visits a mapping with free-form string keys (assets, groups).
func (p *parser) dict(n *yaml.Node, path string, each func(key string, v *yaml.Node, path string)) {
	if p.err != nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "must be a mapping")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			p.fail(k, path, "keys must be plain strings")
			return
		}
		if seen[k.Value] {
			p.fail(k, join(path, k.Value), "duplicate key")
			return
		}
		seen[k.Value] = true
		if v.Kind == yaml.AliasNode {
			p.fail(v, join(path, k.Value), "aliases are not allowed")
			return
		}
		each(k.Value, v, join(path, k.Value))
		if p.err != nil {
			return
		}
	}
}

func (p *parser) seq(n *yaml.Node, path string, each func(i int, v *yaml.Node, path string)) {
	if p.err != nil {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, path, "must be a list")
		return
	}
	for i, v := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		if v.Kind == yaml.AliasNode {
			p.fail(v, ip, "aliases are not allowed")
			return
		}
		each(i, v, ip)
		if p.err != nil {
			return
		}
	}
}

func (p *parser) scalar(n *yaml.Node, path string, tags ...string) (string, bool) {
	if p.err != nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || !slices.Contains(tags, n.Tag) {
		names := make([]string, len(tags))
		for i, t := range tags {
			names[i] = strings.TrimPrefix(t, "!!")
		}
		p.fail(n, path, "must be a %s", strings.Join(names, " or "))
		return "", false
	}
	return n.Value, true
}

func (p *parser) str(n *yaml.Node, path string) string {
	s, _ := p.scalar(n, path, "!!str")
	return s
}

func (p *parser) integer(n *yaml.Node, path string) int {
	s, ok := p.scalar(n, path, "!!int")
	if !ok {
		return 0
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		p.fail(n, path, "must be a decimal integer")
		return 0
	}
	return int(v)
}

func (p *parser) boolean(n *yaml.Node, path string) bool {
	s, ok := p.scalar(n, path, "!!bool")
	if !ok {
		return false
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	p.fail(n, path, "must be true or false")
	return false
}

func (p *parser) duration(n *yaml.Node, path string) Duration {
	s, ok := p.scalar(n, path, "!!str", "!!int")
	if !ok {
		return 0
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		p.fail(n, path, "must be a non-negative duration like \"24h\" or \"90m\"")
		return 0
	}
	return Duration(v)
}

func (p *parser) strings(n *yaml.Node, path string) []string {
	out := []string{}
	p.seq(n, path, func(_ int, v *yaml.Node, ip string) {
		out = append(out, p.str(v, ip))
	})
	return out
}

func (p *parser) roles(n *yaml.Node, path string) []quorum.Role {
	var out []quorum.Role
	p.seq(n, path, func(_ int, v *yaml.Node, ip string) {
		s := p.str(v, ip)
		if p.err == nil && !quorum.Role(s).Valid() {
			p.fail(v, ip, "unknown role %q", s)
		}
		out = append(out, quorum.Role(s))
	})
	return out
}

// pendingAmount is a unit amount waiting for the asset's decimals (the
// rule's asset, or its fee asset when fee is set).
type pendingAmount struct {
	text string
	node *yaml.Node
	path string
	dst  *amount.Amount
	rule int
	fee  bool
}

func (p *parser) amount(n *yaml.Node, path string, rule int, dst *amount.Amount, amounts *[]pendingAmount) {
	// Numbers are read from the source text, never through a float.
	s, ok := p.scalar(n, path, "!!str", "!!int", "!!float")
	if ok {
		*amounts = append(*amounts, pendingAmount{text: s, node: n, path: path, dst: dst, rule: rule})
	}
}

// feeAmount is amount in units of the rule's fee asset.
func (p *parser) feeAmount(n *yaml.Node, path string, rule int, dst *amount.Amount, amounts *[]pendingAmount) {
	p.amount(n, path, rule, dst, amounts)
	if p.err == nil && len(*amounts) > 0 {
		(*amounts)[len(*amounts)-1].fee = true
	}
}

func (p *parser) rules(n *yaml.Node) *Rules {
	r := &Rules{Assets: map[string]Asset{}, Groups: map[string][]string{}}
	var amounts []pendingAmount
	p.mapping(n, "", map[string]func(*yaml.Node, string){
		"version": func(v *yaml.Node, path string) {
			r.Version = p.integer(v, path)
			if p.err == nil && r.Version != RulesVersion {
				p.fail(v, path, "unsupported version %d (this build reads %d)", r.Version, RulesVersion)
			}
		},
		"assets": func(v *yaml.Node, path string) {
			p.dict(v, path, func(id string, av *yaml.Node, ap string) {
				if err := validAssetID(id); err != nil {
					p.fail(av, ap, "%v", err)
					return
				}
				var a Asset
				p.mapping(av, ap, map[string]func(*yaml.Node, string){
					"decimals": func(dv *yaml.Node, dp string) {
						a.Decimals = p.integer(dv, dp)
						if p.err == nil && (a.Decimals < 0 || a.Decimals > 36) {
							p.fail(dv, dp, "decimals must be 0..36")
						}
					},
				}, "decimals")
				r.Assets[id] = a
			})
		},
		"groups": func(v *yaml.Node, path string) {
			p.dict(v, path, func(name string, gv *yaml.Node, gp string) {
				if err := validName(name); err != nil {
					p.fail(gv, gp, "group name: %v", err)
					return
				}
				ws := p.strings(gv, gp)
				if p.err == nil && len(ws) == 0 {
					p.fail(gv, gp, "a group needs at least one wallet")
				}
				for i, w := range ws {
					if err := validName(w); err != nil {
						p.fail(gv.Content[i], fmt.Sprintf("%s[%d]", gp, i), "wallet id: %v", err)
					}
				}
				r.Groups[name] = ws
			})
		},
		"allowlist": func(v *yaml.Node, path string) {
			p.mapping(v, path, map[string]func(*yaml.Node, string){
				"cooling_off": func(v *yaml.Node, path string) { r.Allowlist.CoolingOff = p.duration(v, path) },
				"approvals": func(v *yaml.Node, path string) {
					r.Allowlist.Approvals = p.integer(v, path)
					if p.err == nil && (r.Allowlist.Approvals < 1 || r.Allowlist.Approvals > 64) {
						p.fail(v, path, "must be 1..64")
					}
				},
				"roles": func(v *yaml.Node, path string) { r.Allowlist.Roles = p.approverRoles(v, path) },
			}, "cooling_off", "approvals", "roles")
		},
		"lock": func(v *yaml.Node, path string) {
			p.mapping(v, path, map[string]func(*yaml.Node, string){
				"unlock_delay": func(v *yaml.Node, path string) { r.Lock.UnlockDelay = p.duration(v, path) },
			}, "unlock_delay")
		},
		"wallets": func(v *yaml.Node, path string) {
			if v.Kind == yaml.SequenceNode {
				// Pre-sized so pending amounts can point into it.
				r.Wallets = make([]Rule, len(v.Content))
			}
			p.seq(v, path, func(i int, rv *yaml.Node, rp string) {
				p.rule(rv, rp, i, &r.Wallets[i], &amounts)
			})
			if p.err == nil && len(r.Wallets) == 0 {
				p.fail(v, path, "at least one wallet rule is needed (everything else is denied anyway)")
			}
		},
	}, "version", "assets", "allowlist", "lock", "wallets")
	if p.err != nil {
		return nil
	}
	if len(r.Assets) == 0 {
		p.fail(n, "assets", "at least one asset must be declared")
		return nil
	}
	// Convert unit amounts now that every rule's asset is known.
	for i := range r.Wallets {
		if r.Wallets[i].FeeAsset == "" {
			r.Wallets[i].FeeAsset = r.Wallets[i].Asset
		}
	}
	for _, a := range amounts {
		asset := r.Wallets[a.rule].Asset
		if a.fee {
			asset = r.Wallets[a.rule].FeeAsset
		}
		decl, ok := r.Assets[asset]
		if !ok {
			p.fail(a.node, a.path, "asset %q of this rule is not declared under assets", asset)
			return nil
		}
		v, err := amount.ParseUnits(a.text, decl.Decimals)
		if err != nil {
			p.failWrap(a.node, a.path, err)
			return nil
		}
		*a.dst = v
	}
	if len(r.Groups) == 0 {
		r.Groups = nil
	}
	// Sets are sorted so that their spelling order does not change the hash.
	for _, g := range r.Groups {
		slices.Sort(g)
	}
	for i := range r.Wallets {
		slices.Sort(r.Wallets[i].Wallets)
		slices.Sort(r.Wallets[i].Groups)
	}
	return r
}

// approverRoles are roles that may count as approvals: admin and approver.
// Initiators and auditors never approve.
func (p *parser) approverRoles(n *yaml.Node, path string) []quorum.Role {
	roles := p.roles(n, path)
	if p.err != nil {
		return nil
	}
	if len(roles) == 0 {
		p.fail(n, path, "at least one role is needed")
	}
	for i, r := range roles {
		if r != quorum.RoleAdmin && r != quorum.RoleApprover {
			p.fail(n.Content[i], fmt.Sprintf("%s[%d]", path, i), "role %q cannot approve (admin or approver)", r)
		}
		if slices.Contains(roles[:i], r) {
			p.fail(n.Content[i], fmt.Sprintf("%s[%d]", path, i), "duplicate role %q", r)
		}
	}
	slices.Sort(roles)
	return roles
}

func (p *parser) rule(n *yaml.Node, path string, idx int, rule *Rule, amounts *[]pendingAmount) {
	rule.AllowlistRequired = true
	p.mapping(n, path, map[string]func(*yaml.Node, string){
		"name":    func(v *yaml.Node, path string) { rule.Name = p.str(v, path) },
		"wallets": func(v *yaml.Node, path string) { rule.Wallets = p.strings(v, path) },
		"groups":  func(v *yaml.Node, path string) { rule.Groups = p.strings(v, path) },
		"asset":   func(v *yaml.Node, path string) { rule.Asset = p.str(v, path) },
		// fee_asset is the asset fees are paid in, when it is not the
		// withdrawn asset (a token on Ethereum pays fees in ETH).
		"fee_asset": func(v *yaml.Node, path string) { rule.FeeAsset = p.str(v, path) },
		"class": func(v *yaml.Node, path string) {
			rule.Class = Class(p.str(v, path))
			if p.err == nil && rule.Class != ClassHot && rule.Class != ClassCold {
				p.fail(v, path, "must be hot or cold")
			}
		},
		"allowlist_required": func(v *yaml.Node, path string) { rule.AllowlistRequired = p.boolean(v, path) },
		"limits": func(v *yaml.Node, path string) {
			p.mapping(v, path, map[string]func(*yaml.Node, string){
				"per_tx": func(v *yaml.Node, path string) { p.amount(v, path, idx, &rule.Limits.PerTx, amounts) },
				// max_fee caps the most a transaction may pay in fees, in
				// units of the fee asset (ETH: gas limit x max fee per gas;
				// BTC: the absolute fee).
				"max_fee": func(v *yaml.Node, path string) { p.feeAmount(v, path, idx, &rule.Limits.MaxFee, amounts) },
				// max_fee_rate caps the fee per virtual byte, in base units
				// of the fee asset (BTC: sat/vB), of requests whose virtual
				// size is known (Bitcoin, checked by members).
				"max_fee_rate": func(v *yaml.Node, path string) {
					n := p.integer(v, path)
					if p.err == nil && n < 1 {
						p.fail(v, path, "must be a positive integer (base units per vbyte)")
					}
					rule.Limits.MaxFeeRate = uint64(max(n, 0))
				},
				"velocity": func(v *yaml.Node, path string) {
					rule.Limits.Velocity = &Velocity{}
					p.mapping(v, path, map[string]func(*yaml.Node, string){
						"window": func(v *yaml.Node, path string) {
							rule.Limits.Velocity.Window = p.duration(v, path)
							if p.err == nil && rule.Limits.Velocity.Window <= 0 {
								p.fail(v, path, "must be positive")
							}
						},
						"max": func(v *yaml.Node, path string) { p.amount(v, path, idx, &rule.Limits.Velocity.Max, amounts) },
					}, "window", "max")
				},
			}, "per_tx", "max_fee")
		},
		"route": func(v *yaml.Node, path string) {
			p.mapping(v, path, map[string]func(*yaml.Node, string){
				"cold_above": func(v *yaml.Node, path string) {
					rule.Route.ColdAbove = new(amount.Amount)
					p.amount(v, path, idx, rule.Route.ColdAbove, amounts)
				},
				"always_cold": func(v *yaml.Node, path string) { rule.Route.AlwaysCold = p.boolean(v, path) },
			})
		},
		"approvals": func(v *yaml.Node, path string) {
			if v.Kind == yaml.SequenceNode {
				rule.Approvals = make([]ApprovalTier, len(v.Content))
			}
			p.seq(v, path, func(i int, tv *yaml.Node, tp string) {
				t := &rule.Approvals[i]
				p.mapping(tv, tp, map[string]func(*yaml.Node, string){
					"min": func(v *yaml.Node, path string) { p.amount(v, path, idx, &t.Min, amounts) },
					"required": func(v *yaml.Node, path string) {
						t.Required = p.integer(v, path)
						if p.err == nil && (t.Required < 1 || t.Required > 64) {
							p.fail(v, path, "must be 1..64")
						}
					},
					"roles": func(v *yaml.Node, path string) { t.Roles = p.approverRoles(v, path) },
				}, "min", "required", "roles")
			})
			if p.err == nil && len(rule.Approvals) == 0 {
				p.fail(v, path, "at least one approval tier is needed")
			}
		},
	}, "name", "asset", "class", "limits", "approvals")
}

func validName(s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("%q must be 1..64 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q: only letters, digits and . _ - are allowed", s)
		}
	}
	return nil
}

// validAssetID accepts symbols like "ETH" or "BTC" and qualified ids like
// "ERC20:0xA0b8...". Policy does not interpret them; they must only match
// what the chain packages put in requests.
func validAssetID(s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("asset id %q must be 1..64 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("asset id %q: only letters, digits and : . _ - are allowed", s)
		}
	}
	return nil
}

// validate checks cross-field constraints; errors name the path.
func (r *Rules) validate() error {
	bad := func(path, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidRules, path, fmt.Sprintf(format, args...))
	}
	owner := map[string]string{} // wallet\x00asset -> rule name
	names := map[string]bool{}
	for i, rule := range r.Wallets {
		path := fmt.Sprintf("wallets[%d]", i)
		if err := validName(rule.Name); err != nil {
			return bad(path+".name", "%v", err)
		}
		if names[rule.Name] {
			return bad(path+".name", "duplicate rule name %q", rule.Name)
		}
		names[rule.Name] = true
		if _, ok := r.Assets[rule.Asset]; !ok {
			return bad(path+".asset", "asset %q is not declared under assets", rule.Asset)
		}
		if len(rule.Wallets) == 0 && len(rule.Groups) == 0 {
			return bad(path, "needs wallets or groups")
		}
		for j, w := range rule.Wallets {
			if err := validName(w); err != nil {
				return bad(fmt.Sprintf("%s.wallets[%d]", path, j), "wallet id: %v", err)
			}
		}
		for j, g := range rule.Groups {
			if _, ok := r.Groups[g]; !ok {
				return bad(fmt.Sprintf("%s.groups[%d]", path, j), "unknown group %q", g)
			}
		}
		for _, w := range r.ruleWallets(rule) {
			k := w + "\x00" + rule.Asset
			if other, dup := owner[k]; dup {
				return bad(path, "wallet %q asset %q is already covered by rule %q (rules must not overlap)", w, rule.Asset, other)
			}
			owner[k] = rule.Name
		}
		if rule.Limits.PerTx.Sign() == 0 {
			return bad(path+".limits.per_tx", "must be positive")
		}
		if rule.Limits.MaxFee.Sign() == 0 {
			return bad(path+".limits.max_fee", "must be positive")
		}
		if v := rule.Limits.Velocity; v != nil {
			if v.Max.Sign() == 0 {
				return bad(path+".limits.velocity.max", "must be positive")
			}
			if v.Max.Cmp(rule.Limits.PerTx) < 0 {
				return bad(path+".limits.velocity.max", "is below per_tx, so per_tx could never be reached")
			}
		}
		if rule.Class == ClassCold && (rule.Route.ColdAbove != nil || rule.Route.AlwaysCold) {
			return bad(path+".route", "a cold wallet always routes cold; remove route")
		}
		if rule.Route.ColdAbove != nil && rule.Route.AlwaysCold {
			return bad(path+".route", "cold_above and always_cold are exclusive")
		}
		for j, t := range rule.Approvals {
			tp := fmt.Sprintf("%s.approvals[%d]", path, j)
			if j == 0 && t.Min.Sign() != 0 {
				return bad(tp+".min", "the first tier must start at 0 so every amount has a tier")
			}
			if j > 0 && t.Min.Cmp(rule.Approvals[j-1].Min) <= 0 {
				return bad(tp+".min", "tiers must be in strictly increasing order of min")
			}
			if j > 0 && t.Required < rule.Approvals[j-1].Required {
				return bad(tp+".required", "a larger amount must not need fewer approvals")
			}
		}
	}
	return nil
}
