package webhook_test

import (
	"os"
	"testing"
	"time"

	"github.com/custody-dev/custody/ledger/ledgertest"
)

// TestMain bounds the package (ledgertest.Watchdog names a hung test).
func TestMain(m *testing.M) {
	os.Exit(ledgertest.Run(m, 5*time.Minute))
}
