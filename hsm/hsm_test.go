package hsm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	btcecdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/miekg/pkcs11"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

// openTest opens a fresh SoftHSM token for the test and closes it after.
func openTest(t testing.TB, name string) (*hsm.Token, hsm.Config) {
	t.Helper()
	cfg := softhsmtest.NewToken(t, name)
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tok.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tok, cfg
}

func newKEK(t testing.TB, tok *hsm.Token) *hsm.Sealer {
	t.Helper()
	s, err := tok.CreateKEK("kek")
	if err != nil {
		t.Fatalf("CreateKEK: %v", err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	tok, _ := openTest(t, "seal")
	s := newKEK(t, tok)
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("share"), 2000)} {
		aad := []byte("wallet=w1/party=2/v=1")
		blob, err := s.Seal(pt, aad)
		if err != nil {
			t.Fatalf("Seal(%d bytes): %v", len(pt), err)
		}
		if len(pt) > 4 && bytes.Contains(blob, pt[:5]) {
			t.Fatalf("blob contains plaintext")
		}
		got, err := s.Open(blob, aad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("round trip: got %d bytes, want %d", len(got), len(pt))
		}
		blob2, err := s.Seal(pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(blob, blob2) {
			t.Fatalf("two seals of the same plaintext are identical: IV reused")
		}
	}
	// The KEK is found again by label, and opens what the first handle sealed.
	blob, _ := s.Seal([]byte("again"), nil)
	s2, err := tok.KEK("kek")
	if err != nil {
		t.Fatalf("KEK: %v", err)
	}
	if got, err := s2.Open(blob, nil); err != nil || string(got) != "again" {
		t.Fatalf("Open via KEK(): %q, %v", got, err)
	}
}

func TestSignSmoke(t *testing.T) {
	tok, _ := openTest(t, "sign")
	for _, c := range []hsm.Curve{hsm.Secp256k1, hsm.P256} {
		k, err := tok.GenerateECKey("k-"+c.String(), c)
		if err != nil {
			t.Fatalf("GenerateECKey(%v): %v", c, err)
		}
		d := sha256.Sum256([]byte("hello"))
		sig, err := k.Sign(nil, d[:], nil)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if c == hsm.P256 && !ecdsa.VerifyASN1(k.PublicKey(), d[:], sig) {
			t.Fatalf("P-256 signature does not verify with crypto/ecdsa")
		}
		if c == hsm.Secp256k1 {
			ps, err := btcecdsa.ParseDERSignature(sig)
			if err != nil || !ps.Verify(d[:], k.BTCECPublicKey()) {
				t.Fatalf("secp256k1 signature does not verify with btcec: %v", err)
			}
		}
	}
}

func TestOpenTamperCases(t *testing.T) {
	tok, _ := openTest(t, "tamper")
	s := newKEK(t, tok)
	other, _ := openTest(t, "tamper-other")
	otherKEK := newKEK(t, other)
	aad := []byte("wallet=w1/party=1/v=1")
	blob, err := s.Seal([]byte("the share"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(blob); b[i] ^= 0x01; return b }
	cases := []struct {
		name   string
		sealer *hsm.Sealer
		blob   []byte
		aad    []byte
		want   error
	}{
		{"changed AAD", s, blob, []byte("wallet=w1/party=2/v=1"), hsm.ErrAuthFailed},
		{"missing AAD", s, blob, nil, hsm.ErrAuthFailed},
		{"changed ciphertext", s, flip(33), aad, hsm.ErrAuthFailed},
		{"changed tag", s, flip(len(blob) - 1), aad, hsm.ErrAuthFailed},
		{"changed IV", s, flip(25), aad, hsm.ErrAuthFailed},
		{"another token's KEK", otherKEK, blob, aad, hsm.ErrWrongKEK},
		{"changed KEK id", s, flip(5), aad, hsm.ErrWrongKEK},
		{"truncated to header", s, blob[:32], aad, hsm.ErrMalformedBlob},
		{"truncated by one", s, blob[:len(blob)-1], aad, hsm.ErrAuthFailed},
		{"truncated to 3", s, blob[:3], aad, hsm.ErrMalformedBlob},
		{"empty", s, nil, aad, hsm.ErrMalformedBlob},
		{"bad magic", s, flip(0), aad, hsm.ErrMalformedBlob},
		{"unknown version", s, append([]byte{'C', 'S', 'B', 2}, blob[4:]...), aad, hsm.ErrUnknownVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pt, err := c.sealer.Open(c.blob, c.aad)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open: got %v, want %v", err, c.want)
			}
			if pt != nil {
				t.Fatalf("Open returned plaintext with an error")
			}
			if !strings.HasPrefix(err.Error(), "hsm: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
	// Nothing above changed the key: the original still opens.
	if got, err := s.Open(blob, aad); err != nil || string(got) != "the share" {
		t.Fatalf("original blob after tamper attempts: %q, %v", got, err)
	}
}

// rawSession opens a session of its own on the token through a second
// pkcs11.Ctx (sharing the library state, as C_Initialize is process-wide),
// to check attributes independently of package hsm.
func rawSession(t *testing.T, cfg hsm.Config, slot uint) (*pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	p := pkcs11.New(cfg.Module)
	if p == nil {
		t.Fatal("pkcs11.New failed")
	}
	if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatalf("Initialize: %v", err)
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	t.Cleanup(func() { p.CloseSession(sh) })
	return p, sh
}

func findByLabel(t *testing.T, p *pkcs11.Ctx, sh pkcs11.SessionHandle, class uint, label string) pkcs11.ObjectHandle {
	t.Helper()
	if err := p.FindObjectsInit(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
		t.Fatal(err)
	}
	hs, _, err := p.FindObjects(sh, 2)
	p.FindObjectsFinal(sh)
	if err != nil || len(hs) != 1 {
		t.Fatalf("find %q: %v (%d objects)", label, err, len(hs))
	}
	return hs[0]
}

func TestKEKAttributesAndWrapFails(t *testing.T) {
	tok, cfg := openTest(t, "attrs")
	s := newKEK(t, tok)
	a, err := s.Attributes()
	if err != nil {
		t.Fatal(err)
	}
	if !a.Safe() || a.Extractable || !a.Sensitive || a.KeyType != "AES" || a.ValueLen != 32 || !a.Token {
		t.Fatalf("KEK attributes: %+v", a)
	}
	p, sh := rawSession(t, cfg, tok.Info().Slot)
	kek := findByLabel(t, p, sh, pkcs11.CKO_SECRET_KEY, "kek")
	got, err := p.GetAttributeValue(sh, kek, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil), pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint]byte{pkcs11.CKA_EXTRACTABLE: 0, pkcs11.CKA_SENSITIVE: 1, pkcs11.CKA_NEVER_EXTRACTABLE: 1, pkcs11.CKA_ALWAYS_SENSITIVE: 1}
	for _, at := range got {
		if len(at.Value) != 1 || at.Value[0] != want[at.Type] {
			t.Fatalf("attribute 0x%x = %v, want %d", at.Type, at.Value, want[at.Type])
		}
	}
	if _, err := p.GetAttributeValue(sh, kek, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err == nil {
		t.Fatal("reading CKA_VALUE of the KEK succeeded")
	}
	// A wrapping key that is allowed to wrap: wrapping the KEK out must fail.
	wrapper, err := p.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_WRAP, true)})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []uint{pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKM_AES_KEY_WRAP_PAD} {
		if wrapped, err := p.WrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(m, nil)}, wrapper, kek); err == nil {
			t.Fatalf("C_WrapKey (mech 0x%x) of the KEK succeeded: %d bytes", m, len(wrapped))
		}
	}
}

