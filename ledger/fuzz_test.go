package ledger_test

import (
	"bytes"
	"errors"
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

// FuzzApplyEntry feeds arbitrary log entries to an initialised FSM. An entry
// is applied, refused without a state change, or halts the node; it never
// panics (a recovered panic would show up as a halt "panic in apply") and the
// audit chain always verifies.
func FuzzApplyEntry(f *testing.F) {
	now := fsmT0
	add := func(p Command) {
		b, err := EncodeCommand("backend", now, p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	c := createCmd("fz", 1)
	c.ExpiresAt = now.Add(time.Hour)
	add(c)
	add(VoterSet{ID: "n9", Address: "127.0.0.1:9"})
	add(ClaimSession{RequestID: "fz", ExpectStatus: StatusApproved, SessionID: strings.Repeat("ab", 32), Term: 1, Signers: allSigners})
	add(ReclaimSession{RequestID: "fz", FailedSession: strings.Repeat("ab", 32), SessionID: strings.Repeat("cd", 32), Term: 1, Signers: allSigners})
	add(Approve{RequestID: "fz", Approval: quorum.Approval{Statement: quorum.Statement{ClusterID: testCluster, RequestID: "fz", Decision: quorum.Approve, Expiry: now.Add(time.Hour)}, DeviceID: "x"}})
	add(RecordResult{RequestID: "fz", SessionID: "00", Signed: []byte{1}})
	add(ExpireRequest{RequestID: "fz"})
	add(RecordBroadcast{RequestID: "fz", TxHash: "0x01"})
	add(RecordChainStatus{RequestID: "fz", TxHash: "0x01", Status: StatusDropped})
	add(ChainWitness{RequestID: "fz", TxHash: "0x01", Status: StatusDropped, Sig: CheckpointSig{Node: "n1", PublicKey: []byte{1}, Signature: []byte{2}}})
	add(WalletSet{Wallet{ID: "w", Chain: "eth", Network: "n", Committee: []pki.NodeID{"a"}, Threshold: 1}})
	add(ColdExport{RequestID: "fz", BundleHash: "h"})
	exp := now.Add(time.Hour)
	lock := policy.Change{ID: "fz-lock", Kind: policy.ChangeLock, Wallet: "hot", Reason: "fuzz"}
	add(PolicyChange{Change: lock, Approvals: []quorum.Approval{dave.sign(f, lock.ID, lock.PayloadHash(), quorum.Approve, exp)}})
	unlock := policy.Change{ID: "fz-unlock", Kind: policy.ChangeUnlock, Wallet: "hot"}
	add(PolicyChange{Change: unlock, Approvals: []quorum.Approval{alice.sign(f, unlock.ID, unlock.PayloadHash(), quorum.Approve, exp)}})
	rev := quorum.Change{ID: "fz-revoke", Kind: quorum.ChangeRevokeDevice, DeviceID: bob.Device().ID}
	add(RegistryChange{Change: rev, Approvals: []quorum.Approval{alice.sign(f, rev.ID, rev.PayloadHash(), quorum.Approve, exp)}})
	add(RulesSet{ID: "fz-rules", Body: []byte(testRules)})
	nc := NodeSetChange{ID: "fz-node", Kind: NodeAdd, Node: ledgertest.Nodes("n4")[0]}
	add(NodeChange{Change: nc, Approvals: []quorum.Approval{alice.sign(f, nc.ID, nc.PayloadHash(), quorum.Approve, exp), bob.sign(f, nc.ID, nc.PayloadHash(), quorum.Approve, exp)}})
	wc := WalletSpec{ID: "fz-wallet", Wallet: "fzw", Chain: "eth", Network: "devnet", Committee: allSigners, Threshold: 1}
	add(WalletCreate{Change: wc, Approvals: []quorum.Approval{alice.sign(f, wc.ID, wc.PayloadHash(), quorum.Approve, exp), carol.sign(f, wc.ID, wc.PayloadHash(), quorum.Approve, exp)}})
	add(NodeToken{Node: "n1", TokenSerial: "0123abcd", Sig: CheckpointSig{Node: "n1", PublicKey: []byte{1}, Signature: []byte{2}}})
	add(WalletKeyed{Wallet: "fzw", PubKey: testPubKey(9), Attestations: []CheckpointSig{{Node: "n1", PublicKey: []byte{1}, Signature: []byte{2}}}})
	rs := ReshareSpec{ID: "fz-reshare", Wallet: "fzw", NewCommittee: []pki.NodeID{"n2", "n3"}, NewThreshold: 1}
	add(WalletReshare{Change: rs, Approvals: []quorum.Approval{alice.sign(f, rs.ID, rs.PayloadHash(), quorum.Approve, exp), carol.sign(f, rs.ID, rs.PayloadHash(), quorum.Approve, exp)}})
	add(WalletReshared{Wallet: "fzw", PubKey: testPubKey(9), Session: strings.Repeat("0f", 32), Attestations: []CheckpointSig{{Node: "n2", PublicKey: []byte{1}, Signature: []byte{2}}}})
	add(CheckpointSign{Request: "fz", Index: 3, AuditSeq: 2, AuditHead: GenesisHash})
	add(genesisCmd())
	add(signCP(f, CheckpointHead{ClusterID: testCluster, Index: 8, StateHash: strings.Repeat("ab", 32), AuditHead: GenesisHash}, "n1", ledgertest.NodeKey("n1")))
	f.Add([]byte(`{"v":1,"type":"request.create","time":"2026-11-23T12:00:00Z","actor":"x","payload":{"amount":"-1"}}`))
	f.Add([]byte(`{"v":1,"type":"genesis","time":"2026-11-23T12:00:00Z","actor":"x","payload":null}`))
	f.Fuzz(func(t *testing.T, entry []byte) {
		h := newHarness(t)
		before := h.hash()
		res := h.raw(entry)
		if herr := h.f.Halted(); herr != nil {
			if strings.Contains(herr.Error(), "panic in apply") {
				t.Fatalf("apply panicked: %v", herr)
			}
			if h.hash() != before {
				t.Fatal("halting entry changed the state")
			}
			return
		}
		if res.err != nil && h.hash() != before && !errors.Is(res.err, ErrHalted) {
			t.Fatalf("refused entry (%v) changed the state", res.err)
		}
		_ = h.f.Read(func(st *State) error {
			if err := VerifyChain(st.Audit); err != nil {
				t.Fatal(err)
			}
			return nil
		})
	})
}

// FuzzRestore: snapshots arrive from peers and may be hostile. Restoring
// arbitrary bytes on a node pinning the genesis never panics; a refused
// snapshot leaves the state as it was; an accepted one is of the pinned
// genesis with an audit chain that verifies.
func FuzzRestore(f *testing.F) {
	h := newPinnedHarness(f)
	h.certify(h.toCheckpoint())
	h.create("after", 900)
	f.Add(h.snapshotBytes()) // a certified checkpoint
	f.Add([]byte(`{"format":"custody-ledger-snapshot/v3"}`))
	f.Add([]byte(`{"format":"custody-ledger-snapshot/v3","checkpoint":{"index":1,"sigs":[]},"base":"e30="}`))
	g := genesisEvery(cpInterval)
	f.Fuzz(func(t *testing.T, b []byte) {
		fsm := NewPinnedFSM(&g)
		before, err := fsm.Hash()
		if err != nil {
			t.Fatal(err)
		}
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			if after, _ := fsm.Hash(); after != before {
				t.Fatalf("refused snapshot (%v) changed the state", err)
			}
			return
		}
		_ = fsm.Read(func(st *State) error {
			if st.GenesisHash != "" && st.GenesisHash != g.Hash {
				t.Fatalf("accepted a state of genesis %s", st.GenesisHash)
			}
			if err := VerifyChain(st.Audit); err != nil {
				t.Fatal(err)
			}
			return nil
		})
	})
}

// FuzzReadHeads: a signed-heads file comes from an auditor's archive and
// may be hostile. Reading never panics; whatever reads verifies against
// the genesis's node set or is refused with ErrCheckpoint-classified
// errors, never accepted unsigned.
func FuzzReadHeads(f *testing.F) {
	h := newPinnedHarness(f)
	h.certify(h.toCheckpoint())
	var buf bytes.Buffer
	if err := WriteHeads(&buf, h.checkpoints()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("[]"))
	f.Add([]byte("null"))
	f.Add([]byte(`[{"index":1,"sigs":[]}]`))
	var events []AuditEvent
	_ = h.f.Read(func(st *State) error { events = append(events, st.Audit...); return nil })
	anchor := AnchorOf(genesisEvery(cpInterval))
	f.Fuzz(func(t *testing.T, b []byte) {
		heads, err := ReadHeads(b)
		if err != nil {
			return
		}
		if VerifyHeads(events, heads, anchor) == nil {
			for _, c := range heads {
				if VerifyCheckpoint(c, anchor.Nodes) != nil {
					t.Fatalf("heads verified with a head the node set did not certify: %+v", c)
				}
			}
		}
	})
}

// FuzzVerifyAuditJSONL: audit exports come from disk and may be hostile.
func FuzzVerifyAuditJSONL(f *testing.F) {
	st := NewState()
	for i := range 3 {
		st.Clock = fsmT0
		st.AppendAudit(uint64(i+1), "k", []byte{byte(i)})
	}
	var buf bytes.Buffer
	if err := WriteAuditJSONL(&buf, st.Audit); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"prev":"` + GenesisHash + `","unknown":1}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, head, err := VerifyAuditJSONL(bytes.NewReader(b))
		if err == nil && n > 0 && len(head) != 64 {
			t.Fatalf("verified %d records with head %q", n, head)
		}
		if err != nil && !errors.Is(err, ErrAuditChain) && !strings.Contains(err.Error(), "read audit") {
			t.Fatalf("unclassified error: %v", err)
		}
	})
}
