package webhook_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/api/webhook"
)

// TestSignatureVector: the header is "t=<unix>,v1=<hex HMAC-SHA256(secret,
// t.body)>", checked against a value computed outside Go (Python's hmac),
// and the event ID against its documented derivation.
func TestSignatureVector(t *testing.T) {
	body := []byte(`{"id":"evt_1"}`)
	got := webhook.Sign([]byte("whsec_test_secret"), time.Unix(1700000000, 0), body)
	if want := "t=1700000000,v1=248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if id := webhook.EventID("c1", "wd-1", 3); id != "evt_ab5523095421b912bc33414c02bf2597" {
		t.Fatalf("EventID = %s", id)
	}
	if webhook.EventID("c1", "wd-1", 3) == webhook.EventID("c1", "wd-1", 4) || webhook.EventID("c1", "wd-1", 3) == webhook.EventID("c2", "wd-1", 3) {
		t.Fatal("event IDs collide across sequences or clusters")
	}
}

// TestVerify: a receiver's check accepts the signed body within the
// tolerance (also beside another, rotated-out signature) and refuses a
// changed body, another secret, a stale or future timestamp and malformed
// headers, each with its error.
func TestVerify(t *testing.T) {
	secret, body := []byte("whsec_0123456789abcdef0123456789abcdef"), []byte(`{"id":"evt_x","sequence":1}`)
	at := time.Unix(1800000000, 0)
	h := webhook.Sign(secret, at, body)
	if err := webhook.Verify(secret, h, body, at.Add(time.Minute), webhook.DefaultTolerance); err != nil {
		t.Fatalf("a fresh signature: %v", err)
	}
	rotated := h + ",v1=" + strings.Repeat("00", 32)
	if err := webhook.Verify(secret, rotated, body, at, webhook.DefaultTolerance); err != nil {
		t.Fatalf("two v1 signatures, one valid: %v", err)
	}
	for name, c := range map[string]struct {
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		"changed body":           {secret, h, []byte(`{"id":"evt_x","sequence":2}`), at, webhook.ErrSignature},
		"another secret":         {[]byte("whsec_other"), h, body, at, webhook.ErrSignature},
		"stale":                  {secret, h, body, at.Add(webhook.DefaultTolerance + time.Second), webhook.ErrTimestamp},
		"from the future":        {secret, h, body, at.Add(-webhook.DefaultTolerance - time.Second), webhook.ErrTimestamp},
		"timestamp changed":      {secret, strings.Replace(h, "t=1800000000", "t=1800000001", 1), body, at, webhook.ErrSignature},
		"no signature":           {secret, "t=1800000000", body, at, webhook.ErrHeader},
		"no timestamp":           {secret, h[strings.Index(h, "v1="):], body, at, webhook.ErrHeader},
		"not hex":                {secret, "t=1800000000,v1=zz", body, at, webhook.ErrHeader},
		"not key=value":          {secret, "garbage", body, at, webhook.ErrHeader},
		"empty":                  {secret, "", body, at, webhook.ErrHeader},
		"timestamp out of range": {secret, "t=99999999999999999999,v1=00", body, at, webhook.ErrHeader},
	} {
		t.Run(name, func(t *testing.T) {
			if err := webhook.Verify(c.secret, c.header, c.body, c.now, webhook.DefaultTolerance); !errors.Is(err, c.want) {
				t.Fatalf("%v, want %v", err, c.want)
			}
		})
	}
}

// TestBackoffBounds: the n-th pause is at most min(limit, base·2^(n-1))
// and at least 0; the jitter's extremes reach both ends; a huge n neither
// overflows nor exceeds the limit.
func TestBackoffBounds(t *testing.T) {
	base, limit := 100*time.Millisecond, 3*time.Second
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	for n, ceil := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		5: 1600 * time.Millisecond, 6: limit, 60: limit, math.MaxInt32: limit} {
		if got := webhook.Backoff(n, base, limit, highest); got != ceil {
			t.Errorf("attempt %d: highest pause %s, want %s", n, got, ceil)
		}
		if got := webhook.Backoff(n, base, limit, lowest); got != 0 {
			t.Errorf("attempt %d: lowest pause %s, want 0", n, got)
		}
		for range 50 {
			if got := webhook.Backoff(n, base, limit, nil); got < 0 || got > ceil {
				t.Fatalf("attempt %d: pause %s outside [0, %s]", n, got, ceil)
			}
		}
	}
}
