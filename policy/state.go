package policy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/custody-dev/custody/amount"
)

// AccountScope is the scope of account-wide allowlist entries and locks.
const AccountScope = ""

// AddressValidator validates an address for a chain and network and returns
// its canonical form (chains/eth and chains/btc provide them). Policy itself
// compares canonical strings only.
type AddressValidator func(chain, network, address string) (canonical string, err error)

// AllowlistEntry is one approved destination. Payments to it are allowed from
// ActiveAt on (approval time plus the cooling-off delay).
type AllowlistEntry struct {
	// Wallet is the wallet the entry applies to, or "" for every wallet.
	Wallet     string    `json:"wallet,omitempty"`
	Chain      string    `json:"chain"`
	Network    string    `json:"network"`
	Address    string    `json:"address"`
	Label      string    `json:"label,omitempty"`
	ChangeID   string    `json:"change_id,omitempty"`
	ApprovedAt time.Time `json:"approved_at"`
	ActiveAt   time.Time `json:"active_at"`
}

func (e AllowlistEntry) key() string {
	return e.Wallet + "\x00" + e.Chain + "\x00" + e.Network + "\x00" + e.Address
}

// Lock stops signing and allowlist additions for a wallet or ("") the account.
// It holds until UnlockAt, which is zero until an unlock is approved. A lock
// whose unlock delay has passed stays in the state, inactive, with the ID of
// the unlock that lifted it, so a member can apply its own clock to that
// delay ([State.AsSeen]).
type Lock struct {
	Wallet   string    `json:"wallet,omitempty"`
	LockedBy string    `json:"locked_by"`
	LockedAt time.Time `json:"locked_at"`
	Reason   string    `json:"reason,omitempty"`
	UnlockAt time.Time `json:"unlock_at,omitzero"`
	// UnlockChangeID is the governance change that set UnlockAt.
	UnlockChangeID string `json:"unlock_change_id,omitempty"`
}

// Active reports whether the lock is in force at now.
func (l Lock) Active(now time.Time) bool { return l.UnlockAt.IsZero() || now.Before(l.UnlockAt) }

// Spend is a signed withdrawal, for velocity limits.
type Spend struct {
	RequestID string        `json:"request_id,omitempty"`
	Wallet    string        `json:"wallet"`
	Asset     string        `json:"asset"`
	Amount    amount.Amount `json:"amount"`
	At        time.Time     `json:"at"`
}

// State is the policy-relevant ledger state: allowlists, locks and the
// history of signed amounts. It is a value: every method that changes it
// returns a new State and leaves the receiver untouched. The zero value is an
// empty state.
type State struct {
	allow   map[string]AllowlistEntry
	locks   map[string]Lock
	history []Spend
}

// NewState builds a State from its parts, validating them.
func NewState(allowlist []AllowlistEntry, locks []Lock, history []Spend) (State, error) {
	s := State{allow: map[string]AllowlistEntry{}, locks: map[string]Lock{}}
	for i, e := range allowlist {
		if e.Chain == "" || e.Network == "" || e.Address == "" {
			return State{}, fmt.Errorf("policy: state: allowlist[%d]: chain, network and address are required", i)
		}
		if e.ActiveAt.Before(e.ApprovedAt) {
			return State{}, fmt.Errorf("policy: state: allowlist[%d]: active_at before approved_at", i)
		}
		if _, dup := s.allow[e.key()]; dup {
			return State{}, fmt.Errorf("policy: state: allowlist[%d]: duplicate entry", i)
		}
		s.allow[e.key()] = e
	}
	for i, l := range locks {
		if _, dup := s.locks[l.Wallet]; dup {
			return State{}, fmt.Errorf("policy: state: locks[%d]: duplicate lock for %q", i, l.Wallet)
		}
		s.locks[l.Wallet] = l
	}
	for i, h := range history {
		if h.Wallet == "" || h.Asset == "" {
			return State{}, fmt.Errorf("policy: state: history[%d]: wallet and asset are required", i)
		}
	}
	s.history = slices.Clone(history)
	return s, nil
}

// Allowlist returns the entries sorted by wallet, chain, network, address.
func (s State) Allowlist() []AllowlistEntry {
	out := slices.Collect(maps.Values(s.allow))
	slices.SortFunc(out, func(a, b AllowlistEntry) int { return cmp.Compare(a.key(), b.key()) })
	return out
}

// Locks returns the locks sorted by wallet (account first).
func (s State) Locks() []Lock {
	out := slices.Collect(maps.Values(s.locks))
	slices.SortFunc(out, func(a, b Lock) int { return cmp.Compare(a.Wallet, b.Wallet) })
	return out
}

// History returns the recorded spends.
func (s State) History() []Spend { return slices.Clone(s.history) }

// clone copies s so a change never aliases the previous state.
func (s State) clone() State {
	c := State{allow: maps.Clone(s.allow), locks: maps.Clone(s.locks), history: slices.Clone(s.history)}
	if c.allow == nil {
		c.allow = map[string]AllowlistEntry{}
	}
	if c.locks == nil {
		c.locks = map[string]Lock{}
	}
	return c
}

