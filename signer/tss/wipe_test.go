package tss_test

import (
	"context"
	"errors"
	"testing"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// copyShare returns an independent copy of s (its own big integers).
func copyShare(t testing.TB, s *tss.Share) *tss.Share {
	t.Helper()
	raw, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tss.UnmarshalShare(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSignReturnsAfterTssLibStopped: a session that aborts while tss-lib is
// still inside round 1 (reading the key share) returns only once tss-lib is
// out, so the caller may Wipe the share at once. A peer's abort notice,
// waiting in the early buffer, ends the session the moment it starts; the
// Wipe right after Sign returns would race with tss-lib's round 1 otherwise
// (go test -race reports it).
func TestSignReturnsAfterTssLibStopped(t *testing.T) {
	_, shares := shared2of3(t)
	net := tss.NewMemNetwork()
	net.Endpoint("node2") // reachable, nobody reads it
	e, err := tss.NewEngine(tss.Config{Self: "node1", Transport: net.Endpoint("node1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	signers := []pki.NodeID{"node1", "node2"}
	for i := 0; i < 3; i++ {
		share := copyShare(t, shares["node1"])
		sess := tss.NewSessionID()
		env := &tss.Envelope{Wallet: share.Wallet, Session: sess, Type: tss.TypePeerAbort, From: "node2", To: "node1", Payload: []byte("stop")}
		if err := net.Endpoint("node2").Send(context.Background(), "node1", env); err != nil {
			t.Fatal(err)
		}
		pollStats(t, e, "the abort notice held early", func(s tss.Stats) bool { return s.EarlyHeld == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		_, err := e.Sign(ctx, share, tss.SignParams{Session: sess, Signers: signers, Digest: digestOf("wipe")})
		cancel()
		if !errors.Is(err, tss.ErrPeerAborted) {
			t.Fatalf("want the peer's abort, got %v", err)
		}
		xi := share.Data.Xi
		share.Wipe()
		if xi.Sign() != 0 || !share.Retired() {
			t.Fatal("Wipe did not zero the share")
		}
	}
}
