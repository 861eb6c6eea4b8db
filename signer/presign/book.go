package presign

import (
	"fmt"
	"sync"
	"time"
)

// Book chooses which presignature serves a request and records that
// choice once, cluster-wide. In a cluster the ledger is to implement it (a
// replicated compare-and-set claim; not wired yet); MemBook is the
// in-process implementation.
type Book interface {
	// Offer makes a presignature whose offline phase finished on every
	// member of subset available until expires.
	Offer(wallet string, subset Subset, id ID, expires time.Time) error
	// Claim takes one available, unexpired presignature of (wallet, subset)
	// for requestID and records its consumption. An ID is returned by at
	// most one Claim, ever; with none available it returns ErrEmpty.
	Claim(wallet string, subset Subset, requestID string, now time.Time) (ID, error)
	// Expire withdraws and returns the presignatures expired at now.
	Expire(now time.Time) []ID
	// Depth counts available, unexpired presignatures of (wallet, subset).
	Depth(wallet string, subset Subset, now time.Time) int
}

type offer struct {
	id      ID
	expires time.Time
}

// MemBook is a Book in memory: a restart forgets every
// presignature, as the nodes do.
type MemBook struct {
	mu      sync.Mutex
	avail   map[string][]offer // by wallet + "|" + subset key, oldest first
	claimed map[ID]string      // ID -> request that consumed it
}

var _ Book = (*MemBook)(nil)

// NewMemBook returns an empty book.
func NewMemBook() *MemBook {
	return &MemBook{avail: map[string][]offer{}, claimed: map[ID]string{}}
}

func poolKey(wallet string, subset Subset) string { return wallet + "|" + subset.Key() }

// Offer implements Book.
func (c *MemBook) Offer(wallet string, subset Subset, id ID, expires time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.claimed[id]; ok {
		return fmt.Errorf("%w: presignature %s was claimed", ErrBadParams, id)
	}
	for _, l := range c.avail {
		for _, o := range l {
			if o.id == id {
				return fmt.Errorf("%w: presignature %s offered twice", ErrBadParams, id)
			}
		}
	}
	k := poolKey(wallet, subset)
	c.avail[k] = append(c.avail[k], offer{id, expires})
	return nil
}

// Claim implements Book. It hands out the oldest unexpired offer.
func (c *MemBook) Claim(wallet string, subset Subset, requestID string, now time.Time) (ID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := poolKey(wallet, subset)
	l := c.avail[k]
	for i, o := range l {
		// Expired offers stay for Expire to report and destroy.
		if now.Before(o.expires) {
			c.avail[k] = append(l[:i:i], l[i+1:]...)
			c.claimed[o.id] = requestID
			return o.id, nil
		}
	}
	return ID{}, ErrEmpty
}

// Expire implements Book.
func (c *MemBook) Expire(now time.Time) []ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ID
	for k, l := range c.avail {
		keep := l[:0]
		for _, o := range l {
			if now.Before(o.expires) {
				keep = append(keep, o)
			} else {
				out = append(out, o.id)
				c.claimed[o.id] = ""
			}
		}
		c.avail[k] = keep
	}
	return out
}

// Depth implements Book.
func (c *MemBook) Depth(wallet string, subset Subset, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, o := range c.avail[poolKey(wallet, subset)] {
		if now.Before(o.expires) {
			n++
		}
	}
	return n
}
