package ledger_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// headsFixture is a chain with two certified checkpoints (signed heads)
// and events after the last one, made by a real FSM.
func headsFixture(t *testing.T) ([]AuditEvent, []Checkpoint) {
	t.Helper()
	h := newPinnedHarness(t)
	h.certify(h.toCheckpoint())
	h.create("between", 200)
	h.certify(h.toCheckpoint())
	h.create("after", 300)
	var events []AuditEvent
	_ = h.f.Read(func(st *State) error { events = append(events, st.Audit...); return nil })
	heads := h.checkpoints()
	if len(heads) != 2 || heads[1].AuditSeq >= uint64(len(events)) || heads[0].AuditSeq >= heads[1].AuditSeq {
		t.Fatalf("fixture: %d heads, %d events", len(heads), len(events))
	}
	if err := VerifyChain(events); err != nil {
		t.Fatal(err)
	}
	return events, heads
}

func anchor() HeadsAnchor { return AnchorOf(genesisCmd()) }

// rehash rewrites events from i on so the chain verifies again: a chain
// forged consistently from an edited record.
func rehash(events []AuditEvent, i int) []AuditEvent {
	out := append([]AuditEvent(nil), events...)
	for j := i; j < len(out); j++ {
		if j > 0 {
			out[j].Prev = out[j-1].Hash
		}
		out[j].Hash = out[j].ComputeHash()
	}
	return out
}

func wantHeadErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil || !errors.Is(err, ErrAuditHeads) {
		t.Fatalf("err %v, want ErrAuditHeads", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("err %q, want it to mention %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("err %q spans lines", err)
	}
}

// TestHeadsDetectTruncationAndEdits: a chain verified against its signed
// heads passes untouched and when cut after the last signed seq; cut
// before a signed seq it fails naming the head (truncated); rewritten
// consistently from an edited record (so the hash chain alone verifies) it
// fails naming the head (edited or forked).
func TestHeadsDetectTruncationAndEdits(t *testing.T) {
	events, heads := headsFixture(t)
	last := heads[len(heads)-1]
	if err := VerifyHeads(events, heads, anchor()); err != nil {
		t.Fatal(err)
	}
	if err := VerifyHeads(events[:last.AuditSeq], heads, anchor()); err != nil {
		t.Fatalf("a chain ending at the last signed seq: %v", err)
	}
	for _, n := range []int{int(last.AuditSeq) - 1, int(heads[0].AuditSeq), 1, 0} {
		err := VerifyHeads(events[:n], heads, anchor())
		wantHeadErr(t, err, fmt.Sprintf("the chain ends at seq %d but checkpoint %d signed seq %d: truncated", n, last.Index, last.AuditSeq))
	}

	edited := append([]AuditEvent(nil), events...)
	edited[1].Actor = "mallory"
	forged := rehash(edited, 1)
	if err := VerifyChain(forged); err != nil {
		t.Fatalf("the forged chain should verify on its own: %v", err)
	}
	err := VerifyHeads(forged, heads, anchor())
	wantHeadErr(t, err, fmt.Sprintf("checkpoint %d", heads[0].Index), fmt.Sprintf("record at seq %d", heads[0].AuditSeq), "edited or forked")

	// An edit after the last head is the hash chain's to find; a chain
	// rewritten after it is beyond what the heads sign.
	tail := rehash(append([]AuditEvent(nil), events...), int(last.AuditSeq))
	if err := VerifyHeads(tail, heads, anchor()); err != nil {
		t.Fatalf("events after the last head: %v", err)
	}
}

// TestHeadsRefuseUncertifiedHeads: every head must be certified by a
// majority of the auditor's own node set, for its cluster and genesis.
func TestHeadsRefuseUncertifiedHeads(t *testing.T) {
	events, heads := headsFixture(t)
	good := heads[0]
	with := func(c Checkpoint) []Checkpoint { return []Checkpoint{heads[1], c} }

	oneSig := good
	oneSig.Sigs = good.Sigs[:1]

	unpinned := good
	unpinned.Sigs = nil
	for _, n := range []pki.NodeID{"n1", "n2"} {
		s, err := SignCheckpoint(good.CheckpointHead, n, otherKey(t))
		if err != nil {
			t.Fatal(err)
		}
		unpinned.Sigs = append(unpinned.Sigs, s)
	}

	moved := good // a head edited under its signatures: an earlier seq
	moved.AuditSeq--
	moved.AuditHead = events[moved.AuditSeq-1].Hash

	for name, c := range map[string]Checkpoint{
		"signed by one node of three":   oneSig,
		"signed by keys not pinned":     unpinned,
		"head edited under signatures":  moved,
		"no signatures (decoded empty)": {CheckpointHead: good.CheckpointHead},
	} {
		t.Run(name, func(t *testing.T) {
			err := VerifyHeads(events, with(c), anchor())
			wantHeadErr(t, err, fmt.Sprintf("checkpoint %d", c.Index), "not certified by the genesis's node set")
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("err %v, want ErrCheckpoint too", err)
			}
		})
	}

	other := anchor()
	other.Nodes = map[pki.NodeID]*Node{}
	for _, n := range ledgertest.Nodes("n4", "n5", "n6") {
		other.Nodes[n.ID] = &n
	}
	wantHeadErr(t, VerifyHeads(events, heads, other), "not certified")

	otherCluster := anchor()
	otherCluster.ClusterID = "another"
	wantHeadErr(t, VerifyHeads(events, heads, otherCluster), `cluster "another"`)

	otherGenesis := anchor()
	otherGenesis.GenesisHash = strings.Repeat("ab", 32)
	wantHeadErr(t, VerifyHeads(events, heads, otherGenesis), "signed for genesis")

	wantHeadErr(t, VerifyHeads(events, nil, anchor()), "no signed heads")
	wantHeadErr(t, VerifyHeads(events, heads, HeadsAnchor{}), "no genesis")

	// A majority signing two hashes at one seq: refused whatever the chain.
	fork := good.CheckpointHead
	fork.Index += 1000
	fork.StateHash = strings.Repeat("cd", 32)
	fork.AuditHead = strings.Repeat("ef", 32)
	forked := Checkpoint{CheckpointHead: fork}
	for _, n := range ledgertest.GenesisNodes {
		s, err := SignCheckpoint(fork, n, ledgertest.NodeKey(n))
		if err != nil {
			t.Fatal(err)
		}
		forked.Sigs = append(forked.Sigs, s)
	}
	wantHeadErr(t, VerifyHeads(events, append(heads, forked), anchor()), "the node set signed a fork")
}

