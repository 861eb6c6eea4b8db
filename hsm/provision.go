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
	if label == "" || len(label) > 32 {
		return "", fmt.Errorf("hsm: token label must be 1..32 bytes, got %d", len(label))
	}
	if soPIN == "" || userPIN == "" {
		return "", fmt.Errorf("%w: init token needs an SO PIN and a user PIN", ErrNoPIN)
	}
	m, err := acquireModule(module)
	if err != nil {
		return "", err
	}
	defer m.release()
	provisionMu.Lock()
	defer provisionMu.Unlock()
	ctx := m.ctx
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return "", fmt.Errorf("hsm: list slots: %w", err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 && !found {
			free, found = s, true
		}
	}
	if !found {
		return "", fmt.Errorf("%w: no uninitialised token in %s", ErrTokenNotFound, module)
	}
	if err := ctx.InitToken(free, soPIN, label); err != nil {
		return "", fmt.Errorf("hsm: C_InitToken %q: %w", label, err)
	}
	sh, err := ctx.OpenSession(free, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
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
	ti, err := ctx.GetTokenInfo(free)
	if err != nil {
		return "", fmt.Errorf("hsm: init token %q: token info: %w", label, err)
	}
	return ti.SerialNumber, nil
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
