package member_test

import (
	"testing"

	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/watermark"
)

// TestInputSession pins the per-digest session IDs every member derives
// from a claim's session ID (docs/member.md "Several digests"): digest 0 is
// the claim's own session, digest i ≥ 1 SHA-256 of the domain, the claim
// ID and i (4 bytes big-endian). A change here splits a committee whose
// members run different versions, so it must be deliberate.
func TestInputSession(t *testing.T) {
	var claim tss.SessionID
	for i := range claim {
		claim[i] = byte(i)
	}
	if got := member.InputSession(claim, 0); got != claim {
		t.Fatalf("digest 0: %s, want the claim's session", got)
	}
	for i, want := range map[int]string{
		1: "2c3ff70387df796c7b2675bce3f4a522f9d681430d45c8cf0bf1d66f829acc44",
		2: "7bf0759c7186be199399c8f9a98c65b1729d33e1caa6c7feea4506e72938bb03",
	} {
		if got := member.InputSession(claim, i).String(); got != want {
			t.Errorf("digest %d: %s, want %s", i, got, want)
		}
	}
	other := claim
	other[31] ^= 1
	seen := map[tss.SessionID]bool{}
	for _, c := range []tss.SessionID{claim, other} {
		for i := range 64 {
			s := member.InputSession(c, i)
			if seen[s] {
				t.Fatalf("session %s derived twice", s)
			}
			seen[s] = true
		}
	}
}

// TestClaimDigest: one digest stands for itself (every ETH claim, a
// one-input spend); several for watermark.DigestOf of them in order.
func TestClaimDigest(t *testing.T) {
	a, b := [32]byte{1}, [32]byte{2}
	if member.ClaimDigest(nil) != ([32]byte{}) {
		t.Error("no digest: not the zero value")
	}
	if member.ClaimDigest([][32]byte{a}) != a {
		t.Error("one digest: not itself")
	}
	ab, ba := member.ClaimDigest([][32]byte{a, b}), member.ClaimDigest([][32]byte{b, a})
	if ab != watermark.DigestOf(a, b) || ab == ba || ab == a {
		t.Errorf("two digests: %x (reversed %x)", ab, ba)
	}
}
