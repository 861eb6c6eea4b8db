package tss_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
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
