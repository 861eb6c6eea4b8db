package daemon_test

import (
	"os"
	"testing"
	"time"

	"github.com/custody-dev/custody/ledger/ledgertest"
)

// TestMain bounds the package: a hang is reported with the tests still
// running at the end of the output (ledgertest.Watchdog), before go test's
// -timeout (make test: 14m) would print them where a truncated log loses them.
func TestMain(m *testing.M) {
	os.Exit(ledgertest.Run(m, 11*time.Minute))
}
