package tss

import (
	"fmt"
	"sort"
	"sync"

	"github.com/custody-dev/custody/pki"
)

// Budget counts session failures blamed on each party. When a party reaches
// the limit it is quarantined: engines refuse sessions that include it until a
// human calls Clear. There is no automatic reset, so a party cannot probe for
// abort oracles by failing just under a rate (SECURITY.md item 6).
type Budget struct {
	mu          sync.Mutex
	limit       int
	failures    map[pki.NodeID]int
	quarantined map[pki.NodeID]bool
}

// NewBudget returns a budget quarantining a party after limit blamed failures.
func NewBudget(limit int) *Budget {
	if limit < 1 {
		limit = 1
	}
	return &Budget{limit: limit, failures: map[pki.NodeID]int{}, quarantined: map[pki.NodeID]bool{}}
}

// Record charges one failure to each culprit and returns those newly quarantined.
func (b *Budget) Record(culprits []pki.NodeID) []pki.NodeID {
	b.mu.Lock()
	defer b.mu.Unlock()
	var newly []pki.NodeID
	for _, p := range uniqueSorted(culprits) {
		b.failures[p]++
		if b.failures[p] >= b.limit && !b.quarantined[p] {
			b.quarantined[p] = true
			newly = append(newly, p)
		}
	}
	return newly
}

// Failures returns the failure count charged to p.
func (b *Budget) Failures(p pki.NodeID) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures[p]
}

// Quarantined lists the quarantined parties, sorted.
func (b *Budget) Quarantined() []pki.NodeID {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []pki.NodeID
	for p := range b.quarantined {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Clear lifts p's quarantine and resets its count: a human decision.
func (b *Budget) Clear(p pki.NodeID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.quarantined, p)
	delete(b.failures, p)
}

// Check returns an error wrapping ErrQuarantined if any of parties is quarantined.
func (b *Budget) Check(parties []pki.NodeID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range parties {
		if b.quarantined[p] {
			return fmt.Errorf("%w: %s", ErrQuarantined, p)
		}
	}
	return nil
}

// Counts returns the failure count of every party charged at least once:
// what a node persists so its budget survives restarts (RestoreBudget).
func (b *Budget) Counts() map[pki.NodeID]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[pki.NodeID]int, len(b.failures))
	for p, n := range b.failures {
		out[p] = n
	}
	return out
}

// RestoreBudget returns a budget with the counts a node persisted: a party
// at or above limit is quarantined again. Counts below 1 are ignored.
func RestoreBudget(limit int, counts map[pki.NodeID]int) *Budget {
	b := NewBudget(limit)
	for p, n := range counts {
		if n < 1 {
			continue
		}
		b.failures[p] = n
		if n >= b.limit {
			b.quarantined[p] = true
		}
	}
	return b
}
