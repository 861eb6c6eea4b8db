package hsm

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/miekg/pkcs11"
)

// api is the subset of *pkcs11.Ctx this package calls. Keeping it this small
// lets tests inject faults (a vanished token, CKR_USER_ALREADY_LOGGED_IN) with
// function-field fakes while everything else runs against real SoftHSM2.
type api interface {
	Initialize(opts ...pkcs11.InitializeOption) error
	Finalize() error
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetSlotInfo(slotID uint) (pkcs11.SlotInfo, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	GetMechanismList(slotID uint) ([]*pkcs11.Mechanism, error)
	GetMechanismInfo(slotID uint, m []*pkcs11.Mechanism) (pkcs11.MechanismInfo, error)
	InitToken(slotID uint, pin string, label string) error
	InitPIN(sh pkcs11.SessionHandle, pin string) error
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	Logout(sh pkcs11.SessionHandle) error
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	GenerateKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error)
	EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Encrypt(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Decrypt(sh pkcs11.SessionHandle, cypher []byte) ([]byte, error)
	SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
}

var _ api = (*pkcs11.Ctx)(nil)

// module is one loaded PKCS#11 library, shared by every Token opened on the
// same path in this process. C_Initialize is process-wide state inside the
// library (a second C_Initialize returns CKR_CRYPTOKI_ALREADY_INITIALIZED and
// SoftHSM reads its configuration only then), so it is called once and
// C_Finalize only when the last Token closes.
type module struct {
	path string // as configured, for messages
	key  string // moduleKey(path), the entry in modules
	ctx  api

	mu     sync.Mutex // guards everything below
	refs   int
	owned  bool // we called C_Initialize successfully and must C_Finalize
	logins map[uint]*login
	macKey [32]byte
}

// login records that this process logged in to the token in a slot, and a
// keyed hash of the PIN used, so that a second Open of the same token with a
// different PIN is refused instead of riding on the existing login
// (C_Login would only answer CKR_USER_ALREADY_LOGGED_IN).
type login struct {
	refs   int
	pinMAC []byte
}

// slotTable guards SoftHSM2's slot table. C_GetSlotList rescans the token
// directory and inserts newly initialised tokens into the table without a
// lock: two concurrent listings while a token is being added abort the
// process (SlotManager::insertToken's assertion; found by softhsmtest
// TestNewTokenConcurrent in CI), and a listing racing a call that reads the
// table (C_GetTokenInfo, C_OpenSession, C_InitToken, ...) is a data race in
// the library. So listing takes the lock exclusively and the calls that
// look a slot up share it; session calls (sign, decrypt, find) do not touch
// the table. Listing and these calls are rare (open, provisioning), so one
// lock for every module costs nothing.
type slotTable struct {
	api
	mu *sync.RWMutex
}

var slotTableMu sync.RWMutex

// lockSlots wraps a loaded library's api with the slot-table lock.
func lockSlots(a api) api { return slotTable{api: a, mu: &slotTableMu} }

func (s slotTable) GetSlotList(tokenPresent bool) ([]uint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.api.GetSlotList(tokenPresent)
}

func (s slotTable) GetSlotInfo(slot uint) (pkcs11.SlotInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.api.GetSlotInfo(slot)
}

func (s slotTable) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.api.GetTokenInfo(slot)
}

func (s slotTable) GetMechanismList(slot uint) ([]*pkcs11.Mechanism, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.api.GetMechanismList(slot)
}

func (s slotTable) GetMechanismInfo(slot uint, m []*pkcs11.Mechanism) (pkcs11.MechanismInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.api.GetMechanismInfo(slot, m)
}

func (s slotTable) InitToken(slot uint, pin, label string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.api.InitToken(slot, pin, label)
}

func (s slotTable) OpenSession(slot, flags uint) (pkcs11.SessionHandle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.api.OpenSession(slot, flags)
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*module{}
	// loadModule is replaced in tests to inject a fake library.
	loadModule = func(path string) (api, error) {
		ctx := pkcs11.New(path)
		if ctx == nil {
			return nil, fmt.Errorf("%w %q: dlopen failed or not a PKCS#11 library", ErrModuleLoad, path)
		}
		return ctx, nil
	}
)

// moduleKey names the library file behind path. One file is one PKCS#11
// instance in this process whatever the spelling of its path, so modules are
// keyed by the resolved path: a symlinked second spelling then shares the
// login record (and its PIN check) instead of riding on the library's
// existing login.
func moduleKey(path string) string {
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		return resolved
	}
	return path
}

// acquireModule returns the shared, initialised module for path, loading and
// initialising it on first use. Every successful call must be paired with
// release.
func acquireModule(path string) (*module, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no module path configured", ErrModuleLoad)
	}
	key := moduleKey(path)
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m := modules[key]
	if m == nil {
		ctx, err := loadModule(path)
		if err != nil {
			return nil, err
		}
		m = &module{path: path, key: key, ctx: lockSlots(ctx)}
		modules[key] = m
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs == 0 {
		err := m.ctx.Initialize()
		switch {
		case err == nil:
			m.owned = true
		case isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED):
			// Someone else in this process initialised the library; share it
			// but never finalise it under them.
			m.owned = false
		default:
			return nil, fmt.Errorf("%w %q: C_Initialize: %w", ErrModuleLoad, path, err)
		}
		m.logins = map[uint]*login{}
		if _, err := rand.Read(m.macKey[:]); err != nil {
			return nil, fmt.Errorf("hsm: random: %w", err)
		}
	}
	m.refs++
	return m, nil
}

// release drops one reference; the last one finalises the library so that a
// later acquire re-reads its configuration.
func (m *module) release() error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs <= 0 {
		return nil
	}
	m.refs--
	if m.refs > 0 {
		return nil
	}
	m.logins = nil
	if !m.owned {
		return nil
	}
	m.owned = false
	if err := m.ctx.Finalize(); err != nil {
		return fmt.Errorf("hsm: C_Finalize %q: %w", m.path, err)
	}
	return nil
}

// pinMAC is a keyed hash of a PIN, only ever compared in constant time in
// memory; the PIN itself is not kept.
func (m *module) pinMAC(pin string) []byte {
	h := hmac.New(sha256.New, m.macKey[:])
	h.Write([]byte(pin))
	return h.Sum(nil)
}

// ModuleLoaded reports whether the module at path is currently initialised
// in this process by this package (some Token on it is open). SoftHSM reads
// SOFTHSM2_CONF only when it is initialised; package softhsm uses this to
// refuse switching configurations under open tokens.
func ModuleLoaded(path string) bool {
	key := moduleKey(path)
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m := modules[key]
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refs > 0
}
