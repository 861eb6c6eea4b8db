package quorum

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

func TestKeyFile(t *testing.T) {
	k := testKey("keyfile")
	plain, err := NewKeyFile(k, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := ParseKeyFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kf.Open(nil); err != nil || !got.Equal(k) {
		t.Fatalf("unsealed open: %v", err)
	}
	sealed, err := newKeyFile(k, []byte("correct horse"), 1000, deterministicReader("salt"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(strings.ToLower(string(hexBytes(k.Seed()))))) {
		t.Fatal("sealed file contains the seed")
	}
	if _, err := ParseKeyFile(sealed); err == nil {
		t.Fatal("1000 iterations accepted by ParseKeyFile")
	}
	kf, err = parseKeyFile(sealed, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if kf.DeviceID != DeviceID(DeviceEd25519, k.Public().(ed25519.PublicKey)) {
		t.Fatal("device id")
	}
	if _, err := kf.Open(nil); !errors.Is(err, ErrPassphraseRequired) {
		t.Fatalf("no passphrase: %v", err)
	}
	if _, err := kf.Open([]byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if got, err := kf.Open([]byte("correct horse")); err != nil || !got.Equal(k) {
		t.Fatalf("sealed open: %v", err)
	}
	// A sealed seed moved under another public key does not open.
	other := testKey("other").Public().(ed25519.PublicKey)
	kf.PublicKey = hexBytes(other)
	if _, err := kf.Open([]byte("correct horse")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("moved ciphertext: %v", err)
	}
	for name, mut := range map[string]func(string) string{
		"zero iterations": func(s string) string { return strings.Replace(s, `"iterations": 1000`, `"iterations": 0`, 1) },
		"short nonce":     func(s string) string { return strings.Replace(s, `"nonce": "`, `"nonce": "00`, 1) },
		"wrong type":      func(s string) string { return strings.Replace(s, keyFileType, "ssh-key", 1) },
		"wrong device id": func(s string) string { return strings.Replace(s, `"device_id": "`, `"device_id": "00`, 1) },
		"not json":        func(s string) string { return s[:10] },
	} {
		if _, err := parseKeyFile([]byte(mut(string(sealed))), 1000); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParseKeyFile: no panics on arbitrary key files, and an accepted file's
// device ID always matches its public key.
func FuzzParseKeyFile(f *testing.F) {
	plain, _ := NewKeyFile(testKey("fuzz"), nil, nil)
	sealed, _ := newKeyFile(testKey("fuzz"), []byte("pw"), 1000, deterministicReader("fuzz"))
	f.Add(plain)
	f.Add(sealed)
	f.Add([]byte(`{"type":"custody-operator-key","version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kf, err := ParseKeyFile(b)
		if err != nil {
			return
		}
		if kf.DeviceID != DeviceID(kf.Kind, kf.PublicKey) {
			t.Fatal("accepted a key file whose device id does not match")
		}
		if kf.Sealed == nil {
			if _, err := kf.Open(nil); err != nil && !strings.Contains(err.Error(), "quorum:") {
				t.Fatalf("unprefixed error %v", err)
			}
		}
	})
}