func TestKEKRefusesUnsafeKeys(t *testing.T) {
	tok, cfg := openTest(t, "unsafe")
	p, sh := rawSession(t, cfg, tok.Info().Slot)
	if err := p.Login(sh, pkcs11.CKU_USER, cfg.PIN); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Fatal(err)
	}
	mk := func(label string, extra ...*pkcs11.Attribute) {
		tmpl := append([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), pkcs11.NewAttribute(pkcs11.CKA_ID, bytes.Repeat([]byte{7}, 16))}, extra...)
		if _, err := p.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl); err != nil {
			t.Fatalf("make %s: %v", label, err)
		}
	}
	mk("defaults") // SoftHSM default: not sensitive
	mk("extractable", pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true))
	mk("aes128", pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 16))
	for _, label := range []string{"defaults", "extractable", "aes128"} {
		if _, err := tok.KEK(label); !errors.Is(err, hsm.ErrUnsafeKey) {
			t.Errorf("KEK(%q): got %v, want ErrUnsafeKey", label, err)
		}
	}
	if _, err := tok.CreateKEK("defaults"); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("CreateKEK over an existing label: got %v, want ErrKeyExists", err)
	}
}

func TestKeyLookupErrors(t *testing.T) {
	tok, _ := openTest(t, "lookup")
	if _, err := tok.KEK("nope"); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("KEK(nope): %v", err)
	}
	if _, err := tok.ECKey("nope"); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("ECKey(nope): %v", err)
	}
	newKEK(t, tok)
	if _, err := tok.CreateKEK("kek"); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("second CreateKEK: %v", err)
	}
	if _, err := tok.GenerateECKey("ec", hsm.Secp256k1); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateECKey("ec", hsm.P256); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("second GenerateECKey: %v", err)
	}
	if _, err := tok.GenerateECKey("bad", hsm.Curve(9)); err == nil {
		t.Error("GenerateECKey with an unknown curve succeeded")
	}
}

