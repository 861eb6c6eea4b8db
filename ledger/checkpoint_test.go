package ledger_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// cpInterval is the checkpoint interval of the checkpoint tests: small, so
// a few commands reach one.
const cpInterval = 8

// newPinnedHarness is newHarness over an FSM that pins genesisCmd and
// reaches a checkpoint every cpInterval indices.
func newPinnedHarness(t testing.TB) *fsmHarness {
	g := genesisEvery(cpInterval)
	h := &fsmHarness{t: t, f: NewPinnedFSM(&g), term: 1, now: fsmT0}
	h.must("ceremony", g)
	for _, cmd := range testWalletCmds(t, h.now) {
		h.must("keygen", cmd)
	}
	return h
}

// toCheckpoint creates requests until the FSM holds a pending checkpoint,
// and returns its index.
func (h *fsmHarness) toCheckpoint() uint64 {
	h.t.Helper()
	for i := 0; i < 2*cpInterval; i++ {
		if p := h.f.Pending(); len(p) > 0 {
			return p[len(p)-1]
		}
		h.create(fmt.Sprintf("cp-%d", h.idx), 100+h.idx)
	}
	h.t.Fatal("no checkpoint reached")
	return 0
}

// signCP is node's signature, with key, over the head h.
func signCP(t testing.TB, h CheckpointHead, node pki.NodeID, key crypto.Signer) CheckpointSign {
	t.Helper()
	s, err := SignCheckpoint(h, node, key)
	if err != nil {
		t.Fatal(err)
	}
	return CheckpointSign{Index: h.Index, Term: h.Term, StateHash: h.StateHash, AuditSeq: h.AuditSeq, AuditHead: h.AuditHead, Sig: s}
}

// certify has every node of the node set sign the pending checkpoint idx
// (the checkpoint quorum of 3 is 3).
func (h *fsmHarness) certify(idx uint64) {
	h.t.Helper()
	head, ok := h.f.PendingHead(idx)
	if !ok {
		h.t.Fatalf("no pending checkpoint %d", idx)
	}
	for _, n := range ledgertest.GenesisNodes {
		h.must(string(n), signCP(h.t, head, n, ledgertest.NodeKey(n)))
	}
}

func (h *fsmHarness) checkpoints() []Checkpoint {
	var out []Checkpoint
	_ = h.f.Read(func(st *State) error { out = append(out, st.Checkpoints...); return nil })
	return out
}

func (h *fsmHarness) snapshotBytes() []byte {
	h.t.Helper()
	snap, err := h.f.Snapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		h.t.Fatal(err)
	}
	return sink.Bytes()
}

func otherKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCheckpointCertification: a checkpoint is certified by the signature
// of the quorum-th node of the node set (CheckpointQuorum: 3 of 3), each over the head this node
// computed itself; signatures by keys the node set does not pin, by nodes
// outside it, over another hash, or after certification are refused with
// the state unchanged.
func TestCheckpointCertification(t *testing.T) {
	h := newPinnedHarness(t)
	idx := h.toCheckpoint()
	head, _ := h.f.PendingHead(idx)

	wrongHash := head
	wrongHash.StateHash = strings.Repeat("ab", 32)
	wrongAudit := head
	wrongAudit.AuditSeq--
	otherCluster := head
	otherCluster.ClusterID = "another"
	for name, cmd := range map[string]CheckpointSign{
		"key the node set does not pin": signCP(t, head, "n1", otherKey(t)),
		"node outside the node set":     signCP(t, head, "n9", ledgertest.NodeKey("n9")),
		"another state hash":            signCP(t, wrongHash, "n1", ledgertest.NodeKey("n1")),
		"another audit head":            signCP(t, wrongAudit, "n1", ledgertest.NodeKey("n1")),
		"another cluster":               signCP(t, otherCluster, "n1", ledgertest.NodeKey("n1")),
		"unknown index":                 signCP(t, CheckpointHead{ClusterID: head.ClusterID, GenesisHash: head.GenesisHash, Index: idx + 1, StateHash: head.StateHash, AuditSeq: head.AuditSeq, AuditHead: head.AuditHead}, "n1", ledgertest.NodeKey("n1")),
	} {
		t.Run(name, func(t *testing.T) { h.refuse(ErrCheckpoint, "n1", cmd) })
	}
	tampered := signCP(t, head, "n1", ledgertest.NodeKey("n1"))
	tampered.Sig.Signature[len(tampered.Sig.Signature)-1] ^= 1
	h.refuse(ErrCheckpoint, "n1", tampered)

	before := h.hash()
	h.must("n1", signCP(t, head, "n1", ledgertest.NodeKey("n1")))
	if h.hash() != before || len(h.checkpoints()) != 0 {
		t.Fatal("one signature of three changed the state or certified the checkpoint")
	}
	h.must("n1", signCP(t, head, "n1", ledgertest.NodeKey("n1"))) // a repeat counts once
	if len(h.checkpoints()) != 0 {
		t.Fatal("a repeated signature certified the checkpoint")
	}
	// Two of three is a majority but not the checkpoint quorum: a
	// compromised node and one follower it fed a forged log would be two.
	h.must("n2", signCP(t, head, "n2", ledgertest.NodeKey("n2")))
	if len(h.checkpoints()) != 0 {
		t.Fatal("two signatures of three certified the checkpoint")
	}
	h.must("n3", signCP(t, head, "n3", ledgertest.NodeKey("n3")))
	cps := h.checkpoints()
	if len(cps) != 1 || cps[0].CheckpointHead != head || len(cps[0].Sigs) != 3 {
		t.Fatalf("checkpoints after three of three signatures: %+v", cps)
	}
	if err := VerifyCheckpoint(cps[0], nodeSet()); err != nil {
		t.Fatal(err)
	}
	two := cps[0]
	two.Sigs = two.Sigs[:2]
	if err := VerifyCheckpoint(two, nodeSet()); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("a checkpoint with two of three signatures verified: %v", err)
	}
	h.refuse(ErrCheckpoint, "n1", signCP(t, head, "n1", ledgertest.NodeKey("n1")))
}

