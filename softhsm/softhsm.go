// Package softhsm provisions isolated SoftHSM2 configurations and tokens for
// tests, `make demo` and devnets. It never touches /etc/softhsm or the global
// token directory: every Env has its own softhsm2.conf and token directory.
//
// # One SoftHSM configuration per process at a time
//
// libsofthsm2 is a process-wide singleton. It reads SOFTHSM2_CONF only in
// C_Initialize; a second C_Initialize in the same process (from any code)
// returns CKR_CRYPTOKI_ALREADY_INITIALIZED and shares the first one's state.
// Measured with SoftHSM 2.6.1 (Debian):
//
//   - Tokens initialised by another process (softhsm2-util) after this
//     process called C_Initialize are NOT seen until C_Finalize and a new
//     C_Initialize; C_GetSlotList does not rescan the token directory.
//   - Tokens initialised in-process with C_InitToken on the free slot are
//     seen at once, and SoftHSM adds a new free slot.
//   - After C_Finalize, a C_Initialize re-reads SOFTHSM2_CONF, so a process
//     can switch configurations, but only when no token of the old one is
//     open. Slot IDs change across re-initialisation; select tokens by label
//     or serial, never by slot.
//
// So this package initialises tokens in-process (through package hsm, which
// shares one reference-counted module per path), and [Env.Activate] points
// the process's SOFTHSM2_CONF at an Env only while the module is not loaded;
// otherwise it fails with [ErrConfigInUse] instead of silently provisioning
// into another configuration.
//
// Test tokens come from package softhsmtest, which builds on [Env] (with
// [Env.ActivateAndRetain] and [Env.ReinitToken]); this package does not
// import testing, so the custody binary can use it.
package softhsm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/custody-dev/custody/hsm"
)

// ModuleEnv is the environment variable that overrides FindModule.
const ModuleEnv = "CUSTODY_PKCS11_MODULE"

// ErrNotInstalled means libsofthsm2.so was not found.
var ErrNotInstalled = errors.New("softhsm: libsofthsm2.so not found (install softhsm2: sudo apt-get install -y softhsm2)")

// ErrConfigInUse means the SoftHSM library is loaded in this process under
// another SOFTHSM2_CONF, so it cannot serve this Env until every token of the
// other one is closed.
var ErrConfigInUse = errors.New("softhsm: library already initialised in this process with another SOFTHSM2_CONF")

// FindModule returns the path of libsofthsm2.so: $CUSTODY_PKCS11_MODULE if
// set (it must exist), otherwise the first of the usual Debian, multiarch,
// RPM, BSD and Homebrew locations that exists.
func FindModule() (string, error) {
	if p := os.Getenv(ModuleEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("softhsm: $%s: %w", ModuleEnv, err)
		}
		return p, nil
	}
	for _, p := range moduleCandidates() {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", ErrNotInstalled
}

func moduleCandidates() []string {
	c := []string{"/usr/lib/softhsm/libsofthsm2.so"}
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu",
		"386": "i386-linux-gnu", "arm": "arm-linux-gnueabihf", "ppc64le": "powerpc64le-linux-gnu",
		"s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu"}[runtime.GOARCH]
	if triplet != "" {
		c = append(c, "/usr/lib/"+triplet+"/softhsm/libsofthsm2.so")
	}
	c = append(c,
		"/usr/lib64/pkcs11/libsofthsm2.so", "/usr/lib/pkcs11/libsofthsm2.so",
		"/usr/lib64/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so",
		"/usr/local/lib/libsofthsm2.so", "/opt/homebrew/lib/softhsm/libsofthsm2.so",
	)
	if more, _ := filepath.Glob("/usr/lib/*/softhsm/libsofthsm2.so"); len(more) > 0 {
		c = append(c, more...)
	}
	return c
}

// Env is an isolated SoftHSM2 configuration.
type Env struct {
	Dir      string // root of the environment
	ConfPath string // Dir/softhsm2.conf
	TokenDir string // Dir/tokens
	Module   string // path of libsofthsm2.so
}