func TestOpenWrongPIN(t *testing.T) {
	cfg := softhsmtest.NewToken(t, "pin")
	bad := cfg
	bad.PIN = "wrong-" + cfg.PIN[:6]
	_, err := hsm.Open(bad)
	if !errors.Is(err, hsm.ErrPINIncorrect) {
		t.Fatalf("Open with wrong PIN: got %v, want ErrPINIncorrect", err)
	}
	if strings.Contains(err.Error(), bad.PIN) || strings.Contains(err.Error(), cfg.PIN) {
		t.Fatalf("error leaks the PIN: %v", err)
	}
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("Open with the right PIN after a wrong one: %v", err)
	}
	defer tok.Close()
	// While this process is logged in, a second Open with another PIN is
	// refused rather than riding on the existing login.
	if _, err := hsm.Open(bad); !errors.Is(err, hsm.ErrPINIncorrect) {
		t.Fatalf("second Open with wrong PIN while logged in: %v", err)
	}
	tok2, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("second Open with the right PIN: %v", err)
	}
	if err := tok2.Close(); err != nil {
		t.Fatal(err)
	}
	// The first Token is still logged in after the second closed.
	if _, err := tok.CreateKEK("still-logged-in"); err != nil {
		t.Fatalf("first Token after second Close: %v", err)
	}
}

func TestOpenMissingTokenAndModule(t *testing.T) {
	cfg := softhsmtest.NewToken(t, "exists")
	missing := cfg
	missing.TokenLabel, missing.TokenSerial = "no-such-token", ""
	if _, err := hsm.Open(missing); !errors.Is(err, hsm.ErrTokenNotFound) {
		t.Errorf("missing label: %v", err)
	}
	missing.TokenLabel, missing.TokenSerial = cfg.TokenLabel, "0000000000000000"
	if _, err := hsm.Open(missing); !errors.Is(err, hsm.ErrTokenNotFound) {
		t.Errorf("label with wrong serial: %v", err)
	}
	missing = cfg
	missing.TokenLabel, missing.TokenSerial = "", ""
	if _, err := hsm.Open(missing); !errors.Is(err, hsm.ErrTokenNotFound) {
		t.Errorf("no selector: %v", err)
	}
	bogus := cfg
	bogus.Module = t.TempDir() + "/libnothing.so"
	if _, err := hsm.Open(bogus); !errors.Is(err, hsm.ErrModuleLoad) {
		t.Errorf("bogus module: %v", err)
	}
	bySerial := cfg
	bySerial.TokenLabel = ""
	tok, err := hsm.Open(bySerial)
	if err != nil {
		t.Fatalf("Open by serial: %v", err)
	}
	if tok.Info().Label != cfg.TokenLabel {
		t.Errorf("Open by serial found %q", tok.Info().Label)
	}
	tok.Close()
}

func TestOpenAmbiguousLabel(t *testing.T) {
	env := softhsmtest.SharedEnv(t)
	pin, _ := softhsm.RandomPIN()
	label := "dup-" + pin[:8]
	var serials []string
	for range 2 {
		serial, err := env.InitToken(label, pin, pin)
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, serial)
	}
	if _, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: label, PIN: pin}); !errors.Is(err, hsm.ErrAmbiguousToken) {
		t.Fatalf("two tokens with one label: got %v, want ErrAmbiguousToken", err)
	}
	tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: label, TokenSerial: serials[1], PIN: pin})
	if err != nil {
		t.Fatalf("Open by label+serial: %v", err)
	}
	if tok.Info().Serial != serials[1] {
		t.Errorf("selected serial %s, want %s", tok.Info().Serial, serials[1])
	}
	tok.Close()
}

