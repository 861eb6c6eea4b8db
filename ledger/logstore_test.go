package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
)

func TestParseLogStore(t *testing.T) {
	for in, want := range map[string]LogStore{"": DefaultLogStore, "wal": LogStoreWAL, "boltdb": LogStoreBoltDB} {
		if got, err := ParseLogStore(in); err != nil || got != want {
			t.Errorf("ParseLogStore(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"WAL", "bolt", "raft.db", " wal"} {
		if _, err := ParseLogStore(in); err == nil || !strings.Contains(err.Error(), `want "wal" or "boltdb"`) {
			t.Errorf("ParseLogStore(%q): %v", in, err)
		}
	}
}

// dirEntries lists a data dir's names (sorted), to show a refused Open
// changed nothing.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// openNode opens one node on dir with store (not bootstrapped), pinning
// soloGenesis (a node verifies even its own stored snapshots against its
// pinned genesis).
func openNode(t *testing.T, p *ledgertest.PKI, dir string, store LogStore) (*Store, error) {
	t.Helper()
	stream, err := ListenStream("127.0.0.1:0", p.Node(t, "n1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ledgertest.Config("n1", dir, stream)
	cfg.LogStore = store
	g := soloGenesis()
	cfg.Genesis = &g
	return Open(cfg)
}

// oneNodeDataDir runs a one-node ledger on store, commits writes (with a
// snapshot in the middle), stops it and returns its dir and state hash.
func oneNodeDataDir(t *testing.T, store LogStore, writes int) (string, [32]byte) {
	t.Helper()
	g := soloGenesis()
	c := ledgertest.New(t, 1, func(cfg *Config) { withStore(store)(cfg); cfg.Genesis = &g })
	seedWith(c, g)
	for i := range writes {
		if i == writes/2 {
			ledgertest.Poll(t, "a snapshot of a certified checkpoint", func() error { return c.Nodes[0].Store.Snapshot() })
		}
		cmd := createCmd(fmt.Sprintf("m-%d", i), uint64(i)) // once: a retry after a timeout must resend the same command
		c.OnLeader(func(s *Store) error {
			_, _, err := s.CreateRequest(context.Background(), "backend", cmd)
			return err
		})
	}
	h := c.Nodes[0].Store.SettledHash(t)
	if err := c.Nodes[0].Store.Close(); err != nil {
		t.Fatal(err)
	}
	return c.Nodes[0].Dir, h
}

// TestOpenRefusesOtherLogStore: a data dir made with one store is refused by
// the other with a message naming both and the way out, and the refusal
// creates nothing in the dir. An unknown store name is refused before the
// dir is touched.
func TestOpenRefusesOtherLogStore(t *testing.T) {
	p := ledgertest.NewPKI(t)
	for _, tc := range []struct{ made, open LogStore }{{LogStoreBoltDB, LogStoreWAL}, {LogStoreWAL, LogStoreBoltDB}} {
		t.Run(fmt.Sprintf("%s_as_%s", tc.made, tc.open), func(t *testing.T) {
			dir, _ := oneNodeDataDir(t, tc.made, 2)
			before := dirEntries(t, dir)
			_, err := openNode(t, p, dir, tc.open)
			if !errors.Is(err, ErrLogStoreMismatch) {
				t.Fatalf("open: %v, want ErrLogStoreMismatch", err)
			}
			for _, want := range []string{"log_store " + string(tc.made), "log_store " + string(tc.open),
				"ledger.log_store: " + string(tc.made), "custody ledger migrate --data-dir " + dir + " --to " + string(tc.open)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if after := dirEntries(t, dir); !slices.Equal(before, after) {
				t.Fatalf("refused open changed the dir: %v → %v", before, after)
			}
			s, err := openNode(t, p, dir, tc.made)
			if err != nil {
				t.Fatalf("reopen with the store it was made with: %v", err)
			}
			_ = s.Close()
		})
	}
	t.Run("unknown", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new")
		if _, err := openNode(t, p, dir, "leveldb"); err == nil || !strings.Contains(err.Error(), `log_store "leveldb"`) {
			t.Fatalf("open with an unknown store: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("refused open created the dir: %v", err)
		}
	})
	t.Run("snapshots_without_log", func(t *testing.T) {
		dir, _ := oneNodeDataDir(t, LogStoreWAL, 2)
		if err := os.RemoveAll(filepath.Join(dir, "wal")); err != nil {
			t.Fatal(err)
		}
		before := dirEntries(t, dir)
		if _, err := openNode(t, p, dir, LogStoreWAL); err == nil || !strings.Contains(err.Error(), "snapshots but no log store") {
			t.Fatalf("open of a dir whose log store is gone: %v", err)
		}
		if after := dirEntries(t, dir); !slices.Equal(before, after) {
			t.Fatalf("refused open changed the dir: %v → %v", before, after)
		}
	})
}

// TestMigrateLogStore moves a data dir boltdb → wal → boltdb: each time the
// node opens with the new store at the same state hash and keeps working,
// the old store is kept as a backup, and a dir holding both stores (an
// interrupted migration) is refused by Open and finished by a second run.
func TestMigrateLogStore(t *testing.T) {
	p := ledgertest.NewPKI(t)
	dir, want := oneNodeDataDir(t, LogStoreBoltDB, 30)

	// The state a node reaches from the migrated dir.
	reopen := func(store LogStore) {
		t.Helper()
		s, err := openNode(t, p, dir, store)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// The reopened node has no checkpoint signer (openNode): nothing
		// changes its state but the writes below.
		var got [32]byte
		ledgertest.Poll(t, "a linearizable read (the node leads and applied its log)", func() error {
			return s.ReadLinearizable(context.Background(), func(st *State) error {
				var err error
				got, err = st.Hash()
				return err
			})
		})
		if got != want {
			t.Fatalf("hash after migrating to %s: %x, want %x", store, got[:8], want[:8])
		}
		if _, _, err := s.CreateRequest(context.Background(), "backend", createCmd("post-"+string(store), 1000+uint64(len(store)))); err != nil {
			t.Fatal(err)
		}
		if want, err = s.Hash(); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := MigrateLogStore(dir, LogStoreBoltDB); err == nil || !strings.Contains(err.Error(), "already uses") {
		t.Fatalf("migrate to the store the dir has: %v", err)
	}
	if _, err := MigrateLogStore(dir, "leveldb"); err == nil {
		t.Fatal("migrate to an unknown store succeeded")
	}
	rep, err := MigrateLogStore(dir, LogStoreWAL)
	if err != nil {
		t.Fatal(err)
	}
	if rep.From != LogStoreBoltDB || rep.LastIndex == 0 || !strings.HasPrefix(filepath.Base(rep.Backup), "raft.db.pre-migrate-") {
		t.Fatalf("report %+v", rep)
	}
	if _, err := os.Stat(rep.Backup); err != nil {
		t.Fatalf("backup: %v", err)
	}
	reopen(LogStoreWAL)

	// Back, interrupted after the new store was renamed into place.
	rep, err = MigrateLogStore(dir, LogStoreBoltDB)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(rep.Backup, filepath.Join(dir, "wal")); err != nil {
		t.Fatal(err)
	}
	if _, err := openNode(t, p, dir, LogStoreBoltDB); !errors.Is(err, ErrLogStoreMismatch) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("open of a dir with both stores: %v", err)
	}
	if _, _, err := ReadDataDir(dir); !errors.Is(err, ErrLogStoreMismatch) {
		t.Fatalf("ReadDataDir of a dir with both stores: %v", err)
	}
	rep, err = MigrateLogStore(dir, LogStoreBoltDB)
	if err != nil || !rep.Resumed {
		t.Fatalf("resumed migration: %+v, %v", rep, err)
	}
	reopen(LogStoreBoltDB)
}

// TestMigrateRefusesRunningNode: a running node holds its store's lock;
// migrate gives up and changes nothing.
func TestMigrateRefusesRunningNode(t *testing.T) {
	forEachStore(t, func(t *testing.T, store LogStore) {
		c := ledgertest.New(t, 1, withStore(store))
		dir := c.Nodes[0].Dir
		before := dirEntries(t, dir)
		other := LogStoreWAL
		if store == LogStoreWAL {
			other = LogStoreBoltDB
		}
		if _, err := MigrateLogStore(dir, other); err == nil || !strings.Contains(err.Error(), "still running") {
			t.Fatalf("migrate of a running node: %v", err)
		}
		if after := dirEntries(t, dir); !slices.Equal(before, after) {
			t.Fatalf("refused migrate changed the dir: %v → %v", before, after)
		}
		if _, _, err := ReadDataDir(dir); err == nil || !strings.Contains(err.Error(), "still running") {
			t.Fatalf("ReadDataDir of a running node: %v", err)
		}
	})
}

// TestReadDataDirDamagedLog: a data dir whose log store is not a raft log
// (an empty bbolt file as raft.db, a WAL dir without its meta store, garbage
// as wal-meta.db) is reported as an error by ReadDataDir and
// MigrateLogStore, never a panic, and is not written to.
func TestReadDataDirDamagedLog(t *testing.T) {
	cases := map[string]func(dir string) error{
		"empty bbolt as raft.db": func(dir string) error {
			db, err := bbolt.Open(filepath.Join(dir, "raft.db"), 0o600, nil)
			if err != nil {
				return err
			}
			return db.Close()
		},
		"wal dir without meta": func(dir string) error { return os.Mkdir(filepath.Join(dir, "wal"), 0o700) },
		"garbage wal-meta.db": func(dir string) error {
			if err := os.Mkdir(filepath.Join(dir, "wal"), 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "wal", "wal-meta.db"), []byte("not a bbolt file at all, but long enough to be read as one ........"), 0o600)
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := mk(dir); err != nil {
				t.Fatal(err)
			}
			before := treeEntries(t, dir)
			if _, _, err := ReadDataDir(dir); err == nil {
				t.Fatal("ReadDataDir accepted it")
			} else {
				t.Log(err)
			}
			if _, err := MigrateLogStore(dir, LogStoreWAL); err == nil {
				t.Fatal("MigrateLogStore accepted it")
			}
			if _, err := MigrateLogStore(dir, LogStoreBoltDB); err == nil {
				t.Fatal("MigrateLogStore accepted it")
			}
			if after := treeEntries(t, dir); !slices.Equal(before, after) {
				t.Fatalf("ReadDataDir or MigrateLogStore changed the dir: %v → %v", before, after)
			}
		})
	}
}

// treeEntries lists every path under dir with its size, sorted.
func treeEntries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d", p, info.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
