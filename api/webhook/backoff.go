package webhook

import (
	"math/rand/v2"
	"time"
)

// Backoff is the pause after the n-th failed attempt of an event (n ≥ 1):
// exponential with full jitter, uniformly random in [0, min(limit,
// base·2^(n-1))]. rnd(k) returns a value in [0, k); nil means math/rand/v2.
func Backoff(n int, base, limit time.Duration, rnd func(int64) int64) time.Duration {
	if rnd == nil {
		rnd = rand.Int64N
	}
	ceil := base
	for i := 1; i < n && ceil < limit; i++ {
		ceil *= 2
	}
	if ceil > limit {
		ceil = limit
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rnd(int64(ceil) + 1))
}
