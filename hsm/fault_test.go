package hsm

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	btcecdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/miekg/pkcs11"
)

// fakeAPI answers the calls a test cares about through function fields; any
// other call panics through the nil embedded interface, so a test notices
// when the code starts calling something it did not expect.
type fakeAPI struct {
	api
	initialize  func() error
	finalize    func() error
	slots       func() ([]uint, error)
	tokenInfo   func(uint) (pkcs11.TokenInfo, error)
	openSession func(uint) (pkcs11.SessionHandle, error)
	login       func(string) error
	encryptInit func() error
	signInit    func() error
	sign        func([]byte) ([]byte, error)
	closed      []pkcs11.SessionHandle
}

func (f *fakeAPI) Initialize(...pkcs11.InitializeOption) error { return f.initialize() }
func (f *fakeAPI) Finalize() error                             { return f.finalize() }
func (f *fakeAPI) GetSlotList(bool) ([]uint, error)            { return f.slots() }
func (f *fakeAPI) GetTokenInfo(s uint) (pkcs11.TokenInfo, error) {
	return f.tokenInfo(s)
}
func (f *fakeAPI) OpenSession(s uint, _ uint) (pkcs11.SessionHandle, error) { return f.openSession(s) }
func (f *fakeAPI) CloseSession(sh pkcs11.SessionHandle) error {
	f.closed = append(f.closed, sh)
	return nil
}
func (f *fakeAPI) Login(_ pkcs11.SessionHandle, _ uint, pin string) error { return f.login(pin) }
func (f *fakeAPI) EncryptInit(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error {
	return f.encryptInit()
}
func (f *fakeAPI) SignInit(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error {
	return f.signInit()
}
func (f *fakeAPI) Sign(_ pkcs11.SessionHandle, d []byte) ([]byte, error) { return f.sign(d) }

// healthyFake is one initialised token "t1" in slot 3.
func healthyFake() *fakeAPI {
	next := pkcs11.SessionHandle(100)
	return &fakeAPI{
		initialize: func() error { return nil },
		finalize:   func() error { return nil },
		slots:      func() ([]uint, error) { return []uint{3}, nil },
		tokenInfo: func(uint) (pkcs11.TokenInfo, error) {
			return pkcs11.TokenInfo{Label: "t1", SerialNumber: "s1", Flags: pkcs11.CKF_TOKEN_INITIALIZED}, nil
		},
		openSession: func(uint) (pkcs11.SessionHandle, error) { next++; return next, nil },
		login:       func(string) error { return nil },
		encryptInit: func() error { return nil },
		signInit:    func() error { return nil },
	}
}

// withFakeModule makes Open load f for the module path "fake:<test name>".
func withFakeModule(t *testing.T, f api) string {
	t.Helper()
	path := "fake:" + t.Name()
	old := loadModule
	loadModule = func(p string) (api, error) {
		if p == path {
			return f, nil
		}
		return old(p)
	}
	t.Cleanup(func() {
		loadModule = old
		modulesMu.Lock()
		delete(modules, moduleKey(path))
		modulesMu.Unlock()
	})
	return path
}

func TestFaultAlreadyLoggedInIsSuccess(t *testing.T) {
	f := healthyFake()
	f.login = func(string) error { return pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN) }
	tok, err := Open(Config{Module: withFakeModule(t, f), TokenLabel: "t1", PIN: "1234"})
	if err != nil {
		t.Fatalf("Open with CKR_USER_ALREADY_LOGGED_IN: %v", err)
	}
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFaultLoginErrorsMapToSentinels(t *testing.T) {
	for rv, want := range map[uint]error{
		pkcs11.CKR_PIN_INCORRECT:     ErrPINIncorrect,
		pkcs11.CKR_PIN_LOCKED:        ErrPINLocked,
		pkcs11.CKR_DEVICE_REMOVED:    ErrTokenNotFound,
		pkcs11.CKR_TOKEN_NOT_PRESENT: ErrTokenNotFound,
	} {
		t.Run(pkcs11.Error(rv).Error(), func(t *testing.T) {
			f := healthyFake()
			f.login = func(string) error { return pkcs11.Error(rv) }
			path := withFakeModule(t, f)
			_, err := Open(Config{Module: path, TokenLabel: "t1", PIN: "secret-pin"})
			if !errors.Is(err, want) {
				t.Errorf("got %v, want %v", err, want)
			}
			if ModuleLoaded(path) {
				t.Errorf("module still loaded after a failed Open")
			}
		})
	}
}

func TestFaultVanishedTokenFailsClosed(t *testing.T) {
	f := healthyFake()
	tok, err := Open(Config{Module: withFakeModule(t, f), TokenLabel: "t1", PIN: "1234"})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	s := &Sealer{tok: tok, label: "kek", id: make([]byte, kekIDLen), handle: 9}
	// The token is pulled: the operation in flight fails, the session is
	// thrown away, and new sessions cannot be opened.
	f.encryptInit = func() error { return pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED) }
	f.openSession = func(uint) (pkcs11.SessionHandle, error) { return 0, pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT) }
	f.slots = func() ([]uint, error) { return nil, nil }
	_, err = s.Seal([]byte("share"), nil)
	if !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("Seal on a vanished token: got %v, want ErrTokenNotFound", err)
	}
	if len(tok.idle) != 0 {
		t.Fatalf("a dead session went back to the pool")
	}
	if _, err := s.Seal([]byte("share"), nil); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("second Seal on a vanished token: %v", err)
	}
	if _, err := Open(Config{Module: tok.mod.path, TokenLabel: "t1", PIN: "1234"}); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("Open of a vanished token: %v", err)
	}
}

