package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// TestBudgetSurvivesRestart: failures charged in one run are in the next
// run's budget (a quarantine too); a human clears one party; a damaged file
// refuses the start rather than forgetting quarantines.
func TestBudgetSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := openBudget(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.budget.Record([]pki.NodeID{"n2", "n3"}); s.budget.Record([]pki.NodeID{"n3"}) != nil {
		t.Fatal("quarantined below the limit")
	}
	if q := s.budget.Record([]pki.NodeID{"n3"}); len(q) != 1 {
		t.Fatalf("n3 not quarantined at the limit: %v", q)
	}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, BudgetFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("budget file: %v %v", st, err)
	}

	again, err := openBudget(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.budget.Check([]pki.NodeID{"n3"}); !errors.Is(err, tss.ErrQuarantined) {
		t.Fatalf("n3 after a restart: %v", err)
	}
	if got := again.budget.Failures("n2"); got != 1 {
		t.Fatalf("n2 after a restart: %d failures, want 1", got)
	}

	if err := ClearQuarantine(dir, "n4"); err == nil || !strings.Contains(err.Error(), `no failures recorded for "n4"`) {
		t.Fatalf("clear of an unknown party: %v", err)
	}
	if err := ClearQuarantine(dir, "n3"); err != nil {
		t.Fatal(err)
	}
	cleared, err := openBudget(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := cleared.budget.Check([]pki.NodeID{"n3"}); err != nil || cleared.budget.Failures("n2") != 1 {
		t.Fatalf("after clearing n3: %v, n2 %d", err, cleared.budget.Failures("n2"))
	}

	for _, bad := range []string{`garbage`, `{"limit":0,"failures":{}}`, `{"limit":3,"failures":{"n1":-1}}`, `{"limit":3,"failures":{},"x":1}`} {
		if err := os.WriteFile(filepath.Join(dir, BudgetFile), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := openBudget(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