func TestSeveralTokensOneProcess(t *testing.T) {
	var sealers []*hsm.Sealer
	for _, name := range []string{"p1", "p2", "p3", "p4", "p5"} {
		tok, _ := openTest(t, name)
		sealers = append(sealers, newKEK(t, tok))
	}
	for i, s := range sealers {
		blob, err := s.Seal([]byte{byte(i)}, []byte("party"))
		if err != nil {
			t.Fatal(err)
		}
		for j, o := range sealers {
			pt, err := o.Open(blob, []byte("party"))
			if i == j && (err != nil || !bytes.Equal(pt, []byte{byte(i)})) {
				t.Fatalf("token %d cannot open its own blob: %v", i, err)
			}
			if i != j && !errors.Is(err, hsm.ErrWrongKEK) {
				t.Fatalf("token %d opened token %d's blob: %v", j, i, err)
			}
		}
	}
}

func TestClosedTokenFailsClosed(t *testing.T) {
	cfg := softhsmtest.NewToken(t, "closed")
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := newKEK(t, tok)
	k, err := tok.GenerateECKey("k", hsm.Secp256k1)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal([]byte("x"), nil); !errors.Is(err, hsm.ErrClosed) {
		t.Errorf("Seal after Close: %v", err)
	}
	d := sha256.Sum256(nil)
	if _, _, err := k.SignRS(d[:]); !errors.Is(err, hsm.ErrClosed) {
		t.Errorf("Sign after Close: %v", err)
	}
	if err := tok.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestConcurrentSealAndSign runs 64 goroutines sealing, opening and signing
// on one Token (run it with -race).
func TestConcurrentSealAndSign(t *testing.T) {
	tok, _ := openTest(t, "conc")
	s := newKEK(t, tok)
	k1, err := tok.GenerateECKey("k1", hsm.Secp256k1)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := tok.GenerateECKey("p256", hsm.P256)
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 64, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				msg := []byte{byte(w), byte(r)}
				aad := []byte{byte(r), byte(w)}
				blob, err := s.Seal(msg, aad)
				if err != nil {
					errs <- err
					return
				}
				pt, err := s.Open(blob, aad)
				if err != nil || !bytes.Equal(pt, msg) {
					errs <- errors.Join(err, errors.New("round trip mismatch"))
					return
				}
				d := sha256.Sum256(msg)
				key := k1
				if w%2 == 1 {
					key = p256
				}
				sig, err := key.Sign(nil, d[:], nil)
				if err != nil {
					errs <- err
					return
				}
				if !ecdsa.VerifyASN1(p256.PublicKey(), d[:], sig) && key == p256 {
					errs <- errors.New("P-256 signature does not verify")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestSecp256k1ThousandSignatures checks 1,000 native signatures with btcec:
// each verifies, is low-S, and its recovery id recovers the key.
func TestSecp256k1ThousandSignatures(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	tok, _ := openTest(t, "k1x1000")
	k, err := tok.GenerateECKey("btc", hsm.Secp256k1)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := btcec.ParsePubKey(k.PublicKeyBytes())
	if err != nil {
		t.Fatal(err)
	}
	halfN := new(big.Int).Rsh(btcec.S256().N, 1)
	for i := range n {
		d := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		der, err := k.Sign(nil, d[:], nil)
		if err != nil {
			t.Fatalf("sig %d: %v", i, err)
		}
		sig, err := btcecdsa.ParseDERSignature(der)
		if err != nil {
			t.Fatalf("sig %d: not strict DER: %v", i, err)
		}
		if !sig.Verify(d[:], pub) {
			t.Fatalf("sig %d does not verify with btcec", i)
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &rs); err != nil {
			t.Fatal(err)
		}
		if rs.S.Cmp(halfN) > 0 {
			t.Fatalf("sig %d is high-S", i)
		}
		if i%50 == 0 {
			eth, err := k.SignEthereum(d[:])
			if err != nil {
				t.Fatal(err)
			}
			compact := append([]byte{27 + eth[64]}, eth[:64]...)
			rec, _, err := btcecdsa.RecoverCompact(compact, d[:])
			if err != nil || !rec.IsEqual(pub) {
				t.Fatalf("recovery id %d does not recover the key: %v", eth[64], err)
			}
		}
	}
}

func TestP256SignVerify(t *testing.T) {
	tok, _ := openTest(t, "p256")
	k, err := tok.GenerateECKey("device", hsm.P256)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tok.ECKey("device")
	if err != nil {
		t.Fatal(err)
	}
	if !again.PublicKey().Equal(k.Public()) {
		t.Fatal("ECKey() found a different public key")
	}
	for i := range 20 {
		d := sha256.Sum256([]byte{byte(i)})
		sig, err := again.Sign(nil, d[:], crypto256{})
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(k.PublicKey(), d[:], sig) {
			t.Fatalf("signature %d does not verify with crypto/ecdsa", i)
		}
		d[0] ^= 1
		if ecdsa.VerifyASN1(k.PublicKey(), d[:], sig) {
			t.Fatalf("signature %d verifies for another digest", i)
		}
	}
	if _, err := k.Sign(nil, make([]byte, 20), crypto256{}); err == nil {
		t.Fatal("Sign accepted a digest of the wrong size for SHA-256")
	}
	if _, err := k.RecoveryID(make([]byte, 32), big.NewInt(1), big.NewInt(1)); err == nil {
		t.Fatal("RecoveryID on a P-256 key succeeded")
	}
}

func TestECKeyPrivateNotExtractable(t *testing.T) {
	tok, cfg := openTest(t, "ecattr")
	if _, err := tok.GenerateECKey("k", hsm.Secp256k1); err != nil {
		t.Fatal(err)
	}
	p, sh := rawSession(t, cfg, tok.Info().Slot)
	priv := findByLabel(t, p, sh, pkcs11.CKO_PRIVATE_KEY, "k")
	got, err := p.GetAttributeValue(sh, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Value[0] != 0 || got[1].Value[0] != 1 {
		t.Fatalf("private key extractable=%v sensitive=%v", got[0].Value, got[1].Value)
	}
	if _, err := p.GetAttributeValue(sh, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err == nil {
		t.Fatal("reading the private key value succeeded")
	}
}

// crypto256 is crypto.SHA256 as SignerOpts without importing crypto twice.
type crypto256 struct{}

func (crypto256) HashFunc() crypto.Hash { return crypto.SHA256 }

func TestLoadPIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("HSM_TEST_PIN", "from-env")
	for _, c := range []struct {
		env, file, want string
		err             error
	}{
		{"HSM_TEST_PIN", write("lf", "1234\n"), "1234", nil}, // the file wins over the env
		{"", write("crlf", "1234\r\n"), "1234", nil},
		{"", write("none", "12 34"), "12 34", nil},
		{"", write("two", "1234\n\n"), "1234\n", nil}, // only one newline is trimmed
		{"", write("empty", "\n"), "", hsm.ErrNoPIN},
		{"HSM_TEST_PIN", "", "from-env", nil},
		{"HSM_TEST_UNSET", "", "", hsm.ErrNoPIN},
		{"", "", "", hsm.ErrNoPIN},
	} {
		got, err := hsm.LoadPIN(c.env, c.file)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("LoadPIN(%q, %q) = %q, %v; want %q, %v", c.env, c.file, got, err, c.want, c.err)
		}
	}
	if _, err := hsm.LoadPIN("", dir+"/missing"); err == nil {
		t.Error("a missing PIN file was accepted")
	}
}

// A second spelling of the module path (a symlink) is the same library in
// this process: it must share the login record, so a wrong PIN through the
// symlink is refused instead of riding on the first login.
func TestOpenSymlinkedModuleChecksPIN(t *testing.T) {
	cfg := softhsmtest.NewToken(t, "symlink")
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	link := filepath.Join(t.TempDir(), "libsofthsm2-link.so")
	if err := os.Symlink(cfg.Module, link); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.Module = link
	bad.PIN = cfg.PIN + "-wrong"
	if tok2, err := hsm.Open(bad); err == nil {
		tok2.Close()
		t.Fatal("Open through a symlinked module path with a wrong PIN succeeded")
	}
	good := cfg
	good.Module = link
	tok3, err := hsm.Open(good)
	if err != nil {
		t.Fatalf("Open through a symlinked module path with the right PIN: %v", err)
	}
	tok3.Close()
}
