package tss_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/custody-dev/custody/signer/tss"
)

func TestParseSessionID(t *testing.T) {
	id := tss.NewSessionID()
	got, err := tss.ParseSessionID(id.String())
	if err != nil || got != id {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if got, err := tss.ParseSessionID(strings.ToUpper(id.String())); err != nil || got != id {
		t.Fatalf("upper case: %v", err)
	}
	for _, bad := range []string{"", "00", id.String() + "00", strings.Repeat("zz", 32), " " + id.String()[1:]} {
		if _, err := tss.ParseSessionID(bad); !errors.Is(err, tss.ErrBadSessionID) {
			t.Errorf("%q: want ErrBadSessionID, got %v", bad, err)
		}
	}
}

// TestShareWipe: a wiped share's secrets read zero, and it refuses to sign
// or serialise.
func TestShareWipe(t *testing.T) {
	_, shares := shared2of3(t)
	raw, err := shares["node3"].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := tss.UnmarshalShare(raw) // a private copy: the shared one keeps signing
	if err != nil {
		t.Fatal(err)
	}
	xi, lambda, p := s.Data.Xi, s.Data.PaillierSK.LambdaN, s.Data.P
	s.Wipe()
	if xi.Sign() != 0 || lambda.Sign() != 0 || p.Sign() != 0 || s.Data.Xi != nil {
		t.Fatal("secrets not zeroed")
	}
	if !s.Retired() {
		t.Fatal("wiped share not retired")
	}
	if _, err := s.Marshal(); !errors.Is(err, tss.ErrShareRetired) {
		t.Fatalf("marshal after wipe: %v", err)
	}
}
