package policy

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/quorum"
)

// Withdrawal is what a withdrawal moves, from where, to where. Its fields
// are declared here once: policy's Request, the ledger's create command and
// request, and the leader's orchestration all embed it. The leader fills it
// from the unsigned transaction it built; Chain, Network and To are
// canonical (see the package doc on addresses).
type Withdrawal struct {
	Wallet  string        `json:"wallet"`
	Asset   string        `json:"asset"`
	Chain   string        `json:"chain"`
	Network string        `json:"network"`
	To      string        `json:"to"`
	Amount  amount.Amount `json:"amount"`
	// MaxFee is the most the transaction can pay in fees, in base units of
	// the chain's fee asset (ETH: gas limit x max fee per gas, in wei).
	MaxFee amount.Amount `json:"max_fee"`
	// Note is the initiator's free text for the operators (ValidNote):
	// part of the signed intent, so no node can change it; policy does
	// not read it. Omitted when empty, so requests without one encode
	// (and hash) as before.
	Note string `json:"note,omitempty"`
}

// MaxNote bounds a withdrawal's note, in bytes of UTF-8.
const MaxNote = 256

// ValidNote checks a note: at most MaxNote bytes of valid UTF-8, every
// character printable (letters, marks, numbers, punctuation, symbols and
// the ASCII space; no control, format or other space characters, which
// could hide text from the operator reading it).
func ValidNote(s string) error {
	if len(s) > MaxNote {
		return fmt.Errorf("policy: note is %d bytes, at most %d", len(s), MaxNote)
	}
	if !utf8.ValidString(s) {
		return errors.New("policy: note is not valid UTF-8")
	}
	for i, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("policy: note has the unprintable character %U at byte %d", r, i)
		}
	}
	return nil
}

// IntentHash is what an initiator signs to create request id for this
// withdrawal ([quorum.VerifyInitiation]): SHA-256 of
// "custody/initiation/v1" 0x00 and the JSON of the request ID, wallet,
// asset, destination (canonical), amount and, when there is one, the
// note. The chain and network follow from the wallet, and the maximum fee
// is the leader's choice, capped by policy, so neither is part of it.
func (w Withdrawal) IntentHash(requestID string) quorum.Hash {
	b, err := json.Marshal(struct {
		ID     string        `json:"id"`
		Wallet string        `json:"wallet"`
		Asset  string        `json:"asset"`
		To     string        `json:"to"`
		Amount amount.Amount `json:"amount"`
		Note   string        `json:"note,omitempty"`
	}{requestID, w.Wallet, w.Asset, w.To, w.Amount, w.Note})
	if err != nil {
		panic("policy: withdrawal is not JSON-encodable: " + err.Error())
	}
	return quorum.Hash(sha256.Sum256(append([]byte("custody/initiation/v1\x00"), b...)))
}

// Request is a withdrawal as policy sees it: the withdrawal, its request ID,
// who initiated it and the hash of the transaction that carries it out.
type Request struct {
	ID string `json:"id"`
	Withdrawal
	Initiator   string      `json:"initiator"`
	PayloadHash quorum.Hash `json:"payload_hash"`
	// VSize is the transaction's virtual size in vbytes (Bitcoin), which
	// the fee-rate cap needs; 0 when unknown or not applicable, and then
	// the rate cap is not checked. Members fill it from their own parse of
	// the payload; the ledger, which does not parse chains, cannot.
	VSize int64 `json:"vsize,omitempty"`
}

func (r Request) validate() error {
	switch {
	case r.ID == "", r.Wallet == "", r.Asset == "", r.Chain == "", r.Network == "", r.To == "", r.Initiator == "":
		return fmt.Errorf("%w: id, wallet, asset, chain, network, to and initiator are required", ErrInvalidRequest)
	case r.Amount.Sign() == 0:
		return fmt.Errorf("%w: amount must be positive", ErrInvalidRequest)
	case r.VSize < 0:
		return fmt.Errorf("%w: negative virtual size", ErrInvalidRequest)
	}
	return nil
}

