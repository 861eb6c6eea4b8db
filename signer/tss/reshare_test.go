package tss_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

func TestKeygenSign3of5(t *testing.T) {
	ids := nodes(5)
	c := newCluster(t, ids)
	shares := c.keygen(t, "wallet-3of5", ids, 2, preFor(ids, 0))
	d := digestOf("3of5")
	sig := c.mustSign(t, shares, []pki.NodeID{"node2", "node4", "node5"}, d)
	tsstest.VerifySignature(t, sig, shares["node1"].PubKey, d)
}

// TestReshare2of3To3of4 reshares a 2-of-3 wallet to a 3-of-4 committee
// (node4 added, t raised), checks the public key is kept, the new committee
// signs, and the old shares were retired only through OnRetire.
func TestReshare2of3To3of4(t *testing.T) {
	oldIDs, newIDs := nodes(3), nodes(4)
	c := newCluster(t, newIDs)
	old := c.keygen(t, "wallet-reshare", oldIDs, 1, preFor(oldIDs, 0))
	info := old["node1"].Info()
	var mu sync.Mutex
	retired := map[pki.NodeID]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	sess := tss.NewSessionID()
	newPre := preFor(newIDs, 5)
	res := parallel(newIDs, func(id pki.NodeID) (*tss.Share, error) {
		return c.engines[id].Reshare(ctx, tss.ReshareParams{
			Session: sess, Old: info, OldSigners: oldIDs, New: newIDs, NewThreshold: 2,
			OnRetire: func(s *tss.Share) error {
				if s.Retired() {
					return fmt.Errorf("retired before OnRetire returned")
				}
				mu.Lock()
				retired[s.Self] = true
				mu.Unlock()
				return nil
			},
		}, old[id], newPre[id])
	})
	shares := map[pki.NodeID]*tss.Share{}
	for id, r := range res {
		if r.err != nil {
			t.Fatalf("reshare %s: %v", id, r.err)
		}
		if string(r.val.PubKey) != string(info.PubKey) || r.val.Threshold != 2 || len(r.val.Members) != 4 {
			t.Fatalf("%s: new share has key %x, t=%d, %d members", id, r.val.PubKey, r.val.Threshold, len(r.val.Members))
		}
		shares[id] = r.val
	}
	for _, id := range oldIDs {
		if !retired[id] || !old[id].Retired() {
			t.Fatalf("old share of %s not retired", id)
		}
	}
	d := digestOf("after reshare")
	tsstest.VerifySignature(t, c.mustSign(t, shares, []pki.NodeID{"node1", "node3", "node4"}, d), info.PubKey, d)
	// Old shares can no longer sign, alone or in any subset.
	_, err := c.engines["node1"].Sign(ctx, old["node1"], tss.SignParams{Session: tss.NewSessionID(), Signers: []pki.NodeID{"node1", "node2"}, Digest: d})
	if !errors.Is(err, tss.ErrShareRetired) {
		t.Fatalf("old share signed or wrong error: %v", err)
	}
	if _, err := old["node1"].Marshal(); !errors.Is(err, tss.ErrShareRetired) {
		t.Fatalf("retired share still serialises: %v", err)
	}
	// Fewer than t+1 = 3 new signers are refused.
	_, err = c.engines["node1"].Sign(ctx, shares["node1"], tss.SignParams{Session: tss.NewSessionID(), Signers: []pki.NodeID{"node1", "node2"}, Digest: d})
	if !errors.Is(err, tss.ErrBadParams) {
		t.Fatalf("2 signers of a 3-of-4: %v", err)
	}
	seen := 0
	for len(c.events) > 0 {
		if ev := <-c.events; ev.Kind == tss.EventShareRetired {
			seen++
		}
	}
	if seen != len(oldIDs) {
		t.Fatalf("%d share-retired events, want %d", seen, len(oldIDs))
	}
}

// reshareSharedWallet reshares the shared 2-of-3 wallet, with old signers
// node1 and node2, to the committee node1, node2, node3 with t = 1, on copies
// of the old shares (the shared ones stay usable), under session sess. The
// test-sign subset is the first t+1 new members by node, {node1, node2}:
// node3 takes part only as a new member, outside the test subset (the one
// that used to return its new share without waiting for the test
// signature). It returns every member's result, the old copies and how many
// times OnRetire ran.
func reshareSharedWallet(t *testing.T, c *cluster, shares map[pki.NodeID]*tss.Share, sess tss.SessionID) (map[pki.NodeID]result[*tss.Share], map[pki.NodeID]*tss.Share, int32) {
	t.Helper()
	info := shares["node1"].Info()
	oldSigners := []pki.NodeID{"node1", "node2"}
	old := map[pki.NodeID]*tss.Share{}
	for _, id := range oldSigners {
		old[id] = copyShare(t, shares[id])
	}
	pre := preFor(all3, 3)
	var retired atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	res := parallel(all3, func(id pki.NodeID) (*tss.Share, error) {
		return c.engines[id].Reshare(ctx, tss.ReshareParams{Session: sess, Old: info, OldSigners: oldSigners, New: all3, NewThreshold: 1,
			OnRetire: func(*tss.Share) error { retired.Add(1); return nil }}, old[id], pre[id])
	})
	return res, old, retired.Load()
}

