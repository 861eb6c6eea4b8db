// Package gethtest finds geth for tests (test support: imported by _test.go
// files only).
package gethtest

import (
	"os"
	"testing"

	"github.com/custody-dev/custody/chains/eth/gethproc"
)

// RequireEnv, set to 1 (make test-geth sets it), turns a missing geth from
// a skip into a failure. CUSTODY_REQUIRE_TOOLS does not cover geth: make
// test does not build it (make tools-geth does).
const RequireEnv = "CUSTODY_REQUIRE_GETH"

// Find returns geth (gethproc.Find: PATH, then the module's .bin). Missing,
// the test fails under CUSTODY_REQUIRE_GETH=1 and skips otherwise.
func Find(t testing.TB) string {
	t.Helper()
	bin, err := gethproc.Find()
	if err != nil && os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%v (%s=1)", err, RequireEnv)
	} else if err != nil {
		t.Skipf("%v (make test-geth runs the geth tests)", err)
	}
	return bin
}
