package rest

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"
)

// MaxDepth bounds the nesting of a JSON body (objects and arrays): a
// deeper one is refused as malformed before it is decoded. The API's
// bodies nest two levels (the create's initiation).
const MaxDepth = 16

// checkDepth refuses a body nesting objects and arrays deeper than
// MaxDepth. It only counts brackets outside strings; syntax is the
// decoder's to check.
func checkDepth(b []byte) error {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > MaxDepth {
				return apiErr(http.StatusBadRequest, CodeMalformed, "", "api: malformed JSON: nested deeper than %d", MaxDepth)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// Rate limit defaults (docs/config.md, api.rate_limit).
const (
	DefaultRatePerMinute = 1200
	DefaultRateBurst     = 100
)

// RateLimit bounds each principal's requests to one node: a token bucket
// holding at most Burst requests, refilled at PerMinute requests a minute
// by the node's clock. A request finding the bucket empty is answered 429
// rate_limited with Retry-After, and nothing else is done.
type RateLimit struct {
	// PerMinute is the sustained rate (default DefaultRatePerMinute).
	PerMinute int
	// Burst is the bucket's size (default DefaultRateBurst).
	Burst int
}

func (l RateLimit) withDefaults() RateLimit {
	if l.PerMinute <= 0 {
		l.PerMinute = DefaultRatePerMinute
	}
	if l.Burst <= 0 {
		l.Burst = DefaultRateBurst
	}
	return l
}

// limiter holds a token bucket per principal. Only authenticated, active
// principals of the registry reach it, so it holds at most one bucket per
// registry entry.
type limiter struct {
	perSecond float64
	burst     float64
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(l RateLimit, now func() time.Time) *limiter {
	l = l.withDefaults()
	return &limiter{perSecond: float64(l.PerMinute) / 60, burst: float64(l.Burst), now: now, buckets: map[string]*bucket{}}
}

// take spends one of principal's tokens; when there is none it returns
// how long until there is one.
func (l *limiter) take(principal string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[principal]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[principal] = b
	}
	// A clock that went backwards refills nothing.
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed*l.perSecond)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration(math.Ceil((1-b.tokens)/l.perSecond*1e9)) * time.Nanosecond
}

// rateLimited is the 429 answer.
func rateLimited(principal string, retryAfter time.Duration) error {
	return &apiError{status: http.StatusTooManyRequests, code: CodeRateLimited, public: true, retryAfter: retryAfter,
		msg: fmt.Sprintf("api: %s sent more requests than this node's rate limit allows; retry after %s", principal, retrySeconds(retryAfter))}
}

// retrySeconds is a Retry-After value: whole seconds, at least 1.
func retrySeconds(d time.Duration) string {
	return fmt.Sprint(max(1, int64(math.Ceil(d.Seconds()))))
}
