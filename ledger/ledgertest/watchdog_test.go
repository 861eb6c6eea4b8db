package ledgertest

import (
	"slices"
	"testing"
)

func TestRunningTests(t *testing.T) {
	dump := []byte(`goroutine 7 [chan receive]:
github.com/custody-dev/custody/ledger_test.TestPartitionAndHeal.func2(0xc000)
	/src/ledger/partition_test.go:80 +0x1
github.com/custody-dev/custody/ledger_test.TestPartitionAndHeal(0xc000)
goroutine 9 [select]:
github.com/custody-dev/custody/ledger.(*Store).Close(0xc0)
github.com/custody-dev/custody/ledger_test.FuzzRestore(0xc0)
testing.tRunner(0xc0, 0x1)
`)
	got := runningTests(dump)
	if want := []string{"FuzzRestore", "TestPartitionAndHeal"}; !slices.Equal(got, want) {
		t.Fatalf("running tests %v, want %v", got, want)
	}
}