func TestFaultModuleSharedAndFinalisedOnce(t *testing.T) {
	f := healthyFake()
	inits, finals := 0, 0
	f.initialize = func() error { inits++; return nil }
	f.finalize = func() error { finals++; return nil }
	f.tokenInfo = func(s uint) (pkcs11.TokenInfo, error) {
		return pkcs11.TokenInfo{Label: map[uint]string{1: "a", 2: "b"}[s], Flags: pkcs11.CKF_TOKEN_INITIALIZED}, nil
	}
	f.slots = func() ([]uint, error) { return []uint{1, 2}, nil }
	path := withFakeModule(t, f)
	a, err := Open(Config{Module: path, TokenLabel: "a", PIN: "1"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(Config{Module: path, TokenLabel: "b", PIN: "2"})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if finals != 0 || !ModuleLoaded(path) {
		t.Fatalf("module finalised while a Token is open")
	}
	b.Close()
	if inits != 1 || finals != 1 || ModuleLoaded(path) {
		t.Fatalf("inits=%d finals=%d loaded=%t, want 1 1 false", inits, finals, ModuleLoaded(path))
	}
	// Initialised by someone else in the process: shared, never finalised.
	f.initialize = func() error { return pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) }
	c, err := Open(Config{Module: path, TokenLabel: "a", PIN: "1"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if finals != 1 {
		t.Fatalf("finalised a library this package did not initialise")
	}
}

// TestFaultSignatureChecks feeds the signing path what a broken HSM could
// return: a high-S signature is normalised, garbage and wrong-key signatures
// are refused.
func TestFaultSignatureChecks(t *testing.T) {
	f := healthyFake()
	tok, err := Open(Config{Module: withFakeModule(t, f), TokenLabel: "t1", PIN: "1234"})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	priv, _ := btcec.NewPrivateKey()
	other, _ := btcec.NewPrivateKey()
	k := &ECKey{tok: tok, label: "k", curve: Secp256k1}
	if err := k.setPoint(priv.PubKey().SerializeUncompressed()); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("tx"))
	rsOf := func(key *btcec.PrivateKey, high bool) []byte {
		r, s, err := ecdsa.Sign(nil2Reader{}, key.ToECDSA(), digest[:])
		if err != nil {
			t.Fatal(err)
		}
		n := btcec.S256().N
		if high != (s.Cmp(new(big.Int).Rsh(n, 1)) > 0) {
			s.Sub(n, s)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
	f.sign = func([]byte) ([]byte, error) { return rsOf(priv, true), nil }
	r, s, err := k.SignRS(digest[:])
	if err != nil {
		t.Fatalf("high-S from the token: %v", err)
	}
	if s.Cmp(new(big.Int).Rsh(btcec.S256().N, 1)) > 0 {
		t.Fatal("high-S signature returned")
	}
	var rs, ss btcec.ModNScalar
	rs.SetByteSlice(r.Bytes())
	ss.SetByteSlice(s.Bytes())
	if !btcecdsa.NewSignature(&rs, &ss).Verify(digest[:], priv.PubKey()) {
		t.Fatal("normalised signature does not verify")
	}
	for name, raw := range map[string][]byte{
		"wrong key": rsOf(other, false),
		"short":     make([]byte, 63),
		"zero r":    append(make([]byte, 32), rsOf(priv, false)[32:]...),
		"r >= n":    append(btcec.S256().N.FillBytes(make([]byte, 32)), rsOf(priv, false)[32:]...),
		"flipped":   func() []byte { b := rsOf(priv, false); b[40] ^= 1; return b }(),
	} {
		f.sign = func([]byte) ([]byte, error) { return raw, nil }
		if _, _, err := k.SignRS(digest[:]); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: got %v, want ErrBadSignature", name, err)
		}
	}
}

// nil2Reader is a deterministic-enough randomness source for test signing.
type nil2Reader struct{}

func (nil2Reader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*7 + 1)
	}
	return len(p), nil
}

// findFake adds the object-search calls to a fakeAPI.
type findFake struct {
	*fakeAPI
	findFinal func() error
}

func (f *findFake) FindObjectsInit(pkcs11.SessionHandle, []*pkcs11.Attribute) error { return nil }
func (f *findFake) FindObjects(pkcs11.SessionHandle, int) ([]pkcs11.ObjectHandle, bool, error) {
	return nil, false, nil
}
func (f *findFake) FindObjectsFinal(pkcs11.SessionHandle) error { return f.findFinal() }

func TestFaultUnfinishedSearchDiscardsSession(t *testing.T) {
	base := healthyFake()
	f := &findFake{fakeAPI: base, findFinal: func() error { return pkcs11.Error(pkcs11.CKR_FUNCTION_FAILED) }}
	tok, err := Open(Config{Module: withFakeModule(t, f), TokenLabel: "t1", PIN: "1234"})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	closedBefore := len(base.closed)
	if _, err := tok.KEK("kek"); err == nil {
		t.Fatal("KEK lookup succeeded although C_FindObjectsFinal failed")
	}
	if len(tok.idle) != 0 {
		t.Fatalf("a session with a possibly active search went back to the pool")
	}
	if len(base.closed) != closedBefore+1 {
		t.Fatalf("the session was not closed: %d closed before, %d after", closedBefore, len(base.closed))
	}
}
