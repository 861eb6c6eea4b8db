package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// TestExportCheckHoldsAttestation: a node whose own check refuses a cold
// export (the daemon's: the rules by its own first-seen times) does not
// attest it, so the export stays unattested (3 of 3 needed) and cannot be
// imported; once its check passes, it attests and the export is attested.
func TestExportCheckHoldsAttestation(t *testing.T) {
	var hold atomic.Bool
	hold.Store(true)
	var refused atomic.Int64
	c := newCluster(t, 3, func(cfg *Config) {
		if cfg.NodeID != "n3" {
			return
		}
		cfg.ExportCheck = func(st *State, r *Request) error {
			if hold.Load() {
				refused.Add(1)
				return errors.New("cooling-off not over by n3's own first-seen time")
			}
			return nil
		}
	})
	seed(c)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	create := initiated(RequestCreate{ID: "c1", Withdrawal: coldWithdrawal(), Payload: []byte("psbt"), PayloadHash: [32]byte{9},
		Outpoints: []string{"aa:0"}, ExpiresAt: exp}, backend, exp)
	r := c.Submit(ctx, "backend", create).Request
	r = c.Submit(ctx, "api", alice.approve(t, r, exp)).Request
	r = c.Submit(ctx, "api", carol.approve(t, r, exp)).Request
	if r.Status != StatusApproved {
		t.Fatalf("cold request is %s after two approvals", r.Status)
	}
	var head string
	c.OnLeader(func(l *Store) error {
		return l.ReadLinearizable(ctx, func(st *State) error {
			head = st.GovernanceHead
			if head == "" {
				head = st.GenesisHash
			}
			return nil
		})
	})
	auth := alice.sign(t, "c1", ColdExportHash("c1", r.PayloadHash), quorum.Approve, exp)
	c.Submit(ctx, "n1", ColdExport{RequestID: "c1", BundleHash: bundleHash("b1"), GovernanceHead: head, ExportedAt: time.Now(), Authorization: &auth})

	attesters := func() (nodes []pki.NodeID, attested bool) {
		_ = c.Leader().ReadLocal(func(st *State) error {
			if e := st.Requests["c1"].Export; e != nil {
				for _, s := range e.Attestations {
					nodes = append(nodes, s.Node)
				}
				attested = e.Attested
			}
			return nil
		})
		return nodes, attested
	}
	ledgertest.Poll(t, "n1 and n2 attest the export, n3's check refuses it", func() error {
		nodes, attested := attesters()
		if !slices.Equal(nodes, []pki.NodeID{"n1", "n2"}) || attested || refused.Load() == 0 {
			return fmt.Errorf("attested by %v (attested %v), n3 refused %d times", nodes, attested, refused.Load())
		}
		return nil
	})
	hold.Store(false)
	ledgertest.Poll(t, "n3 attests once its check passes", func() error {
		if nodes, attested := attesters(); !attested || !slices.Contains(nodes, "n3") {
			return fmt.Errorf("attested by %v (attested %v)", nodes, attested)
		}
		return nil
	})
}