// Decision explains what policy decided about a request.
type Decision struct {
	RequestID string `json:"request_id"`
	RulesHash string `json:"rules_hash"`
	// Rule is the matched rule's name ("" when none matched).
	Rule  string `json:"rule,omitempty"`
	Class Class  `json:"class,omitempty"`
	Route Route  `json:"route,omitempty"`
	// Allowed: policy passes; signing still needs the approvals below.
	Allowed bool `json:"allowed"`
	// Approved: Allowed and the approvals were counted and met (Authorize).
	Approved  bool          `json:"approved"`
	Required  int           `json:"approvals_required,omitempty"`
	Roles     []quorum.Role `json:"approval_roles,omitempty"`
	Collected int           `json:"approvals_collected"`
	// Reason and Detail explain a denial (or missing approvals).
	Reason Reason        `json:"reason,omitempty"`
	Detail string        `json:"detail,omitempty"`
	Tally  *quorum.Tally `json:"tally,omitempty"`
}

// Err is nil when the decision approves signing (or, from Evaluate, allows
// it pending approvals); otherwise it wraps the Reason's sentinel error.
func (d Decision) Err() error {
	if d.Reason == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", d.Reason.Sentinel(), d.Detail)
}

func (d *Decision) deny(reason Reason, format string, args ...any) Decision {
	d.Allowed, d.Approved = false, false
	d.Reason = reason
	d.Detail = fmt.Sprintf(format, args...)
	return *d
}

// Evaluate decides whether policy allows req at now, given state, before
// counting approvals: locks first (nothing passes while locked), then the
// matching rule (deny by default), allowlist and cooling-off, per-transaction
// the fee cap, the per-transaction limit and velocity (the window's spends
// plus the request's charge, [Rules.Charge]; a spend recorded for req.ID
// itself is not counted again). An allowed decision names the route and the
// approvals required.
func Evaluate(rules *Rules, st State, req Request, now time.Time) Decision {
	d := Decision{RequestID: req.ID}
	if rules != nil {
		d.RulesHash = rules.Hash()
	}
	if err := req.validate(); err != nil {
		return d.deny(ReasonInvalidRequest, "%v", err)
	}
	if l, ok := st.LockedAt(req.Wallet, now); ok {
		scope := "account"
		if l.Wallet != AccountScope {
			scope = "wallet " + l.Wallet
		}
		return d.deny(ReasonLocked, "%s locked by %s at %s", scope, l.LockedBy, l.LockedAt.UTC().Format(time.RFC3339))
	}
	rule, ok := rules.Match(req.Wallet, req.Asset)
	if !ok {
		return d.deny(ReasonNoRule, "no rule for wallet %q asset %q", req.Wallet, req.Asset)
	}
	d.Rule, d.Class = rule.Name, rule.Class
	dec := rules.Assets[rule.Asset].Decimals
	if rule.AllowlistRequired {
		e, ok := st.allowlisted(req.Wallet, req.Chain, req.Network, req.To, now)
		if !ok {
			return d.deny(ReasonNotAllowlisted, "%s %s %s is not on the allowlist of wallet %q or the account", req.Chain, req.Network, req.To, req.Wallet)
		}
		if now.Before(e.ActiveAt) {
			return d.deny(ReasonCoolingOff, "%s is allowlisted but cooling off until %s", req.To, e.ActiveAt.UTC().Format(time.RFC3339))
		}
	}
	if req.MaxFee.Cmp(rule.Limits.MaxFee) > 0 {
		fdec := rules.Assets[rule.FeeAsset].Decimals
		return d.deny(ReasonFeeOverCap, "maximum fee %s %s exceeds the cap %s", req.MaxFee.Format(fdec), rule.FeeAsset, rule.Limits.MaxFee.Format(fdec))
	}
	if !rule.feeRateWithin(req) {
		return d.deny(ReasonFeeRateOverCap, "maximum fee %s base units over %d vbytes exceeds the cap of %d per vbyte",
			req.MaxFee, req.VSize, rule.Limits.MaxFeeRate)
	}
	charge, err := rule.charge(req)
	if err != nil || charge.Cmp(rule.Limits.PerTx) > 0 {
		what := req.Amount.Format(dec) + " " + req.Asset
		if rule.FeeAsset == rule.Asset {
			what += " plus a maximum fee of " + req.MaxFee.Format(dec)
		}
		return d.deny(ReasonOverLimit, "%s exceeds the per-transaction limit %s", what, rule.Limits.PerTx.Format(dec))
	}
	if v := rule.Limits.Velocity; v != nil {
		since := now.Add(-time.Duration(v.Window))
		sum, overflow := charge, false
		for _, h := range st.history {
			// The request's own spend, recorded when it was claimed or
			// exported, is already in sum as its charge: re-evaluating a
			// claimed request must not count it twice.
			if h.RequestID != "" && h.RequestID == req.ID {
				continue
			}
			if h.Wallet == req.Wallet && h.Asset == req.Asset && h.At.After(since) {
				var err error
				if sum, err = sum.Add(h.Amount); err != nil {
					// Above 2^256-1, so above any v.Max.
					overflow = true
					break
				}
			}
		}
		if overflow || sum.Cmp(v.Max) > 0 {
			total := sum.Format(dec)
			if overflow {
				total = "more than " + amount.Max().Format(dec)
			}
			return d.deny(ReasonVelocityExceeded, "%s %s within %s including this request exceeds %s",
				total, req.Asset, time.Duration(v.Window), v.Max.Format(dec))
		}
	}
	t := rule.tier(req.Amount)
	d.Route = rule.route(req.Amount)
	d.Required, d.Roles = t.Required, slices.Clone(t.Roles)
	d.Allowed = true
	return d
}

