package hsm

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// DefaultMaxSessions is the session pool size when Config.MaxSessions is 0.
const DefaultMaxSessions = 16

// Config selects a token and logs in to it.
type Config struct {
	// Module is the path of the PKCS#11 library (e.g. libsofthsm2.so).
	Module string
	// TokenLabel selects the token by label. Two tokens with this label is an
	// error (ErrAmbiguousToken).
	TokenLabel string
	// TokenSerial selects the token by serial number. With TokenLabel also
	// set, both must match.
	TokenSerial string
	// PIN is the user PIN. Load it with LoadPIN; never take it from argv.
	PIN string
	// MaxSessions bounds the session pool (0 means DefaultMaxSessions).
	MaxSessions int
}

// LoadPIN returns the PIN from file if file is not empty (one trailing
// newline, \n or \r\n, is trimmed), and otherwise from the environment
// variable envVar. There is deliberately no way to pass a PIN as an argument:
// argv is visible to every user of the machine.
func LoadPIN(envVar, file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("hsm: read PIN file: %w", err)
		}
		pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pin == "" {
			return "", fmt.Errorf("%w: PIN file %s is empty", ErrNoPIN, file)
		}
		return pin, nil
	}
	if envVar != "" {
		if pin := os.Getenv(envVar); pin != "" {
			return pin, nil
		}
		return "", fmt.Errorf("%w: set $%s or use a PIN file", ErrNoPIN, envVar)
	}
	return "", fmt.Errorf("%w: no PIN variable or file given", ErrNoPIN)
}

