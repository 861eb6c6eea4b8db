package ledger_test

import (
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// TestByzantineForgedSnapshotHaltsFollower is hole 1 of the trust issue
// driven by a real cluster member: the Byzantine node leads and sends a
// follower, over raft's own InstallSnapshot RPC, a well-formed snapshot of
// its own making — the cluster's real state with the lock dropped and an
// approver of its own added, under a checkpoint it signed itself (alone,
// or with a key the node set does not pin), and, separately, a genuine
// older snapshot (a rollback to before the lock). The follower refuses
// each: it halts with an alert naming the cause, its state is unchanged
// (still locked, no new operator), the refused file is set aside so the
// node restarts, and after a restart it converges with the cluster again.
func TestByzantineForgedSnapshotHaltsFollower(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	clock := ledgertest.NewClock(t0)
	g := genesisEvery(8)
	c := newCluster(t, 3, ledgertest.NodeClock("n3", clock, func(cfg *Config) { cfg.Genesis = &g }))
	seedWith(c, g)
	// An older genuine state: before the lock.
	var rollback []byte
	lock := policy.Change{ID: "lock-hot", Kind: policy.ChangeLock, Wallet: "hot", Reason: "incident"}
	b := ledgertest.NewByzantine(c, "n3", clock)
	b.Lead()
	for i := range 12 {
		if _, err := b.Append("backend", createCmd(fmt.Sprintf("pre-%d", i), uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	ledgertest.Poll(t, "a certified checkpoint", func() error {
		return b.Node.Store.ReadLocal(func(st *State) error {
			if len(st.Checkpoints) == 0 {
				return errors.New("none yet")
			}
			return nil
		})
	})
	if err := b.Node.Store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	rollback = newestSnapshot(t, b.Node.Dir)
	if _, err := b.Append("api", PolicyChange{Change: lock, Approvals: []quorum.Approval{dave.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve, t0.Add(time.Hour))}}); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if _, err := b.Append("backend", createCmd(fmt.Sprintf("post-%d", i), uint64(50+i))); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitConverged(c.Nodes...)
	// A genuine current snapshot (certified after the lock), to be sent
	// under a higher index than its checkpoint's: raft would then skip the
	// entries in between (the attacker's read of the first design).
	ledgertest.Poll(t, "a snapshot after the lock", func() error { return b.Node.Store.Snapshot() })
	current := newestSnapshot(t, b.Node.Dir)
	headOf := func(data []byte) CheckpointHead {
		var sf SnapshotFile
		if err := json.Unmarshal(data, &sf); err != nil || sf.Checkpoint == nil {
			t.Fatalf("snapshot file: %v", err)
		}
		return sf.Checkpoint.CheckpointHead
	}

	target := c.Nodes[0]
	var cp Checkpoint
	var forged *State
	if err := target.Store.ReadLocal(func(st *State) error {
		cp = *st.LastCheckpoint()
		var err error
		forged, err = st.Clone()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	forge(t, forged)
	forgedSnapshot := func(signers map[pki.NodeID]crypto.Signer) []byte {
		base, err := forged.Encode()
		if err != nil {
			t.Fatal(err)
		}
		sum, _ := forged.Hash()
		seq, head := forged.Audit[len(forged.Audit)-1].Seq, forged.Audit[len(forged.Audit)-1].Hash
		h := CheckpointHead{ClusterID: cp.ClusterID, GenesisHash: cp.GenesisHash, Index: forged.Index, StateHash: hex.EncodeToString(sum[:]), AuditSeq: seq, AuditHead: head}
		fc := Checkpoint{CheckpointHead: h}
		for n, k := range signers {
			fc.Sigs = append(fc.Sigs, signCP(t, h, n, k).Sig)
		}
		b, err := json.Marshal(SnapshotFile{Format: SnapshotFormat, Checkpoint: &fc, Base: base})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	rb, cur := headOf(rollback), headOf(current)
	for _, tc := range []struct {
		name        string
		data        []byte
		index, term uint64 // 0: past the follower's log
	}{
		{"forged state signed by the Byzantine node alone", forgedSnapshot(map[pki.NodeID]crypto.Signer{"n3": ledgertest.NodeKey("n3")}), 0, 0},
		{"forged state signed by the Byzantine node and one other", forgedSnapshot(map[pki.NodeID]crypto.Signer{"n3": ledgertest.NodeKey("n3"), "n2": ledgertest.NodeKey("n2")}), 0, 0},
		{"forged state signed with keys the node set does not pin", forgedSnapshot(map[pki.NodeID]crypto.Signer{"n3": ledgertest.NodeKey("n3"), "n1": otherKey(t), "n2": otherKey(t)}), 0, 0},
		{"a genuine older snapshot from before the lock, under its own index", rollback, rb.Index, rb.Term},
		{"a genuine current snapshot under a higher index than its checkpoint", current, cur.Index + 3, cur.Term},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := target.Store.Halted(); err != nil {
				t.Fatalf("the follower is halted before the attempt: %v", err)
			}
			refused := func() int {
				m, _ := filepath.Glob(filepath.Join(target.Dir, "snapshots-refused", "*"))
				return len(m)
			}
			setAside := refused()
			term := b.Term()
			index, lastTerm := tc.index, tc.term
			if index == 0 {
				index, lastTerm = target.Store.LastIndex()+100, term
			}
			ok, err := b.InstallSnapshot(target, term, index, lastTerm, tc.data)
			if ok || err == nil || !strings.Contains(err.Error(), "snapshot refused") {
				t.Fatalf("InstallSnapshot: success %v, %v; want the follower to refuse it", ok, err)
			}
			if err := target.Store.Halted(); !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("follower after the forged snapshot: halted %v, want an ErrCheckpoint halt", err)
			}
			// Its state is still a prefix of the cluster's history (it may
			// have applied entries right up to the refusal, nothing else).
			var honest []AuditEvent
			_ = b.Node.Store.ReadLocal(func(st *State) error { honest = slices.Clone(st.Audit); return nil })
			_ = target.Store.ReadLocal(func(st *State) error {
				if n := len(st.Audit); n == 0 || n > len(honest) || honest[n-1].Hash != st.Audit[n-1].Hash {
					t.Errorf("the follower's history (%d events) is not a prefix of the cluster's (%d)", n, len(honest))
				}
				if _, locked := st.Policy.LockedAt("hot", st.Clock); !locked {
					t.Error("the follower's wallet is no longer locked")
				}
				if _, ok := st.Registry.Operators["mallory"]; ok {
					t.Error("the follower enrolled the forger's operator")
				}
				return nil
			})
			ledgertest.Poll(t, "the refused snapshot set aside", func() error {
				if refused() == setAside {
					return fmt.Errorf("snapshots-refused/ holds %d", setAside)
				}
				return nil
			})
			// The halted node restarts (raft does not meet the refused file
			// again) and converges with the others.
			if err := target.Store.Close(); err != nil {
				t.Fatal(err)
			}
			c.StartNode(target, target.Addr)
			if _, err := b.Append("api", WalletSet{Wallet{ID: "after-" + strings.ReplaceAll(tc.name, " ", "-"), Chain: "eth", Network: "devnet", Committee: allSigners, Threshold: 2}}); err != nil {
				t.Fatal(err)
			}
			c.WaitConverged(c.Nodes...)
			if err := target.Store.Halted(); err != nil {
				t.Fatalf("restarted follower: %v", err)
			}
		})
	}
}

// newestSnapshot reads the newest stored snapshot of a node's data dir.
func newestSnapshot(t *testing.T, dir string) []byte {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no snapshot in %s: %v", dir, err)
	}
	newest, when := "", time.Time{}
	for _, p := range m {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(when) {
			newest, when = p, fi.ModTime()
		}
	}
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
