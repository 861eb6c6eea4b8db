package ledgertest

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"runtime/pprof"
	"slices"
	"testing"
	"time"
)

// Watchdog, started from a TestMain, ends a test binary that runs longer
// than after: it writes every goroutine's stack and then, last (so it is in
// the tail CI keeps), the test functions still on a stack. go test's own
// -timeout prints the running tests first, where a truncated CI log loses
// them. The returned func stops the watchdog.
func Watchdog(after time.Duration) (stop func()) {
	t := time.AfterFunc(after, func() {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
		os.Stderr.Write(buf.Bytes())
		fmt.Fprintf(os.Stderr, "\nledgertest.Watchdog: the test binary ran longer than %s; tests still running:\n", after)
		for _, name := range runningTests(buf.Bytes()) {
			fmt.Fprintf(os.Stderr, "\t%s\n", name)
		}
		os.Exit(3)
	})
	return func() { t.Stop() }
}

var testFrame = regexp.MustCompile(`(?m)^[\w./-]+\.(Test\w+|Fuzz\w+)(?:\.func[\d.]+)?\(`)

// runningTests are the distinct Test/Fuzz functions in a goroutine dump.
func runningTests(dump []byte) []string {
	var out []string
	for _, m := range testFrame.FindAllSubmatch(dump, -1) {
		if name := string(m[1]); !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Run is a TestMain's body under a Watchdog: os.Exit(ledgertest.Run(m, d)).
func Run(m *testing.M, after time.Duration) int {
	stop := Watchdog(after)
	defer stop()
	return m.Run()
}
