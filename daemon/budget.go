package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// BudgetFile is the name, in the data dir, of the tss failure budget: the
// failures blamed on each party, kept across restarts so a peer cannot
// reset its count by crashing this node (SECURITY 6).
const BudgetFile = "tss-budget.json"

// DefaultBudgetLimit is how many provable failures quarantine a party.
const DefaultBudgetLimit = 3

// budgetDoc is the budget file.
type budgetDoc struct {
	Limit    int                `json:"limit"`
	Failures map[pki.NodeID]int `json:"failures"`
}

// budgetStore persists a node's failure budget in its data dir.
type budgetStore struct {
	mu     sync.Mutex
	path   string
	budget *tss.Budget
	limit  int
}

// openBudget restores the budget from dir (a missing file is a fresh
// budget; a damaged one refuses the start: forgetting a quarantine would be
// the failure the file exists to prevent).
func openBudget(dir string) (*budgetStore, error) {
	doc, err := readBudgetDoc(dir)
	if err != nil {
		return nil, err
	}
	return &budgetStore{path: filepath.Join(dir, BudgetFile), limit: doc.Limit, budget: tss.RestoreBudget(doc.Limit, doc.Failures)}, nil
}

// ReadBudget reads the failure budget a node's data dir holds (limit and
// counts; DefaultBudgetLimit and none when there is no file).
func ReadBudget(dir string) (limit int, failures map[pki.NodeID]int, err error) {
	doc, err := readBudgetDoc(dir)
	if err != nil {
		return 0, nil, err
	}
	return doc.Limit, doc.Failures, nil
}

func readBudgetDoc(dir string) (budgetDoc, error) {
	path := filepath.Join(dir, BudgetFile)
	b, err := readBounded(path, 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return budgetDoc{Limit: DefaultBudgetLimit, Failures: map[pki.NodeID]int{}}, nil
	}
	if err != nil {
		return budgetDoc{}, fmt.Errorf("daemon: tss budget: %w", err)
	}
	var doc budgetDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil || doc.Limit < 1 || doc.Failures == nil {
		return budgetDoc{}, fmt.Errorf("daemon: tss budget: %s is damaged; refusing to start without the quarantines it records", path)
	}
	for p, n := range doc.Failures {
		if p.Validate() != nil || n < 0 {
			return budgetDoc{}, fmt.Errorf("daemon: tss budget: %s is damaged (party %q, count %d)", path, p, n)
		}
	}
	return doc, nil
}

// save writes the budget's counts (temporary file, fsync, rename, dir
// fsync).
func (s *budgetStore) save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return writeBudget(s.path, budgetDoc{Limit: s.limit, Failures: s.budget.Counts()})
}

func writeBudget(path string, doc budgetDoc) error {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("daemon: tss budget: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("daemon: tss budget: %w", werr)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("daemon: tss budget: %w", err)
	}
	defer d.Close()
	return d.Sync()
}

// ClearQuarantine resets party's failures in a stopped node's data dir: the
// human decision that lifts a quarantine (`custody node quarantine
// --clear`). It refuses a party with no failures recorded.
func ClearQuarantine(dir string, party pki.NodeID) error {
	doc, err := readBudgetDoc(dir)
	if err != nil {
		return err
	}
	if _, ok := doc.Failures[party]; !ok {
		known := make([]string, 0, len(doc.Failures))
		for p := range doc.Failures {
			known = append(known, string(p))
		}
		slices.Sort(known)
		return fmt.Errorf("daemon: tss budget: no failures recorded for %q (recorded: %v)", party, known)
	}
	delete(doc.Failures, party)
	return writeBudget(filepath.Join(dir, BudgetFile), doc)
}

// onEngineEvent logs the engine's audit events (aborts, quarantines,
// retired shares) and persists the failure budget after each abort, before
// the engine goes on: a crash right after cannot lose a charged failure.
func (n *Node) onEngineEvent(ev tss.Event) {
	n.metrics.tssEvents.WithLabelValues(ev.Kind).Inc()
	n.log.Warn("tss event", "audit", true, "kind", ev.Kind, "session", ev.Session.String(), "wallet", ev.Wallet,
		"parties", ev.Parties, "detail", ev.Detail)
	if ev.Kind == tss.EventAbort || ev.Kind == tss.EventQuarantine {
		if err := n.budget.save(); err != nil {
			n.log.Error("tss budget not saved", "audit", true, "err", err)
		}
	}
}
