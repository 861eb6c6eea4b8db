package hsm

import (
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
)

// provisionMu serialises InitToken so two callers never pick the same free
// slot.
var provisionMu sync.Mutex

// InitToken initialises the first uninitialised token of module with label,
// the security officer PIN soPIN and the user PIN userPIN, and returns the
// new token's serial. It is for provisioning test and development tokens
// (SoftHSM always offers one free slot); production tokens are initialised
// by their vendor's tools.
func InitToken(module, label, soPIN, userPIN string) (serial string, err error) {
	if err := checkInitArgs(label, soPIN, userPIN); err != nil {
		return "", err
	}
	m, err := acquireModule(module)
	if err != nil {
		return "", err
	}
	defer m.release()
	provisionMu.Lock()
	defer provisionMu.Unlock()
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return "", fmt.Errorf("hsm: list slots: %w", err)
	}
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			return initTokenInSlot(m, s, label, soPIN, userPIN)
		}
	}
	return "", fmt.Errorf("%w: no uninitialised token in %s", ErrTokenNotFound, module)
}

// ReinitToken erases the token with the given serial (all its objects) and
// initialises it again with a new label and user PIN; soPIN must be its
// current SO PIN. Test harnesses use it to recycle tokens. A token that this
// process has open is refused.
func ReinitToken(module, serial, soPIN, label, userPIN string) error {
	if err := checkInitArgs(label, soPIN, userPIN); err != nil {
		return err
	}
	m, err := acquireModule(module)
	if err != nil {
		return err
	}
	defer m.release()
	provisionMu.Lock()
	defer provisionMu.Unlock()
	slot, _, err := findToken(m.ctx, "", serial)
	if err != nil {
		return err
	}
	m.mu.Lock()
	open := m.logins[slot] != nil
	m.mu.Unlock()
	if open {
		return fmt.Errorf("hsm: token %s is open in this process; close it before re-initialising", serial)
	}
	_, err = initTokenInSlot(m, slot, label, soPIN, userPIN)
	return err
}

func checkInitArgs(label, soPIN, userPIN string) error {
	if label == "" || len(label) > 32 {
		return fmt.Errorf("hsm: token label must be 1..32 bytes, got %d", len(label))
	}
	if soPIN == "" || userPIN == "" {
		return fmt.Errorf("%w: init token needs an SO PIN and a user PIN", ErrNoPIN)
	}
	return nil
}

// initTokenInSlot runs C_InitToken, then sets the user PIN as SO.
func initTokenInSlot(m *module, slot uint, label, soPIN, userPIN string) (string, error) {
	ctx := m.ctx
	if err := ctx.InitToken(slot, soPIN, label); err != nil {
		if isRV(err, pkcs11.CKR_PIN_INCORRECT) {
			return "", fmt.Errorf("%w: SO PIN of the token in slot %d: %w", ErrPINIncorrect, slot, err)
		}
		return "", fmt.Errorf("hsm: C_InitToken %q: %w", label, err)
	}
	sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return "", fmt.Errorf("hsm: init token %q: open session: %w", label, err)
	}
	defer ctx.CloseSession(sh)
	if err := ctx.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
		return "", fmt.Errorf("hsm: init token %q: SO login: %w", label, err)
	}
	defer ctx.Logout(sh)
	if err := ctx.InitPIN(sh, userPIN); err != nil {
		return "", fmt.Errorf("hsm: init token %q: C_InitPIN: %w", label, err)
	}
	ti, err := ctx.GetTokenInfo(slot)
	if err != nil {
		return "", fmt.Errorf("hsm: init token %q: token info: %w", label, err)
	}
	return ti.SerialNumber, nil
}

// Retain keeps the module at path initialised (as an open Token would)
// until release is called, so that opening and closing Tokens does not
// finalise and re-initialise the library each time. Test harnesses use it;
// the configuration the library read at initialisation stays in force.
func Retain(path string) (release func() error, err error) {
	m, err := acquireModule(path)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() { err = m.release() })
		return err
	}, nil
}

// SlotReport describes one slot of a module, without logging in.
type SlotReport struct {
	Slot        uint     `json:"slot"`
	Description string   `json:"description"`
	HasToken    bool     `json:"has_token"`
	Initialized bool     `json:"initialized"`
	Label       string   `json:"label,omitempty"`
	Serial      string   `json:"serial,omitempty"`
	Model       string   `json:"model,omitempty"`
	Mechanisms  []string `json:"mechanisms,omitempty"`
}

// ListSlots reports every slot of module and its token, if any.
func ListSlots(module string) ([]SlotReport, error) {
	m, err := acquireModule(module)
	if err != nil {
		return nil, err
	}
	defer m.release()
	slots, err := m.ctx.GetSlotList(false)
	if err != nil {
		return nil, fmt.Errorf("hsm: list slots: %w", err)
	}
	out := make([]SlotReport, 0, len(slots))
	for _, s := range slots {
		r := SlotReport{Slot: s}
		if si, err := m.ctx.GetSlotInfo(s); err == nil {
			r.Description = si.SlotDescription
			r.HasToken = si.Flags&pkcs11.CKF_TOKEN_PRESENT != 0
		}
		if ti, err := m.ctx.GetTokenInfo(s); err == nil {
			r.Initialized = ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0
			r.Label, r.Serial, r.Model = ti.Label, ti.SerialNumber, ti.Model
		}
		if ms, err := m.ctx.GetMechanismList(s); err == nil {
			r.Mechanisms = mechanismNames(ms)
		}
		out = append(out, r)
	}
	return out, nil
}