// forge makes st what hole 1 of the trust issue describes a forger's
// state to be: every lock dropped, an approver of its own enrolled.
func forge(t testing.TB, st *State) {
	t.Helper()
	pol, err := policy.NewState(st.Policy.Allowlist(), nil, st.Policy.History())
	if err != nil {
		t.Fatal(err)
	}
	st.Policy = pol
	st.Registry.Operators["mallory"] = quorum.Operator{ID: "mallory", Name: "mallory", Kind: quorum.KindHuman, Roles: []quorum.Role{quorum.RoleApprover}, Status: quorum.StatusActive}
}

func nodeSet() map[pki.NodeID]*Node {
	m := map[pki.NodeID]*Node{}
	for _, n := range ledgertest.Nodes(ledgertest.GenesisNodes...) {
		m[n.ID] = &n
	}
	return m
}

// TestSnapshotRestoreVerified: a snapshot is a certified checkpoint only:
// it restores to exactly the state at the checkpoint, stored under the
// checkpoint's index and term (raft resumes after it, from the log). Every
// forgery one compromised node can make is refused with the restoring
// FSM's state unchanged: a bare state (the old format), a base edited under
// the honest certificate, a base certified by the forger alone or with a
// key the node set does not pin, a genuine snapshot stored under a higher
// index (raft would skip the entries in between), a rollback to an older
// genuine checkpoint, another genesis, and any checkpoint on a node with no
// node set to verify it against.
func TestSnapshotRestoreVerified(t *testing.T) {
	h := newPinnedHarness(t)
	if _, err := h.f.Snapshot(); !errors.Is(err, ErrNoCertifiedBase) {
		t.Fatalf("snapshot before any certified checkpoint: %v", err)
	}
	first := h.toCheckpoint()
	firstHead, _ := h.f.PendingHead(first)
	h.certify(first)
	old := h.snapshotBytes()
	lock := policy.Change{ID: "lock-hot", Kind: policy.ChangeLock, Wallet: "hot", Reason: "incident"}
	h.must("api", PolicyChange{Change: lock, Approvals: []quorum.Approval{dave.sign(t, lock.ID, lock.PayloadHash(), quorum.Approve, h.now.Add(time.Hour))}})
	second := h.toCheckpoint()
	head, _ := h.f.PendingHead(second)
	h.certify(second)
	h.create("after-checkpoint", 300) // not in the snapshot: it comes from the log
	good := h.snapshotBytes()

	var sf SnapshotFile
	if err := json.Unmarshal(good, &sf); err != nil {
		t.Fatal(err)
	}
	if sf.Checkpoint == nil || sf.Checkpoint.CheckpointHead != head || sf.Format != SnapshotFormat {
		t.Fatalf("snapshot: checkpoint %+v, want %+v", sf.Checkpoint, head)
	}

	fresh := func() *FSM { g := genesisEvery(cpInterval); return NewPinnedFSM(&g) }
	f := fresh()
	if err := f.RestoreAt(good, head.Index, head.Term); err != nil {
		t.Fatal(err)
	}
	_ = f.Read(func(st *State) error {
		if sum, _ := st.Hash(); hex.EncodeToString(sum[:]) != head.StateHash || st.Requests["after-checkpoint"] != nil {
			t.Fatal("the restored state is not the checkpoint's")
		}
		if _, locked := st.Policy.LockedAt("hot", st.Clock); !locked {
			t.Fatal("the restored state lost the lock")
		}
		return nil
	})

	// Forgeries. The forger's state: the lock dropped, an operator of its
	// own added (what hole 1 of the trust issue describes).
	forgedBase := func() *State {
		st, err := DecodeState(sf.Base)
		if err != nil {
			t.Fatal(err)
		}
		forge(t, st)
		return st
	}
	encode := func(s SnapshotFile) []byte {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withBase := func(st *State, signers map[pki.NodeID]crypto.Signer) []byte {
		b, err := st.Encode()
		if err != nil {
			t.Fatal(err)
		}
		s := sf
		cp := *sf.Checkpoint
		s.Base = b
		if signers != nil {
			sum, _ := st.Hash()
			cp.StateHash = hex.EncodeToString(sum[:])
			cp.Sigs = nil
			for n, k := range signers {
				cp.Sigs = append(cp.Sigs, signCP(t, cp.CheckpointHead, n, k).Sig)
			}
		}
		s.Checkpoint = &cp
		return encode(s)
	}
	bare, _ := forgedBase().Encode()
	for name, tc := range map[string]struct {
		b           []byte
		index, term uint64
		want        error
	}{
		"bare state of the old format":                 {bare, head.Index, head.Term, ErrCheckpoint},
		"edited base under the honest certificate":     {withBase(forgedBase(), nil), head.Index, head.Term, ErrCheckpoint},
		"edited base signed by the forger alone":       {withBase(forgedBase(), map[pki.NodeID]crypto.Signer{"n3": ledgertest.NodeKey("n3")}), head.Index, head.Term, ErrCheckpoint},
		"edited base signed by two of three":           {withBase(forgedBase(), map[pki.NodeID]crypto.Signer{"n3": ledgertest.NodeKey("n3"), "n2": ledgertest.NodeKey("n2")}), head.Index, head.Term, ErrCheckpoint},
		"edited base signed with an unpinned key":      {withBase(forgedBase(), map[pki.NodeID]crypto.Signer{"n3": ledgertest.NodeKey("n3"), "n2": ledgertest.NodeKey("n2"), "n1": otherKey(t)}), head.Index, head.Term, ErrCheckpoint},
		"genuine snapshot stored under a higher index": {good, head.Index + 5, head.Term, ErrCheckpoint},
		"genuine snapshot stored under another term":   {good, head.Index, head.Term + 1, ErrCheckpoint},
		"truncated": {good[:len(good)/2], head.Index, head.Term, ErrCheckpoint},
		"the older checkpoint stored under the newer one": {old, head.Index, head.Term, ErrCheckpoint},
	} {
		t.Run(name, func(t *testing.T) {
			f := fresh()
			before, _ := f.Hash()
			if err := f.RestoreAt(tc.b, tc.index, tc.term); !errors.Is(err, tc.want) {
				t.Fatalf("restore: %v, want %v", err, tc.want)
			}
			if after, _ := f.Hash(); after != before {
				t.Fatal("a refused snapshot changed the state")
			}
		})
	}

	// No rollback: the node that has the newer state refuses the older
	// genuine snapshot; a fresh node takes it.
	f = fresh()
	if err := f.RestoreAt(good, head.Index, head.Term); err != nil {
		t.Fatal(err)
	}
	at, _ := f.Hash()
	if err := f.RestoreAt(old, firstHead.Index, firstHead.Term); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "roll") {
		t.Fatalf("rollback to an older snapshot: %v", err)
	}
	if got, _ := f.Hash(); got != at {
		t.Fatal("a refused rollback changed the state")
	}
	if err := fresh().RestoreAt(old, firstHead.Index, firstHead.Term); err != nil {
		t.Fatalf("a fresh node restoring a genuine older snapshot: %v", err)
	}

	// Another genesis pinned: refused.
	other := genesisEvery(cpInterval)
	other.Hash = strings.Repeat("0", 64)
	if err := NewPinnedFSM(&other).RestoreAt(good, head.Index, head.Term); !errors.Is(err, ErrGenesisMismatch) && !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("snapshot of another genesis: %v", err)
	}
	// No node set to verify against: refused.
	if err := NewFSM(nil, nil).Restore(io.NopCloser(bytes.NewReader(good))); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("checkpoint on an unpinned empty node: %v", err)
	}
}

// TestPinnedGenesisRefusesAnother: a node whose config pins a genesis
// refuses a log whose genesis is another one, and changes nothing.
func TestPinnedGenesisRefusesAnother(t *testing.T) {
	g := genesisCmd()
	h := &fsmHarness{t: t, f: NewPinnedFSM(&g), term: 1, now: fsmT0}
	other := genesisCmd()
	other.AdminQuorum = 1
	h.refuse(ErrGenesisMismatch, "ceremony", other)
	every := genesisEvery(cpInterval)
	h.refuse(ErrGenesisMismatch, "ceremony", every)
	h.must("ceremony", genesisCmd())
}