// AsSeen returns s as a member sees it by its own clock (SECURITY 29):
// every allowlist entry becomes active no earlier than seen(its change) plus
// the cooling-off, and every lifted lock lifts no earlier than seen(its
// unlock) plus the unlock delay. seen returns when the member first saw a
// governance change committed, by its own clock. The ledger's times are
// stamped by the leader; a leader stamping an old time could otherwise skip
// a delay. Delays only get longer. Likewise every spend counts from no
// earlier than seen(SpendSeenKey(its request)): a leader freezing its clock
// cannot age spends out of a velocity window early.
func (s State) AsSeen(rules *Rules, seen func(changeID string) time.Time) State {
	c := s.clone()
	if rules == nil {
		return c
	}
	for k, e := range c.allow {
		// An entry without the change that added it cannot have come
		// through the log (approvals sign the change ID); seen("") is the
		// member's "now", so such an entry never becomes active early.
		if at := seen(e.ChangeID).Add(time.Duration(rules.Allowlist.CoolingOff)); at.After(e.ActiveAt) {
			e.ActiveAt = at.UTC()
			c.allow[k] = e
		}
	}
	for w, l := range c.locks {
		if l.UnlockAt.IsZero() {
			continue
		}
		if at := seen(l.UnlockChangeID).Add(time.Duration(rules.Lock.UnlockDelay)); at.After(l.UnlockAt) {
			l.UnlockAt = at.UTC()
			c.locks[w] = l
		}
	}
	for i, sp := range c.history {
		if at := seen(SpendSeenKey(sp.RequestID)); at.After(sp.At) {
			c.history[i].At = at.UTC()
		}
	}
	return c
}

// SpendSeenKey is the key under which a member records when it first saw
// the spend of a request (see AsSeen).
func SpendSeenKey(requestID string) string { return "spend/" + requestID }

// SeenKeys returns every key a member records first-seen times for:
// ChangeIDs and the SpendSeenKey of every spend in the history, sorted.
func (s State) SeenKeys() []string {
	out := s.ChangeIDs()
	for _, sp := range s.history {
		out = append(out, SpendSeenKey(sp.RequestID))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ChangeIDs returns the governance changes whose time matters to a member:
// the allowlist additions in force and the unlocks that lifted (or are
// lifting) a lock, sorted.
func (s State) ChangeIDs() []string {
	var out []string
	for _, e := range s.allow {
		if e.ChangeID != "" {
			out = append(out, e.ChangeID)
		}
	}
	for _, l := range s.locks {
		if l.UnlockChangeID != "" {
			out = append(out, l.UnlockChangeID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// RecordSpend returns s with a signed withdrawal appended to the history and
// spends older than keep before at dropped (pass the longest velocity window
// of the rules; Rules.MaxWindow gives it).
func (s State) RecordSpend(sp Spend, keep time.Duration) State {
	c := s.clone()
	cut := sp.At.Add(-keep)
	c.history = slices.DeleteFunc(c.history, func(h Spend) bool { return !h.At.After(cut) })
	c.history = append(c.history, sp)
	return c
}

// MaxWindow is the longest velocity window in the rules.
func (r *Rules) MaxWindow() time.Duration {
	var m time.Duration
	for _, rule := range r.Wallets {
		if v := rule.Limits.Velocity; v != nil && time.Duration(v.Window) > m {
			m = time.Duration(v.Window)
		}
	}
	return m
}

// LockedAt returns the lock in force for wallet at now: the account lock
// first, then the wallet's own.
func (s State) LockedAt(wallet string, now time.Time) (Lock, bool) {
	if l, ok := s.locks[AccountScope]; ok && l.Active(now) {
		return l, true
	}
	if wallet != AccountScope {
		if l, ok := s.locks[wallet]; ok && l.Active(now) {
			return l, true
		}
	}
	return Lock{}, false
}

// anyLock reports whether any lock is in force (account-wide allowlist
// additions would reach every wallet, so any lock blocks them).
func (s State) anyLock(now time.Time) (Lock, bool) {
	for _, w := range slices.Sorted(maps.Keys(s.locks)) {
		if l := s.locks[w]; l.Active(now) {
			return l, true
		}
	}
	return Lock{}, false
}

// allowlisted finds the entry for a destination: the wallet's own entry or an
// account-wide one, preferring one that is already active.
func (s State) allowlisted(wallet, chain, network, addr string, now time.Time) (AllowlistEntry, bool) {
	var found AllowlistEntry
	ok := false
	for _, scope := range []string{wallet, AccountScope} {
		e, hit := s.allow[AllowlistEntry{Wallet: scope, Chain: chain, Network: network, Address: addr}.key()]
		if !hit {
			continue
		}
		if !now.Before(e.ActiveAt) {
			return e, true
		}
		if !ok {
			found, ok = e, true
		}
	}
	return found, ok
}

type stateJSON struct {
	Allowlist []AllowlistEntry `json:"allowlist"`
	Locks     []Lock           `json:"locks"`
	History   []Spend          `json:"history"`
}

// MarshalJSON writes {"allowlist":[...],"locks":[...],"history":[...]} in a
// deterministic order.
func (s State) MarshalJSON() ([]byte, error) {
	j := stateJSON{Allowlist: s.Allowlist(), Locks: s.Locks(), History: s.History()}
	if j.History == nil {
		j.History = []Spend{}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes, validating it like NewState.
func (s *State) UnmarshalJSON(b []byte) error {
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("policy: state: %w", err)
	}
	st, err := NewState(j.Allowlist, j.Locks, j.History)
	if err != nil {
		return err
	}
	*s = st
	return nil
}