// wantReshareReturnsNothing checks that no member returned a new share,
// every member's error names cause, no OnRetire ran and every old share is
// intact (not retired, still serialises).
func wantReshareReturnsNothing(t *testing.T, res map[pki.NodeID]result[*tss.Share], old map[pki.NodeID]*tss.Share, retired int32, cause string) {
	t.Helper()
	wantNoShare(t, res)
	for id, r := range res {
		if r.err != nil && !strings.Contains(r.err.Error(), cause) {
			t.Errorf("%s: error does not name the cause %q: %v", id, cause, r.err)
		}
	}
	if retired != 0 {
		t.Errorf("OnRetire called %d times by a failed reshare", retired)
	}
	for id, s := range old {
		if s.Retired() {
			t.Errorf("%s: old share retired by a failed reshare", id)
		} else if _, err := s.Marshal(); err != nil {
			t.Errorf("%s: old share unusable after a failed reshare: %v", id, err)
		}
	}
}

// TestReshareTestSignFailureReturnsNothing (SECURITY.md 8): in a reshare of
// the shared wallet the test subset {node1, node2} signs, but node2's last
// signing message to node1 is tampered, so node1's test-sign fails (node2's
// completes, or ends on node1's abort notice, depending on timing). No
// member returns a new share: not node3, a new member outside the test
// subset (which used to return its share right after the resharing
// protocol), nor node2; every error names the failed test-sign, no old
// share is retired and OnRetire is never called.
func TestReshareTestSignFailureReturnsNothing(t *testing.T) {
	c, shares := shared2of3(t)
	c.faults["node2"].SetFaults(&tsstest.Fault{Kind: tsstest.Tamper, Times: 1, Match: tsstest.MatchType(tss.SignRound9Type, "node1")})
	t.Cleanup(func() { clearFaults(c) })
	res, old, retired := reshareSharedWallet(t, c, shares, tss.NewSessionID())
	wantReshareReturnsNothing(t, res, old, retired, "test-sign")
	if !errors.Is(res["node3"].err, tss.ErrPeerAborted) {
		t.Fatalf("node3 (outside the test subset) should learn of the failure from a peer: %v", res["node3"].err)
	}
}

// TestReshareKeyDisagreementReturnsNothing (SECURITY.md 8): node3's
// confirmation of the resharing result (public key and public shares)
// differs from what node1 and node2 computed. They abort with
// ErrInconsistentResult naming only node3; node3, which saw its peers'
// confirmations match its own and is outside the test subset, learns of it
// from them instead of returning its share. No member returns a new share,
// no old share is retired, OnRetire is never called.
func TestReshareKeyDisagreementReturnsNothing(t *testing.T) {
	c, shares := shared2of3(t)
	sess := tss.NewSessionID()
	c.faults["node3"].SetFaults(&tsstest.Fault{Kind: tsstest.Mutate,
		Match:  func(_ pki.NodeID, env *tss.Envelope) bool { return env.Type == tss.TypeConfirm && env.Session == sess },
		Mutate: func(env *tss.Envelope) { env.Payload[0] ^= 1 }})
	t.Cleanup(func() { clearFaults(c) })
	res, old, retired := reshareSharedWallet(t, c, shares, sess)
	wantReshareReturnsNothing(t, res, old, retired, "inconsistent result")
	for _, id := range []pki.NodeID{"node1", "node2"} {
		var ae *tss.AbortError
		if !errors.As(res[id].err, &ae) || !errors.Is(ae, tss.ErrInconsistentResult) || !ae.Culprit("node3") || len(ae.Culprits) != 1 {
			t.Fatalf("%s should refuse node3's result: %v", id, res[id].err)
		}
	}
	if !errors.Is(res["node3"].err, tss.ErrPeerAborted) {
		t.Fatalf("node3 should learn of the disagreement from a peer: %v", res["node3"].err)
	}
}

// TestSignaturesNoRepeatedR signs N digests and checks no R repeats (fresh
// nonces every session). N is small here; TestSoakSignaturesNoRepeatedR runs
// 1,000 under CUSTODY_SOAK=1 (make soak).
func TestSignaturesNoRepeatedR(t *testing.T) {
	n := 12
	if testing.Short() {
		n = 4
	}
	signMany(t, n)
}

func TestSoakSignaturesNoRepeatedR(t *testing.T) {
	if os.Getenv("CUSTODY_SOAK") != "1" {
		t.Skip("set CUSTODY_SOAK=1 (make soak) for 1,000 signatures")
	}
	signMany(t, 1000)
}

func signMany(t *testing.T, n int) {
	c, shares := shared2of3(t)
	subsets := [][]pki.NodeID{{"node1", "node2"}, {"node1", "node3"}, {"node2", "node3"}}
	seen := map[[32]byte]int{}
	for i := 0; i < n; i++ {
		d := digestOf("same digest") // same message every time: R must still differ
		sig := c.mustSign(t, shares, subsets[i%3], d)
		if j, dup := seen[sig.R]; dup {
			t.Fatalf("signature %d repeats R of signature %d", i, j)
		}
		seen[sig.R] = i
		if i == 0 {
			tsstest.VerifySignature(t, sig, shares["node1"].PubKey, d)
		}
	}
}