// TokenInfo describes the selected token.
type TokenInfo struct {
	Slot         uint   `json:"slot"`
	Label        string `json:"label"`
	Serial       string `json:"serial"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
}

// Token is an open, logged-in PKCS#11 token. It is safe for concurrent use;
// see the package documentation for how sessions are shared.
type Token struct {
	mod  *module
	ctx  api
	slot uint
	info TokenInfo

	// anchor stays open for the Token's lifetime: PKCS#11 login state lives
	// as long as one session of the application is open, so pool sessions can
	// be discarded after errors without logging out.
	anchor pkcs11.SessionHandle

	sem    chan struct{}             // one slot per session that may exist
	idle   chan pkcs11.SessionHandle // sessions not borrowed right now
	mu     sync.RWMutex              // held shared by operations, exclusively by Close
	keys   sync.Mutex                // serialises key creation (check then create)
	closed bool
}

// Open loads cfg.Module (shared with other Tokens of this process), selects
// exactly one token, logs in with cfg.PIN and returns the Token. Close it when
// done.
func Open(cfg Config) (*Token, error) {
	if cfg.TokenLabel == "" && cfg.TokenSerial == "" {
		return nil, fmt.Errorf("%w: config names no token (set a token label or serial)", ErrTokenNotFound)
	}
	if cfg.PIN == "" {
		return nil, ErrNoPIN
	}
	m, err := acquireModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	t, err := openOn(m, cfg)
	if err != nil {
		m.release()
		return nil, err
	}
	return t, nil
}

// openOn selects the token and logs in, on an acquired module.
func openOn(m *module, cfg Config) (*Token, error) {
	slot, ti, err := findToken(m.ctx, cfg.TokenLabel, cfg.TokenSerial)
	if err != nil {
		return nil, err
	}
	n := cfg.MaxSessions
	if n <= 0 {
		n = DefaultMaxSessions
	}
	t := &Token{
		mod:  m,
		ctx:  m.ctx,
		slot: slot,
		info: TokenInfo{Slot: slot, Label: ti.Label, Serial: ti.SerialNumber,
			Manufacturer: ti.ManufacturerID, Model: ti.Model},
		sem:  make(chan struct{}, n),
		idle: make(chan pkcs11.SessionHandle, n),
	}
	t.anchor, err = m.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, t.wrap("open session", err)
	}
	if err := t.login(cfg.PIN); err != nil {
		m.ctx.CloseSession(t.anchor)
		return nil, err
	}
	return t, nil
}

// login logs in once per token per process. A token this process is already
// logged in to is accepted only with the same PIN.
func (t *Token) login(pin string) error {
	m := t.mod
	m.mu.Lock()
	defer m.mu.Unlock()
	mac := m.pinMAC(pin)
	if l := m.logins[t.slot]; l != nil {
		if !hmac.Equal(l.pinMAC, mac) {
			return fmt.Errorf("%w: token %q is open in this process with another PIN", ErrPINIncorrect, t.info.Label)
		}
		l.refs++
		return nil
	}
	err := t.ctx.Login(t.anchor, pkcs11.CKU_USER, pin)
	switch {
	case err == nil, isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		// Already logged in (by another part of the process) is success.
	case isRV(err, pkcs11.CKR_PIN_INCORRECT):
		return fmt.Errorf("%w: token %q: %w", ErrPINIncorrect, t.info.Label, err)
	case isRV(err, pkcs11.CKR_PIN_LOCKED):
		return fmt.Errorf("%w: token %q: %w", ErrPINLocked, t.info.Label, err)
	default:
		return t.wrap("login", err)
	}
	m.logins[t.slot] = &login{refs: 1, pinMAC: mac}
	return nil
}

// findToken returns the one slot whose token matches label and/or serial.
func findToken(ctx api, label, serial string) (uint, pkcs11.TokenInfo, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, pkcs11.TokenInfo{}, fmt.Errorf("hsm: list slots: %w", err)
	}
	var (
		found []uint
		info  pkcs11.TokenInfo
	)
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue // a slot whose token vanished while listing is not a match
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		if label != "" && ti.Label != label {
			continue
		}
		if serial != "" && ti.SerialNumber != serial {
			continue
		}
		found = append(found, s)
		info = ti
	}
	switch len(found) {
	case 0:
		return 0, info, fmt.Errorf("%w: no token with %s", ErrTokenNotFound, describeSel(label, serial))
	case 1:
		return found[0], info, nil
	default:
		return 0, info, fmt.Errorf("%w: %d tokens with %s; select by serial", ErrAmbiguousToken, len(found), describeSel(label, serial))
	}
}

func describeSel(label, serial string) string {
	switch {
	case label != "" && serial != "":
		return fmt.Sprintf("label %q and serial %q", label, serial)
	case serial != "":
		return fmt.Sprintf("serial %q", serial)
	default:
		return fmt.Sprintf("label %q", label)
	}
}

// Info returns the selected token's identity.
func (t *Token) Info() TokenInfo { return t.info }

// Close closes the Token's sessions (waiting for operations in flight) and
// releases the module. Sealers and ECKeys of the Token stop working.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	for len(t.idle) > 0 {
		t.ctx.CloseSession(<-t.idle)
	}
	m := t.mod
	m.mu.Lock()
	if l := m.logins[t.slot]; l != nil {
		l.refs--
		if l.refs == 0 {
			delete(m.logins, t.slot)
		}
	}
	m.mu.Unlock()
	// Closing the last session of the application on the token ends the
	// login; no explicit C_Logout, which would also log out other Tokens of
	// this process on the same slot.
	t.ctx.CloseSession(t.anchor)
	return m.release()
}

// withSession borrows a session for fn. A session whose error means the
// token or session is gone is closed instead of being returned to the pool.
func (t *Token) withSession(fn func(sh pkcs11.SessionHandle) error) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return ErrClosed
	}
	t.sem <- struct{}{}
	defer func() { <-t.sem }()
	var sh pkcs11.SessionHandle
	select {
	case sh = <-t.idle:
	default:
		var err error
		sh, err = t.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return t.wrap("open session", err)
		}
	}
	err := fn(sh)
	if err != nil && (tokenGone(err) || errors.Is(err, errSessionUnusable)) {
		t.ctx.CloseSession(sh)
		return err
	}
	t.idle <- sh
	return err
}

// wrap prefixes a PKCS#11 error and maps "token gone" return values to
// ErrTokenNotFound.
func (t *Token) wrap(op string, err error) error {
	if tokenGone(err) {
		return fmt.Errorf("%w: token %q: %s: %w", ErrTokenNotFound, t.info.Label, op, err)
	}
	return fmt.Errorf("hsm: token %q: %s: %w", t.info.Label, op, err)
}

// findObjects returns the handles of all objects matching tmpl.
func (t *Token) findObjects(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := t.ctx.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := t.ctx.FindObjects(sh, 32)
		if err != nil {
			if ferr := t.ctx.FindObjectsFinal(sh); ferr != nil {
				return nil, fmt.Errorf("%w: C_FindObjectsFinal: %w (after C_FindObjects: %w)", errSessionUnusable, ferr, err)
			}
			return nil, err
		}
		all = append(all, hs...)
		if len(hs) == 0 {
			break
		}
	}
	if err := t.ctx.FindObjectsFinal(sh); err != nil {
		// The search may still be active on this session; every later
		// C_FindObjectsInit on it would fail, so it must not be pooled.
		return nil, fmt.Errorf("%w: C_FindObjectsFinal: %w", errSessionUnusable, err)
	}
	return all, nil
}

// findOne returns the single object matching tmpl: ErrKeyNotFound for none,
// an error for several (a label must name one key).
func (t *Token) findOne(sh pkcs11.SessionHandle, what, label string, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	hs, err := t.findObjects(sh, tmpl)
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 0:
		return 0, fmt.Errorf("%w: no %s labelled %q in token %q", ErrKeyNotFound, what, label, t.info.Label)
	case 1:
		return hs[0], nil
	default:
		return 0, fmt.Errorf("hsm: %d objects (%s) labelled %q in token %q; refusing to guess", len(hs), what, label, t.info.Label)
	}
}

// attrBool decodes a CK_BBOOL attribute value.
func attrBool(v []byte) bool { return len(v) == 1 && v[0] != 0 }

// attrUint decodes a CK_ULONG attribute value (little-endian host order on
// the platforms SoftHSM runs on).
func attrUint(v []byte) uint {
	var n uint
	for i := len(v) - 1; i >= 0; i-- {
		n = n<<8 | uint(v[i])
	}
	return n
}

// getAttrs reads the attribute types from obj into a map.
func (t *Token) getAttrs(sh pkcs11.SessionHandle, obj pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, ty := range types {
		tmpl[i] = pkcs11.NewAttribute(ty, nil)
	}
	got, err := t.ctx.GetAttributeValue(sh, obj, tmpl)
	if err != nil {
		return nil, err
	}
	out := make(map[uint][]byte, len(got))
	for _, a := range got {
		out[a.Type] = a.Value
	}
	return out, nil
}

// Mechanisms lists the names of the mechanisms the token's slot supports.
func (t *Token) Mechanisms() ([]string, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return nil, ErrClosed
	}
	ms, err := t.ctx.GetMechanismList(t.slot)
	if err != nil {
		return nil, t.wrap("list mechanisms", err)
	}
	return mechanismNames(ms), nil
}
