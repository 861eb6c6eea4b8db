// Package softhsmtest hands tests fresh SoftHSM2 tokens: [NewToken] returns
// a ready hsm.Config for an empty token of its own. It is the only part of
// the softhsm tooling that imports testing; production code uses package
// softhsm.
//
// # One environment per test process
//
// SoftHSM reads SOFTHSM2_CONF once, when the library is initialised, and the
// library is a process-wide singleton (see the softhsm package doc and
// docs/hsm.md). Per-test t.TempDir() configurations therefore cannot coexist
// in one process, so [SharedEnv] makes one softhsm.Env per test process,
// created on first use under os.TempDir(), and [NewToken] adds a fresh token
// with a unique label and random PINs to it per call. Any number of tests,
// each with several tokens open at once, can use it concurrently. The
// directory is removed by the next test process that finds its owner process
// gone.
//
// Two measures keep this fast for hundreds of tests: the environment keeps
// the library initialised (softhsm.Env.ActivateAndRetain) so closing the last
// Token does not make the next Open reload every token; and tokens of ended
// tests are recycled (erased and re-initialised with a new label and PINs
// through softhsm.Env.ReinitToken), because SoftHSM scans every token on
// each C_Initialize and slot listing. Without them, 300 token inits took
// ~24 s and kept growing; with them 300 tests with a token each take ~2-6 s
// and one token directory.
//
// softhsm2 missing: NewToken and SharedEnv fail the test when
// CUSTODY_REQUIRE_TOOLS=1 (the Makefile sets it) and otherwise skip it with
// "run make tools".
package softhsmtest

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
	"github.com/custody-dev/custody/softhsm"
)

var (
	sharedOnce sync.Once
	sharedEnv  *softhsm.Env
	sharedErr  error
	tokenSeq   atomic.Uint64
)

// requireTools reports whether a missing tool must fail the test.
func requireTools() bool { return os.Getenv("CUSTODY_REQUIRE_TOOLS") == "1" }

// SharedEnv returns this test process's SoftHSM environment (created on
// first use, see the package doc), activated and with the library kept
// initialised. softhsm2 missing: Fatal under CUSTODY_REQUIRE_TOOLS=1, Skip
// otherwise.
func SharedEnv(t testing.TB) *softhsm.Env {
	t.Helper()
	if _, err := softhsm.FindModule(); err != nil {
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
		sharedEnv, sharedErr = softhsm.Setup(dir)
	})
	if sharedErr != nil {
		t.Fatalf("softhsmtest: shared test env: %v", sharedErr)
	}
	if err := sharedEnv.ActivateAndRetain(); err != nil {
		t.Fatalf("softhsmtest: %v", err)
	}
	return sharedEnv
}

// pooledToken is a token of the shared env whose test ended; the next
// NewToken re-initialises it instead of adding a token, so the token
// directory (which SoftHSM scans on every C_Initialize and every slot
// listing) stays as small as the most tokens open at once.
type pooledToken struct{ serial, soPIN string }

var (
	poolMu sync.Mutex
	pool   []pooledToken
)

func takePooled() (pooledToken, bool) {
	poolMu.Lock()
	defer poolMu.Unlock()
	if len(pool) == 0 {
		return pooledToken{}, false
	}
	p := pool[len(pool)-1]
	pool = pool[:len(pool)-1]
	return p, true
}

// NewToken initialises a fresh, empty token in the process's shared test
// environment and returns a ready Config (module, label, serial, random
// PIN). The label is the given prefix plus a unique suffix, so tests may
// reuse names like "alice"; use the returned Config. When the test ends the
// token is recycled (erased and re-initialised with a new label and PIN) for
// a later NewToken, unless the test left it open. Close Tokens before
// the test ends (t.Cleanup registered after NewToken, or defer).
func NewToken(t testing.TB, label string) hsm.Config {
	t.Helper()
	env := SharedEnv(t)
	suffix := "-" + strconv.FormatUint(tokenSeq.Add(1), 10)
	if len(label)+len(suffix) > 32 {
		label = label[:32-len(suffix)]
	}
	label += suffix
	soPIN, err := softhsm.RandomPIN()
	if err != nil {
		t.Fatal(err)
	}
	pin, err := softhsm.RandomPIN()
	if err != nil {
		t.Fatal(err)
	}
	var serial string
	for {
		p, ok := takePooled()
		if !ok {
			break
		}
		// A token whose test left it open cannot be re-initialised; it is
		// dropped from the pool and a new one is made.
		if env.ReinitToken(p.serial, p.soPIN, label, pin) == nil {
			serial, soPIN = p.serial, p.soPIN
			break
		}
	}
	if serial == "" {
		if serial, err = env.InitToken(label, soPIN, pin); err != nil {
			t.Fatalf("softhsmtest: init test token %q: %v", label, err)
		}
	}
	t.Cleanup(func() {
		poolMu.Lock()
		defer poolMu.Unlock()
		pool = append(pool, pooledToken{serial: serial, soPIN: soPIN})
	})
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