// Setup creates dir (if needed) with a softhsm2.conf and an empty token
// directory, both private to the user.
func Setup(dir string) (*Env, error) {
	mod, err := FindModule()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	e := &Env{Dir: abs, ConfPath: filepath.Join(abs, "softhsm2.conf"), TokenDir: filepath.Join(abs, "tokens"), Module: mod}
	if err := os.MkdirAll(e.TokenDir, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	conf := fmt.Sprintf(`# Written by custody (package softhsm): an isolated SoftHSM2 configuration.
directories.tokendir = %s
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
`, e.TokenDir)
	if err := os.WriteFile(e.ConfPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	return e, nil
}

// activeMu serialises switching SOFTHSM2_CONF and provisioning.
var activeMu sync.Mutex

// Activate points this process's SOFTHSM2_CONF at e, so the next
// initialisation of the SoftHSM library (hsm.Open, InitToken) uses it. It
// fails with ErrConfigInUse if the library is loaded under another
// configuration.
func (e *Env) Activate() error {
	activeMu.Lock()
	defer activeMu.Unlock()
	return e.activateLocked()
}

// ActivateAndRetain activates e (see Activate) and keeps the SoftHSM library
// initialised (hsm.Retain) until another Env is activated, so closing the
// last Token does not finalise it and the next Open does not reload every
// token. Activating another Env lets go of the hold first, so it never keeps
// an old configuration loaded on its own. softhsmtest uses it for the
// shared test environment.
func (e *Env) ActivateAndRetain() error {
	activeMu.Lock()
	defer activeMu.Unlock()
	if err := e.activateLocked(); err != nil {
		return err
	}
	if retained == nil {
		release, err := hsm.Retain(e.Module)
		if err != nil {
			return fmt.Errorf("softhsm: %w", err)
		}
		retained = release
	}
	return nil
}

// retained releases ActivateAndRetain's hold on the library; guarded by
// activeMu.
var retained func() error

func (e *Env) activateLocked() error {
	if os.Getenv("SOFTHSM2_CONF") == e.ConfPath {
		return nil
	}
	if retained != nil {
		// Only ActivateAndRetain's hold keeps the old configuration
		// loaded; let it go so this Env can be activated if nothing else
		// is open.
		retained()
		retained = nil
	}
	if hsm.ModuleLoaded(e.Module) {
		return fmt.Errorf("%w (now %q, wanted %q); close its tokens first", ErrConfigInUse, os.Getenv("SOFTHSM2_CONF"), e.ConfPath)
	}
	return os.Setenv("SOFTHSM2_CONF", e.ConfPath)
}

// InitToken activates e and initialises a new token with label and PINs in
// this process, returning its serial. It checks that the token was written
// to e.TokenDir.
func (e *Env) InitToken(label, soPIN, userPIN string) (serial string, err error) {
	activeMu.Lock()
	defer activeMu.Unlock()
	if err := e.activateLocked(); err != nil {
		return "", err
	}
	before, err := e.tokenDirs()
	if err != nil {
		return "", err
	}
	serial, err = hsm.InitToken(e.Module, label, soPIN, userPIN)
	if err != nil {
		return "", fmt.Errorf("softhsm: %w", err)
	}
	after, err := e.tokenDirs()
	if err != nil {
		return "", err
	}
	if after <= before {
		return "", fmt.Errorf("%w: token %q was not written to %s", ErrConfigInUse, label, e.TokenDir)
	}
	return serial, nil
}

// ReinitToken activates e and re-initialises its token with serial: every
// object on it is erased and it gets label and userPIN (soPIN is the SO PIN
// it was initialised with). It fails if the token is open in this process.
func (e *Env) ReinitToken(serial, soPIN, label, userPIN string) error {
	activeMu.Lock()
	defer activeMu.Unlock()
	if err := e.activateLocked(); err != nil {
		return err
	}
	if err := hsm.ReinitToken(e.Module, serial, soPIN, label, userPIN); err != nil {
		return fmt.Errorf("softhsm: %w", err)
	}
	return nil
}

func (e *Env) tokenDirs() (int, error) {
	ents, err := os.ReadDir(e.TokenDir)
	if err != nil {
		return 0, fmt.Errorf("softhsm: %w", err)
	}
	return len(ents), nil
}

// Environ returns the environment a child process needs to see e.
func (e *Env) Environ() []string {
	return []string{"SOFTHSM2_CONF=" + e.ConfPath, ModuleEnv + "=" + e.Module}
}

// Config returns an hsm.Config for the token with label in e.
func (e *Env) Config(label, pin string) hsm.Config {
	return hsm.Config{Module: e.Module, TokenLabel: label, PIN: pin}
}

// RandomPIN returns a fresh random 32-hex-digit PIN.
func RandomPIN() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("softhsm: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ValidLabel reports whether label is a usable token label (1..32 bytes of
// printable ASCII without commas).
func ValidLabel(label string) bool {
	if label == "" || len(label) > 32 {
		return false
	}
	return !strings.ContainsFunc(label, func(r rune) bool { return r < 0x21 || r > 0x7e || r == ',' })
}
