package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// auditDataDir runs a real one-node ledger, commits a few state changes (a
// snapshot in the middle, so verify reads snapshot + log), stops it and
// returns its data dir.
func auditDataDir(t *testing.T) string {
	t.Helper()
	c := ledgertest.New(t, 1, nil)
	s, dir := c.Nodes[0].Store, c.Nodes[0].Dir
	ctx := context.Background()
	for i := range 6 {
		if i == 3 {
			if err := s.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Submit(ctx, "a1", ledger.VoterSet{ID: pki.NodeID(fmt.Sprintf("m%d", i)), Address: "127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAuditVerifyExportCLI(t *testing.T) {
	dir := auditDataDir(t)
	code, out, errs := runCLI("audit", "verify", "--data-dir", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("verify: %d %s", code, errs)
	}
	var sum auditSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Records != 6 || !sum.OK || sum.SnapshotIndex == 0 {
		t.Fatalf("verify summary %+v (%v)", sum, err)
	}
	exp := filepath.Join(t.TempDir(), "audit.jsonl")
	if code, _, errs := runCLI("audit", "export", "--data-dir", dir, "--out", exp); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	if code, _, errs := runCLI("audit", "export", "--data-dir", dir, "--out", exp); code == 0 || !strings.Contains(errs, "exists") {
		t.Fatalf("second export over the same file: code %d %q", code, errs)
	}
	code, out, errs = runCLI("audit", "verify", "--file", exp)
	if code != 0 || !strings.Contains(out, "6 records, head "+sum.Head) {
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
	dir := auditDataDir(t)
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
		edited[i] = strings.Replace(edited[i], `"actor":"a1"`, `"actor":"mallory"`, 1)
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

	// Edit the second command inside the node's snapshot (a snapshot is a
	// certified base plus the log entries after it; this one-node cluster
	// certifies no checkpoint, so it is the whole log).
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
	suffix, _ := sf["suffix"].([]any)
	if len(suffix) < 2 {
		t.Fatalf("snapshot holds %d entries", len(suffix))
	}
	entry := suffix[1].(map[string]any)
	data, err := base64.StdEncoding.DecodeString(entry["data"].(string))
	if err != nil {
		t.Fatal(err)
	}
	entry["data"] = base64.StdEncoding.EncodeToString(bytes.Replace(data, []byte(`"actor":"`), []byte(`"actor":"x`), 1))
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
