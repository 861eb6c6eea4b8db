package member_test

import (
	"context"
	"errors"
	"testing"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// wantWiped checks that the share mb unsealed last is not prev (a fresh
// unseal for this session) and that its secrets were zeroed when
// SignClaimed returned: the key share dropped, the Paillier and safe-prime
// secrets zero, the share retired (it refuses to sign or serialise).
func wantWiped(t *testing.T, mb *testNode, prev *tss.Share) *tss.Share {
	t.Helper()
	s := mb.shares.last.Load()
	if s == nil || s == prev {
		t.Fatalf("%s: no share unsealed for this session", mb.id)
	}
	d := &s.Data
	if !s.Retired() || d.Xi != nil {
		t.Fatalf("%s: share not wiped after the session (retired %v, Xi set %v)", mb.id, s.Retired(), d.Xi != nil)
	}
	if d.PaillierSK == nil || d.PaillierSK.LambdaN.Sign() != 0 || d.PaillierSK.PhiN.Sign() != 0 ||
		d.PaillierSK.P.Sign() != 0 || d.PaillierSK.Q.Sign() != 0 || d.P.Sign() != 0 || d.Q.Sign() != 0 {
		t.Fatalf("%s: Paillier or safe-prime secrets survive the session", mb.id)
	}
	if _, err := s.Marshal(); !errors.Is(err, tss.ErrShareRetired) {
		t.Fatalf("%s: wiped share still serialises: %v", mb.id, err)
	}
	return s
}

// TestShareWipedAfterSession: the share a member unseals for a session is
// wiped as soon as the engine's Sign returns, whether the session signed,
// failed inside the engine (n2: an injected peer timeout), or was aborted
// mid-protocol (n1: its context ends while its real session waits for n2).
func TestShareWipedAfterSession(t *testing.T) {
	h := newHarness(t)
	signers := []pki.NodeID{"n1", "n2"}
	n1, n2 := h.members["n1"], h.members["n2"]
	h.request("wd-wipe-ok", h.dests[0], ether(1, 0), bob, carol)
	if _, err := h.orch.Sign(h.ctx, "wd-wipe-ok", signers); err != nil {
		t.Fatal(err)
	}
	last := map[pki.NodeID]*tss.Share{}
	for _, id := range signers {
		last[id] = wantWiped(t, h.members[id], nil)
	}

	h.request("wd-wipe-fail", h.dests[0], ether(1, 0), bob, carol)
	cl, err := h.orch.Claim(h.ctx, "wd-wipe-fail", signers)
	if err != nil {
		t.Fatal(err)
	}
	n2.engine.failNext.Store(true)
	if _, err := n2.m.SignClaimed(h.ctx, "wd-wipe-fail", cl); !errors.Is(err, errInjectedTimeout) {
		t.Fatalf("n2: want the injected failure, got %v", err)
	}
	wantWiped(t, n2, last["n2"])

	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	started := n1.engine.signs.Load()
	done := make(chan error, 1)
	go func() {
		_, err := n1.m.SignClaimed(ctx, "wd-wipe-fail", cl)
		done <- err
	}()
	poll(t, "n1's session to start", func() error {
		if n1.engine.signs.Load() == started {
			return errors.New("not yet")
		}
		return nil
	})
	cancel() // n2 never joins: n1's session is aborted mid-protocol
	if err := <-done; !errors.Is(err, member.ErrSession) {
		t.Fatalf("n1: want a failed session, got %v", err)
	}
	wantWiped(t, n1, last["n1"])
}
