package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of a delivery.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>".
	SignatureHeader = "Custody-Signature"
	// EventIDHeader repeats the event's ID (the body's "id").
	EventIDHeader = "Custody-Event-Id"
)

// DefaultTolerance is how far a receiver should accept a signature's
// timestamp from its own clock (docs/api.md): older deliveries are
// refused as possible replays.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify.
var (
	// ErrSignature: no v1 signature in the header matches the body.
	ErrSignature = errors.New("webhook: signature does not match")
	// ErrTimestamp: the header's timestamp is outside the tolerance.
	ErrTimestamp = errors.New("webhook: signature timestamp outside the tolerance")
	// ErrHeader: the header is not "t=...,v1=...".
	ErrHeader = errors.New("webhook: malformed signature header")
)

// Sign is the signature header of body sent at t: HMAC-SHA256 keyed with
// secret over the decimal Unix seconds of t, ".", and the body's bytes.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a delivery as a receiver should: the header parses, one of
// its v1 signatures (a sender may send several while secrets rotate) is
// the HMAC of its timestamp and body under secret (compared in constant
// time), and the timestamp is within tolerance of now.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrHeader
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return ErrHeader
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrHeader
	}
	want := mac(secret, ts, body)
	ok := false
	for _, s := range sigs {
		ok = hmac.Equal(s, want) || ok
	}
	if !ok {
		return ErrSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %d, %s from now", ErrTimestamp, sec, d.Round(time.Second))
	}
	return nil
}
