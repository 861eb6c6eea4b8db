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
	activeMu.Lock()
	defer activeMu.Unlock()
	if err := sharedEnv.activateLocked(); err != nil {
		t.Fatalf("softhsm: %v", err)
	}
	if keeper == nil {
		// Keep the library initialised between tests: otherwise every
		// last Close finalises it and the next Open reloads every token.
		release, err := hsm.Retain(sharedEnv.Module)
		if err != nil {
			t.Fatalf("softhsm: %v", err)
		}
		keeper = release
	}
	return sharedEnv
}

// pooledToken is a token of the shared env whose test ended; the next
// NewTestToken re-initialises it instead of adding a token, so the token
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

// reinit re-initialises a pooled token of e under a new label and PIN.
func (e *Env) reinit(p pooledToken, label, pin string) error {
	activeMu.Lock()
	defer activeMu.Unlock()
	if err := e.activateLocked(); err != nil {
		return err
	}
	return hsm.ReinitToken(e.Module, p.serial, p.soPIN, label, pin)
}

// NewTestToken initialises a fresh, empty token in the process's shared
// test environment and returns a ready Config (module, label, serial, random
// PIN). The label is the given prefix plus a unique suffix, so tests may
// reuse names like "alice"; use the returned Config. When the test ends the
// token is recycled (erased and re-initialised with a new label and PIN) for
// a later NewTestToken, unless the test left it open. Close Tokens before
// the test ends (t.Cleanup registered after NewTestToken, or defer).
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
	var serial string
	for {
		p, ok := takePooled()
		if !ok {
			break
		}
		// A token whose test left it open cannot be re-initialised; it is
		// dropped from the pool and a new one is made.
		if env.reinit(p, label, pin) == nil {
			serial, soPIN = p.serial, p.soPIN
			break
		}
	}
	if serial == "" {
		if serial, err = env.InitToken(label, soPIN, pin); err != nil {
			t.Fatalf("softhsm: init test token %q: %v", label, err)
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