// TestHeadsFileAndStreamedExport: the heads file round-trips, malformed
// files are refused, and an export streamed through VerifyAuditJSONLHeads
// is checked like a chain in memory.
func TestHeadsFileAndStreamedExport(t *testing.T) {
	events, heads := headsFixture(t)
	var buf bytes.Buffer
	if err := WriteHeads(&buf, heads); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHeads(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyHeads(events, got, anchor()); err != nil {
		t.Fatalf("heads read back: %v", err)
	}
	one := buf.String()
	for name, b := range map[string]string{
		"empty":            "",
		"null":             "null",
		"object":           "{}",
		"truncated":        one[:len(one)/2],
		"trailing data":    one + "[]",
		"unknown field":    strings.Replace(one, `"index"`, `"x":1,"index"`, 1),
		"head without sig": `[{"cluster_id":"c","index":1,"sigs":[]}]`,
	} {
		if _, err := ReadHeads([]byte(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	var exp bytes.Buffer
	if err := WriteAuditJSONL(&exp, events); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(exp.String(), "\n")
	last := heads[len(heads)-1]
	for _, tc := range []struct {
		keep int
		want string
	}{{len(events), ""}, {int(last.AuditSeq), ""}, {int(last.AuditSeq) - 1, "truncated"}} {
		hv, err := NewHeadVerifier(heads, anchor())
		if err != nil {
			t.Fatal(err)
		}
		n, _, err := VerifyAuditJSONLHeads(strings.NewReader(strings.Join(lines[:tc.keep], "")), hv)
		if err != nil || n != tc.keep {
			t.Fatalf("%d lines: %d %v", tc.keep, n, err)
		}
		_, seq, err := hv.End()
		if tc.want == "" {
			if err != nil || seq != last.AuditSeq {
				t.Fatalf("%d lines: seq %d %v", tc.keep, seq, err)
			}
			continue
		}
		wantHeadErr(t, err, tc.want)
	}
}
