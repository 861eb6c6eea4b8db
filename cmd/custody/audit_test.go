package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// auditDataDir runs a real one-node ledger (a genesis whose node set is
// that node, so it certifies checkpoints alone, every two indices),
// commits a few state changes (a snapshot of a certified checkpoint in the
// middle, so verify reads snapshot + log), stops it and returns its data
// dir and how many audit events it holds.
func auditDataDir(t *testing.T) (string, int) {
	t.Helper()
	g, err := genesisLoad(filepath.Join("..", "..", "genesis", "testdata", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	g.Nodes = ledgertest.Nodes("n1")
	cmd := ledger.GenesisCommand(g)
	cmd.CheckpointInterval = 2
	c := ledgertest.New(t, 1, func(cfg *ledger.Config) { cfg.Genesis = &cmd })
	s, dir := c.Nodes[0].Store, c.Nodes[0].Dir
	ctx := context.Background()
	c.Submit(ctx, "ceremony", cmd)
	for i := range 6 {
		if i == 3 {
			ledgertest.Poll(t, "a snapshot of a certified checkpoint", s.Snapshot)
		}
		if _, err := s.Submit(ctx, "a1", ledger.VoterSet{ID: pki.NodeID(fmt.Sprintf("m%d", i)), Address: "127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	var records int
	ledgertest.Poll(t, "the last checkpoint certified", func() error {
		// The last checkpoint's signature lands after the last write: wait
		// until the checkpoint the last write crossed (an entry that is
		// not itself a signature: those never reach a checkpoint) is the
		// last certified one. Two equal counts in a row were not enough on
		// a loaded machine.
		return s.ReadLocal(func(st *ledger.State) error {
			var crossed uint64
			for i, e := range st.Audit {
				var prev uint64
				if i > 0 {
					prev = st.Audit[i-1].Index
				}
				if e.Kind != ledger.CmdCheckpointSign && e.Index/cmd.CheckpointInterval > prev/cmd.CheckpointInterval {
					crossed = e.Index
				}
			}
			last := st.LastCheckpoint()
			if last == nil || last.Index < crossed {
				return fmt.Errorf("checkpoint %d reached, last certified %v", crossed, last)
			}
			records = len(st.Audit)
			return nil
		})
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, records
}

// uncertifiedDataDir is a one-node ledger whose genesis names three nodes:
// it certifies no checkpoint.
func uncertifiedDataDir(t *testing.T) string {
	t.Helper()
	c := ledgertest.New(t, 1, nil)
	s, dir := c.Nodes[0].Store, c.Nodes[0].Dir
	if _, err := s.Submit(context.Background(), "a1", ledger.VoterSet{ID: "m0", Address: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAuditVerifyExportCLI(t *testing.T) {
	dir, records := auditDataDir(t)
	code, out, errs := runCLI("audit", "verify", "--data-dir", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("verify: %d %s", code, errs)
	}
	var sum auditSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Records != records || !sum.OK || sum.SnapshotIndex == 0 {
		t.Fatalf("verify summary %+v (%v), want %d records", sum, err, records)
	}
	exp := filepath.Join(t.TempDir(), "audit.jsonl")
	if code, _, errs := runCLI("audit", "export", "--data-dir", dir, "--out", exp); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	if code, _, errs := runCLI("audit", "export", "--data-dir", dir, "--out", exp); code == 0 || !strings.Contains(errs, "exists") {
		t.Fatalf("second export over the same file: code %d %q", code, errs)
	}
	code, out, errs = runCLI("audit", "verify", "--file", exp)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d records, head %s", records, sum.Head)) {
		t.Fatalf("verify export: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCLI("audit", "verify"); code == 0 || !strings.Contains(errs, "exactly one") {
		t.Fatalf("verify without a source: %d %q", code, errs)
	}
	if code, _, _ := runCLI("audit", "verify", "--data-dir", t.TempDir()); code == 0 {
		t.Fatal("verify of an empty dir succeeded")
	}
}

// TestAuditVerifyNamesEditedRecord edits one field of every record of an
// export in turn, and one record inside the node's snapshot file.
func TestAuditVerifyNamesEditedRecord(t *testing.T) {
	dir, _ := auditDataDir(t)
	exp := filepath.Join(t.TempDir(), "audit.jsonl")
	if code, _, errs := runCLI("audit", "export", "--data-dir", dir, "--out", exp); code != 0 {
		t.Fatal(errs)
	}
	orig, err := os.ReadFile(exp)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(orig), "\n"), "\n")
	for i := range lines {
		edited := append([]string(nil), lines...)
		edited[i] = strings.Replace(edited[i], `"actor":"`, `"actor":"x`, 1)
		p := filepath.Join(t.TempDir(), "edited.jsonl")
		if err := os.WriteFile(p, []byte(strings.Join(edited, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errs := runCLI("audit", "verify", "--file", p)
		want := fmt.Sprintf("record %d (seq %d)", i+1, i+1)
		if code == 0 || !strings.Contains(errs, want) {
			t.Fatalf("edit of record %d: code %d, %q; want it named (%s)", i+1, code, errs, want)
		}
	}

	// Edit the node's snapshot (the state at a certified checkpoint): an
	// operator of one's own in its base.
	snaps, err := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	b, err := os.ReadFile(snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	var sf map[string]any
	if err := json.Unmarshal(b, &sf); err != nil {
		t.Fatal(err)
	}
	base, err := base64.StdEncoding.DecodeString(sf["base"].(string))
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(base, []byte(`"actor":"`), []byte(`"actor":"x`), 1)
	if bytes.Equal(forged, base) {
		t.Fatal("nothing to edit in the snapshot's base")
	}
	sf["base"] = base64.StdEncoding.EncodeToString(forged)
	edited, err := json.Marshal(sf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snaps[0], edited, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI("audit", "verify", "--data-dir", dir)
	if code == 0 || !strings.Contains(errs, "CRC mismatch") {
		t.Fatalf("edited snapshot: code %d %q", code, errs)
	}
}

// headsCluster runs a real three-node ledger pinning a genesis whose node
// set is the nodes' keys, so the nodes certify checkpoints by themselves
// (each signs, followers forward to the leader). The checkpoint interval
// is the default: an offline read of a data dir (ledger.ReadDataDir)
// replays the log with it, and a checkpoint.sign for an index that is no
// checkpoint at that interval would not certify there. It commits the
// genesis and enough wallets to cross the first checkpoint, waits until it
// is certified, commits one more, stops the nodes and returns n1's data
// dir, the genesis file and its hash.
func headsCluster(t *testing.T) (dir, genesisFile, genesisHash string) {
	t.Helper()
	g, err := genesisLoad(filepath.Join("..", "..", "genesis", "testdata", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	g.Nodes = ledgertest.Nodes(ledgertest.GenesisNodes...)
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	genesisFile = writeTemp(t, "genesis.json", string(g.Encode()))
	cmd := ledger.GenesisCommand(g)
	c := ledgertest.New(t, 3, func(cfg *ledger.Config) { cfg.Genesis = &cmd })
	ctx := context.Background()
	c.Submit(ctx, "ceremony", cmd)
	wallet := func(i int) ledger.WalletSet {
		return ledger.WalletSet{Wallet: ledger.Wallet{ID: fmt.Sprintf("w%d", i), Chain: "eth", Network: "devnet",
			Committee: ledgertest.GenesisNodes, Threshold: 2}}
	}
	// Concurrent submitters, so raft batches the entries.
	const writers, each = 8, ledger.DefaultCheckpointInterval/8 + 1
	l := c.Leader()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := l.Submit(ctx, "keygen", wallet(w*each+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ledgertest.Poll(t, "a certified checkpoint", func() error {
		return l.ReadLocal(func(st *ledger.State) error {
			if len(st.Checkpoints) == 0 {
				return errors.New("no checkpoint certified")
			}
			return nil
		})
	})
	c.Submit(ctx, "keygen", wallet(writers*each)) // an event after the head
	c.WaitConverged(c.Nodes...)
	for _, n := range c.Nodes {
		if err := n.Store.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return c.Nodes[0].Dir, genesisFile, g.Hash()
}

// TestAuditHeadsCLI: the signed heads of a real cluster's data dir detect
// a truncated export (which the hash chain alone accepts) and a chain
// rewritten consistently from an edited record; heads that a majority of
// the genesis's node set did not sign, malformed heads files and a genesis
// file other than the pinned one are refused with one line and exit 1.
func TestAuditHeadsCLI(t *testing.T) {
	dir, gen, gh := headsCluster(t)
	heads := filepath.Join(t.TempDir(), "heads.json")
	code, out, errs := runCLI("audit", "heads", "--data-dir", dir, "--out", heads, "-o", "json")
	if code != 0 {
		t.Fatalf("heads: %d %s", code, errs)
	}
	var hs auditHeadsSummary
	if err := json.Unmarshal([]byte(out), &hs); err != nil || hs.Heads < 1 || hs.AuditSeq == 0 {
		t.Fatalf("heads summary %+v (%v)", hs, err)
	}
	if fi, err := os.Stat(heads); err != nil || fi.Mode().Perm()&0o133 != 0 || fi.Mode().Perm()&0o444 != 0o444 {
		t.Fatalf("heads file mode %v (%v), want 0644", fi.Mode(), err)
	}
	code, _, errs = runCLI("audit", "heads", "--data-dir", dir, "--out", heads)
	oneLineErr(t, code, errs, "exists")

	exp := filepath.Join(t.TempDir(), "audit.jsonl")
	if code, _, errs := runCLI("audit", "export", "--data-dir", dir, "--out", exp); code != 0 {
		t.Fatal(errs)
	}
	withHeads := func(src ...string) []string {
		return append(append([]string{"audit", "verify"}, src...), "--heads", heads, "--genesis", gen, "--genesis-hash", gh)
	}
	for _, src := range [][]string{{"--file", exp}, {"--data-dir", dir}} {
		code, out, errs := runCLI(append(withHeads(src...), "-o", "json")...)
		var sum auditSummary
		if code != 0 || json.Unmarshal([]byte(out), &sum) != nil || !sum.OK || !sum.TruncationChecked ||
			sum.Heads != hs.Heads || sum.SignedSeq != hs.AuditSeq || sum.Records <= int(hs.AuditSeq) {
			t.Fatalf("verify %v with heads: %d %q %q", src, code, out, errs)
		}
	}
	code, out, errs = runCLI(withHeads("--file", exp)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("signed heads OK: %d heads", hs.Heads)) {
		t.Fatalf("verify text: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI("audit", "verify", "--file", exp)
	if code != 0 || !strings.Contains(out, "truncation NOT checked") {
		t.Fatalf("verify without heads: %d %q", code, out)
	}

	b, err := os.ReadFile(exp)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")

	// Truncated: the export cut one record before the latest signed head.
	cut := writeTemp(t, "cut.jsonl", strings.Join(lines[:hs.AuditSeq-1], ""))
	if code, _, errs := runCLI("audit", "verify", "--file", cut); code != 0 {
		t.Fatalf("the hash chain alone should accept a cut export: %q", errs)
	}
	code, _, errs = runCLI(withHeads("--file", cut)...)
	oneLineErr(t, code, errs, fmt.Sprintf("the chain ends at seq %d but checkpoint %d signed seq %d: truncated", hs.AuditSeq-1, hs.LastIndex, hs.AuditSeq))

	// Edited: one record changed (the chain finds it), then the whole chain
	// rehashed after it (only the heads find it).
	events := make([]ledger.AuditEvent, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &events[i]); err != nil {
			t.Fatal(err)
		}
	}
	events[1].Actor = "mallory"
	var edited bytes.Buffer
	if err := ledger.WriteAuditJSONL(&edited, events); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(withHeads("--file", writeTemp(t, "edited.jsonl", edited.String()))...)
	oneLineErr(t, code, errs, "record 2 (seq 2): record hash does not match its contents (edited record)")
	for i := 1; i < len(events); i++ {
		if i > 1 {
			events[i].Prev = events[i-1].Hash
		}
		events[i].Hash = events[i].ComputeHash()
	}
	var forged bytes.Buffer
	if err := ledger.WriteAuditJSONL(&forged, events); err != nil {
		t.Fatal(err)
	}
	fp := writeTemp(t, "forged.jsonl", forged.String())
	if code, _, errs := runCLI("audit", "verify", "--file", fp); code != 0 {
		t.Fatalf("the hash chain alone should accept a rehashed export: %q", errs)
	}
	code, _, errs = runCLI(withHeads("--file", fp)...)
	oneLineErr(t, code, errs, "edited or forked")

	// Heads that do not verify against the genesis's node set.
	hb, err := os.ReadFile(heads)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := ledger.ReadHeads(hb)
	if err != nil {
		t.Fatal(err)
	}
	last := &cps[len(cps)-1]
	writeHeads := func(cps []ledger.Checkpoint) string {
		var buf bytes.Buffer
		if err := ledger.WriteHeads(&buf, cps); err != nil {
			t.Fatal(err)
		}
		return writeTemp(t, "heads.json", buf.String())
	}
	verifyHeads := func(h string, args ...string) (int, string) {
		code, _, errs := runCLI(append([]string{"audit", "verify", "--file", exp, "--heads", h}, args...)...)
		return code, errs
	}
	good := last.Sigs
	last.Sigs = good[:1]
	code, errs = verifyHeads(writeHeads(cps), "--genesis", gen)
	oneLineErr(t, code, errs, fmt.Sprintf("checkpoint %d (audit seq %d): not certified by the genesis's node set", last.Index, last.AuditSeq))
	last.Sigs = nil
	for _, n := range ledgertest.GenesisNodes[:2] {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ledger.SignCheckpoint(last.CheckpointHead, n, k)
		if err != nil {
			t.Fatal(err)
		}
		last.Sigs = append(last.Sigs, s)
	}
	code, errs = verifyHeads(writeHeads(cps), "--genesis", gen)
	oneLineErr(t, code, errs, "is not the key its node set entry pins")
	last.Sigs = good

	for name, content := range map[string]string{"not JSON": "{", "empty array": "[]", "null": "null"} {
		code, errs := verifyHeads(writeTemp(t, "bad.json", content), "--genesis", gen)
		if code != 1 || strings.Count(errs, "\n") != 1 || !(strings.Contains(errs, "not a heads file") || strings.Contains(errs, "no signed heads")) {
			t.Errorf("heads file %s: %d %q", name, code, errs)
		}
	}
	code, errs = verifyHeads(heads)
	oneLineErr(t, code, errs, "--heads and --genesis go together")
	code, errs = verifyHeads(heads, "--genesis", gen, "--genesis-hash", strings.Repeat("ab", 32))
	oneLineErr(t, code, errs, "hashes to "+gh)
	// Another genesis (another node set): the heads name the cluster's.
	other, err := genesisLoad(gen)
	if err != nil {
		t.Fatal(err)
	}
	other.Nodes = ledgertest.Nodes("n4", "n5", "n6")
	code, errs = verifyHeads(heads, "--genesis", writeTemp(t, "other.json", string(other.Encode())))
	oneLineErr(t, code, errs, "signed for genesis")

	// A node that certified no checkpoint has no heads to write.
	code, _, errs = runCLI("audit", "heads", "--data-dir", uncertifiedDataDir(t), "--out", filepath.Join(t.TempDir(), "h.json"))
	oneLineErr(t, code, errs, "no certified checkpoint yet")
}
