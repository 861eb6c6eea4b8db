package main

import (
	"context"
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

// TestLedgerMigrateCLI migrates a stopped boltdb node to the WAL: the audit
// chain reads the same before and after, the old store is kept, and bad
// invocations fail with one line and change nothing.
func TestLedgerMigrateCLI(t *testing.T) {
	c := ledgertest.New(t, 1, func(cfg *ledger.Config) { cfg.LogStore = ledger.LogStoreBoltDB })
	s, dir := c.Nodes[0].Store, c.Nodes[0].Dir
	for i := range 4 {
		if _, err := s.Submit(context.Background(), "a1", ledger.VoterSet{ID: pki.NodeID(fmt.Sprintf("m%d", i)), Address: "127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	verify := func() auditSummary {
		t.Helper()
		code, out, errs := runCLI("audit", "verify", "--data-dir", dir, "-o", "json")
		if code != 0 {
			t.Fatalf("verify: %s", errs)
		}
		var sum auditSummary
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	before := verify()

	code, _, errs := runCLI("ledger", "migrate", "--data-dir", dir)
	oneLineErr(t, code, errs, "--data-dir and --to are required")
	code, _, errs = runCLI("ledger", "migrate", "--data-dir", dir, "--to", "leveldb")
	oneLineErr(t, code, errs, `want "wal" or "boltdb"`)
	code, _, errs = runCLI("ledger", "migrate", "--data-dir", dir, "--to", "boltdb")
	oneLineErr(t, code, errs, "already uses log_store boltdb")

	code, out, errs := runCLI("ledger", "migrate", "--data-dir", dir, "--to", "wal")
	if code != 0 || !strings.Contains(out, "from boltdb to wal") || !strings.Contains(out, "raft.db.pre-migrate-") {
		t.Fatalf("migrate: %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "wal")); err != nil {
		t.Fatal(err)
	}
	if after := verify(); after.Head != before.Head || after.Records != before.Records {
		t.Fatalf("audit after migrating %+v, before %+v", after, before)
	}
	code, _, errs = runCLI("ledger", "migrate", "--data-dir", t.TempDir(), "--to", "wal")
	oneLineErr(t, code, errs, "not a ledger data dir")
}