// Charge is what req counts toward its rule's per-transaction limit and
// velocity window: the amount, plus the maximum fee when the fee is paid in
// the withdrawn asset. The ledger records it as the request's spend. Without
// a matching rule it is the amount.
func (r *Rules) Charge(req Request) amount.Amount {
	rule, ok := r.Match(req.Wallet, req.Asset)
	if !ok {
		return req.Amount
	}
	c, err := rule.charge(req)
	if err != nil {
		return amount.Max()
	}
	return c
}

func (rule *Rule) charge(req Request) (amount.Amount, error) {
	if rule.FeeAsset != rule.Asset {
		return req.Amount, nil
	}
	return req.Amount.Add(req.MaxFee)
}

// Authorize is Evaluate plus the approval count: the decision the leader
// checks before a claim and every signer re-checks before signing. Approved is
// true only when policy allows req at now and the approvals meet the matched
// tier under registry reg (distinct active operators with an allowed role,
// active devices, valid signatures over req's payload hash, not expired, not
// the initiator, and no valid rejection).
func Authorize(rules *Rules, st State, reg quorum.Registry, req Request, approvals []quorum.Approval, now time.Time) Decision {
	d := Evaluate(rules, st, req, now)
	if !d.Allowed {
		return d
	}
	t := quorum.Count(reg,
		quorum.Subject{RequestID: req.ID, PayloadHash: req.PayloadHash, Initiator: req.Initiator},
		quorum.Requirement{Required: d.Required, Roles: d.Roles},
		approvals, now)
	d.Tally = &t
	d.Collected = len(t.Counted)
	switch {
	case len(t.Rejections) > 0:
		return d.deny(ReasonRejected, "rejected by operator %s", t.Rejections[0].OperatorID)
	case !t.Met():
		d.Reason = ReasonInsufficientApprovals
		d.Detail = fmt.Sprintf("%d of %d approvals from %v", d.Collected, d.Required, d.Roles)
		return d
	}
	d.Approved = true
	return d
}

// feeRateWithin reports whether req's maximum fee is at most MaxFeeRate per
// vbyte of its virtual size, when both the cap and the size are known. It
// compares fee <= rate x vsize, so there is no rounding.
func (rule *Rule) feeRateWithin(req Request) bool {
	if rule.Limits.MaxFeeRate == 0 || req.VSize <= 0 {
		return true
	}
	limit := new(big.Int).Mul(new(big.Int).SetUint64(rule.Limits.MaxFeeRate), big.NewInt(req.VSize))
	return req.MaxFee.Big().Cmp(limit) <= 0
}
