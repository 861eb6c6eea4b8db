package policy

import (
	"fmt"
	"time"

	"github.com/custody-dev/custody/quorum"
)

// ChangeKind names a change to the policy state.
type ChangeKind string

// Policy state changes and who may make them:
//
//	allowlist_add     rules.allowlist.approvals of rules.allowlist.roles; refused while locked;
//	                  payable after rules.allowlist.cooling_off
//	allowlist_remove  one admin or approver, immediate
//	lock              any one human operator (any role), immediate
//	unlock            the registry's admin quorum; lifts after rules.lock.unlock_delay
const (
	ChangeAllowlistAdd    ChangeKind = "allowlist_add"
	ChangeAllowlistRemove ChangeKind = "allowlist_remove"
	ChangeLock            ChangeKind = "lock"
	ChangeUnlock          ChangeKind = "unlock"
)

// Change is a proposed change to the policy state. Approvals sign a
// quorum.Statement with RequestID = ID and PayloadHash = PayloadHash().
type Change struct {
	ID   string     `json:"id"`
	Kind ChangeKind `json:"kind"`
	// Wallet scopes the change; "" means the whole account.
	Wallet  string `json:"wallet,omitempty"`
	Chain   string `json:"chain,omitempty"`
	Network string `json:"network,omitempty"`
	Address string `json:"address,omitempty"`
	Label   string `json:"label,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// PayloadHash is SHA-256 of "custody/policy-change/v1" 0x00 and the change's
// JSON (fields in declaration order). Approvers sign it, so the exact address
// and scope are what they approved.
func (c Change) PayloadHash() quorum.Hash { return quorum.DomainHash("custody/policy-change/v1", c) }

// RulesChangeHash is the payload hash admins approve to replace the rules
// with next: the rules hash itself.
func RulesChangeHash(next *Rules) (quorum.Hash, error) {
	return quorum.ParseHash(next.Hash())
}

// AuthorizeRulesChange counts admin approvals (the registry's admin quorum)
// for replacing the rules with next under change ID id.
func AuthorizeRulesChange(reg quorum.Registry, id string, next *Rules, approvals []quorum.Approval, now time.Time) (quorum.Tally, error) {
	if next == nil || next.Hash() == "" {
		return quorum.Tally{}, fmt.Errorf("%w: rules change %s: no validated rules", ErrInvalidChange, id)
	}
	h, err := RulesChangeHash(next)
	if err != nil {
		return quorum.Tally{}, err
	}
	t := quorum.Count(reg, quorum.Subject{RequestID: id, PayloadHash: h},
		quorum.Requirement{Required: reg.AdminQuorum, Roles: []quorum.Role{quorum.RoleAdmin}}, approvals, now)
	if err := t.Err(); err != nil {
		return t, fmt.Errorf("policy: rules change %s: %w", id, err)
	}
	return t, nil
}

// Requirement returns the approvals a change needs under rules and reg.
func (c Change) Requirement(rules *Rules, reg quorum.Registry) quorum.Requirement {
	switch c.Kind {
	case ChangeAllowlistAdd:
		return quorum.Requirement{Required: rules.Allowlist.Approvals, Roles: rules.Allowlist.Roles}
	case ChangeAllowlistRemove:
		return quorum.Requirement{Required: 1, Roles: []quorum.Role{quorum.RoleAdmin, quorum.RoleApprover}}
	case ChangeLock:
		return quorum.Requirement{Required: 1, Roles: []quorum.Role{quorum.RoleAdmin, quorum.RoleApprover, quorum.RoleInitiator, quorum.RoleAuditor}}
	case ChangeUnlock:
		return quorum.Requirement{Required: reg.AdminQuorum, Roles: []quorum.Role{quorum.RoleAdmin}}
	}
	return quorum.Requirement{}
}

// Apply validates c against st at now, counts approvals for it under reg, and
// returns the new state. The receiver is never modified; on error the caller
// keeps st. validate canonicalises allowlist addresses; nil means the address
// is taken as already canonical. The tally is returned whenever approvals
// were counted, so the ledger can record why some did not count.
func (st State) Apply(rules *Rules, reg quorum.Registry, c Change, approvals []quorum.Approval, validate AddressValidator, now time.Time) (State, quorum.Tally, error) {
	bad := func(format string, args ...any) (State, quorum.Tally, error) {
		return st, quorum.Tally{}, fmt.Errorf("%w: %s %s: %s", ErrInvalidChange, c.Kind, c.ID, fmt.Sprintf(format, args...))
	}
	if rules == nil || rules.Hash() == "" {
		return bad("no validated rules")
	}
	if c.Wallet != AccountScope {
		if err := validName(c.Wallet); err != nil {
			return bad("wallet: %v", err)
		}
	}
	next := st.clone()
	switch c.Kind {
	case ChangeAllowlistAdd, ChangeAllowlistRemove:
		if c.Chain == "" || c.Network == "" || c.Address == "" {
			return bad("chain, network and address are required")
		}
		addr := c.Address
		if validate != nil {
			canon, err := validate(c.Chain, c.Network, c.Address)
			if err != nil {
				return bad("address: %v", err)
			}
			if canon != c.Address {
				// Approvers must have signed the exact canonical form.
				return bad("address %q is not canonical (want %q)", c.Address, canon)
			}
		}
		e := AllowlistEntry{Wallet: c.Wallet, Chain: c.Chain, Network: c.Network, Address: addr}
		// Locked means locked (DESIGN invariant 5): no allowlist change at all,
		// removal included, until an unlock quorum and its delay have passed.
		var l Lock
		var locked bool
		if c.Wallet == AccountScope {
			l, locked = st.anyLock(now)
		} else {
			l, locked = st.LockedAt(c.Wallet, now)
		}
		if locked {
			return st, quorum.Tally{}, fmt.Errorf("policy: %s %s: %w (lock by %s)", c.Kind, c.ID, ErrLocked, l.LockedBy)
		}
		_, exists := next.allow[e.key()]
		if c.Kind == ChangeAllowlistRemove {
			if !exists {
				return bad("%s is not on the allowlist", addr)
			}
			delete(next.allow, e.key())
			break
		}
		if exists {
			return bad("%s is already on the allowlist", addr)
		}
		e.Label, e.ChangeID = c.Label, c.ID
		e.ApprovedAt = now.UTC()
		e.ActiveAt = now.UTC().Add(time.Duration(rules.Allowlist.CoolingOff))
		next.allow[e.key()] = e
	case ChangeLock:
		l, ok := next.locks[c.Wallet]
		if ok && l.UnlockAt.IsZero() {
			return bad("already locked by %s", l.LockedBy)
		}
		// Locking during a pending unlock cancels the unlock.
		next.locks[c.Wallet] = Lock{Wallet: c.Wallet, LockedAt: now.UTC(), Reason: c.Reason}
	case ChangeUnlock:
		l, ok := next.locks[c.Wallet]
		if !ok || !l.Active(now) {
			return bad("not locked")
		}
		if !l.UnlockAt.IsZero() {
			return bad("an unlock is already pending until %s", l.UnlockAt.Format(time.RFC3339))
		}
		// The lifted lock stays in the state, inactive, naming its unlock.
		l.UnlockAt = now.UTC().Add(time.Duration(rules.Lock.UnlockDelay))
		l.UnlockChangeID = c.ID
		next.locks[c.Wallet] = l
	default:
		return bad("unknown change kind")
	}
	t := quorum.Count(reg, quorum.Subject{RequestID: c.ID, PayloadHash: c.PayloadHash()}, c.Requirement(rules, reg), approvals, now)
	if err := t.Err(); err != nil {
		return st, t, fmt.Errorf("policy: %s %s: %w", c.Kind, c.ID, err)
	}
	if c.Kind == ChangeLock {
		l := next.locks[c.Wallet]
		l.LockedBy = t.Counted[0].OperatorID
		next.locks[c.Wallet] = l
	}
	return next, t, nil
}
