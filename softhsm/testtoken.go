package softhsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/custody-dev/custody/hsm"
)

var (
	sharedOnce sync.Once
	sharedEnv  *Env
	sharedErr  error
	tokenSeq   atomic.Uint64
)

// requireTools reports whether a missing tool must fail the test.
func requireTools() bool { return os.Getenv("CUSTODY_REQUIRE_TOOLS") == "1" }

// SharedTestEnv returns this test process's SoftHSM environment (created on
// first use, see the package doc) and activates it. softhsm2 missing: Fatal
// under CUSTODY_REQUIRE_TOOLS=1, Skip otherwise.
func SharedTestEnv(t testing.TB) *Env {
	t.Helper()
	if _, err := FindModule(); err != nil {
		if requireTools() {
			t.Fatalf("%v (CUSTODY_REQUIRE_TOOLS=1)", err)
		}
		t.Skipf("%v: run make tools", err)
	}
	sharedOnce.Do(func() {
		removeStaleDirs()
		dir, err := os.MkdirTemp("", fmt.Sprintf("custody-softhsm-%d-", os.Getpid()))
		if err != nil {
			sharedErr = err
			return
		}
		sharedEnv, sharedErr = Setup(dir)
	})
	if sharedErr != nil {
		t.Fatalf("softhsm: shared test env: %v", sharedErr)
	}
	if err := sharedEnv.Activate(); err != nil {
		t.Fatalf("softhsm: %v", err)
	}
	return sharedEnv
}

// NewTestToken initialises a fresh token in the process's shared test
// environment and returns a ready Config (module, label, serial, random PIN).
// The label is the given prefix plus a unique suffix, so tests may reuse
// names like "alice"; use the returned TokenLabel.
func NewTestToken(t testing.TB, label string) hsm.Config {
	t.Helper()
	env := SharedTestEnv(t)
	suffix := "-" + strconv.FormatUint(tokenSeq.Add(1), 10)
	if len(label)+len(suffix) > 32 {
		label = label[:32-len(suffix)]
	}
	label += suffix
	soPIN, err := RandomPIN()
	if err != nil {
		t.Fatal(err)
	}
	pin, err := RandomPIN()
	if err != nil {
		t.Fatal(err)
	}
	serial, err := env.InitToken(label, soPIN, pin)
	if err != nil {
		t.Fatalf("softhsm: init test token %q: %v", label, err)
	}
	return hsm.Config{Module: env.Module, TokenLabel: label, TokenSerial: serial, PIN: pin}
}

// removeStaleDirs deletes shared test environments whose process is gone.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "custody-softhsm-*-*"))
	for _, d := range dirs {
		parts := strings.Split(filepath.Base(d), "-")
		if len(parts) < 4 {
			continue
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}
