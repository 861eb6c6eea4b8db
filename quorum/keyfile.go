package quorum

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Key files hold an operator's Ed25519 device key. They are JSON:
//
//	{"type":"custody-operator-key","version":1,"kind":"ed25519",
//	 "public_key":"<hex>","device_id":"<hex>",
//	 "private_key":"<hex seed>"                       (unsealed), or
//	 "sealed":{"kdf":"pbkdf2-sha256","iterations":N,"salt":"<hex>",
//	           "nonce":"<hex>","ciphertext":"<hex>"}  (sealed)}
//
// A sealed file encrypts the 32-byte seed with AES-256-GCM under a key
// derived from the passphrase by PBKDF2-HMAC-SHA256; the AAD binds the
// format tag and the public key, so a ciphertext cannot be moved to another
// file. Unsealed files rely on file permissions (0600) alone.

const (
	keyFileType = "custody-operator-key"
	// KeyFileIterations is the PBKDF2 iteration count for new sealed files
	// (OWASP 2023 guidance for PBKDF2-HMAC-SHA256).
	KeyFileIterations = 600_000
	minIterations     = 100_000
	maxIterations     = 10_000_000
)

// ErrWrongPassphrase is returned when a sealed key file does not open.
var ErrWrongPassphrase = errors.New("quorum: wrong passphrase or corrupted key file")

// ErrPassphraseRequired is returned when opening a sealed key file without
// a passphrase.
var ErrPassphraseRequired = errors.New("quorum: key file is sealed; a passphrase is required")

// KeyFile is a parsed key file; Open yields the private key.
type KeyFile struct {
	Type       string      `json:"type"`
	Version    int         `json:"version"`
	Kind       DeviceKind  `json:"kind"`
	PublicKey  hexBytes    `json:"public_key"`
	DeviceID   string      `json:"device_id"`
	PrivateKey hexBytes    `json:"private_key,omitempty"`
	Sealed     *sealedSeed `json:"sealed,omitempty"`
}

type sealedSeed struct {
	KDF        string   `json:"kdf"`
	Iterations int      `json:"iterations"`
	Salt       hexBytes `json:"salt"`
	Nonce      hexBytes `json:"nonce"`
	Ciphertext hexBytes `json:"ciphertext"`
}

type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }
func (h *hexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// NewKeyFile encodes priv as a key file, sealed when passphrase is non-empty.
// rnd supplies the salt and nonce (crypto/rand in production).
func NewKeyFile(priv ed25519.PrivateKey, passphrase []byte, rnd io.Reader) ([]byte, error) {
	return newKeyFile(priv, passphrase, KeyFileIterations, rnd)
}

func newKeyFile(priv ed25519.PrivateKey, passphrase []byte, iterations int, rnd io.Reader) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("quorum: not an ed25519 private key")
	}
	pub := priv.Public().(ed25519.PublicKey)
	kf := KeyFile{Type: keyFileType, Version: 1, Kind: DeviceEd25519, PublicKey: hexBytes(pub), DeviceID: DeviceID(DeviceEd25519, pub)}
	if len(passphrase) == 0 {
		kf.PrivateKey = hexBytes(priv.Seed())
	} else {
		s := &sealedSeed{KDF: "pbkdf2-sha256", Iterations: iterations, Salt: make([]byte, 16), Nonce: make([]byte, 12)}
		if _, err := io.ReadFull(rnd, s.Salt); err != nil {
			return nil, fmt.Errorf("quorum: key file salt: %w", err)
		}
		if _, err := io.ReadFull(rnd, s.Nonce); err != nil {
			return nil, fmt.Errorf("quorum: key file nonce: %w", err)
		}
		aead, err := keyFileAEAD(passphrase, s)
		if err != nil {
			return nil, err
		}
		s.Ciphertext = aead.Seal(nil, s.Nonce, priv.Seed(), keyFileAAD(pub))
		kf.Sealed = s
	}
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseKeyFile parses and checks a key file's public part; it does not need
// the passphrase.
func ParseKeyFile(data []byte) (KeyFile, error) { return parseKeyFile(data, minIterations) }

// parseKeyFile takes the iteration floor as a parameter only so tests under
// -race need not pay for 600,000 iterations per case.
func parseKeyFile(data []byte, minIter int) (KeyFile, error) {
	var kf KeyFile
	if len(data) > 64<<10 {
		return kf, errors.New("quorum: key file too large")
	}
	if err := json.Unmarshal(data, &kf); err != nil {
		return KeyFile{}, fmt.Errorf("quorum: key file: %w", err)
	}
	switch {
	case kf.Type != keyFileType || kf.Version != 1:
		return KeyFile{}, fmt.Errorf("quorum: not a version 1 %s file", keyFileType)
	case kf.Kind != DeviceEd25519 || len(kf.PublicKey) != ed25519.PublicKeySize:
		return KeyFile{}, errors.New("quorum: key file: only ed25519 keys with a 32-byte public key are supported")
	case kf.DeviceID != DeviceID(kf.Kind, kf.PublicKey):
		return KeyFile{}, errors.New("quorum: key file: device id does not match the public key")
	case (kf.Sealed == nil) == (len(kf.PrivateKey) == 0):
		return KeyFile{}, errors.New("quorum: key file: needs exactly one of private_key and sealed")
	case kf.Sealed != nil && (kf.Sealed.KDF != "pbkdf2-sha256" || kf.Sealed.Iterations < minIter ||
		kf.Sealed.Iterations > maxIterations || len(kf.Sealed.Salt) < 16 || len(kf.Sealed.Nonce) != 12):
		return KeyFile{}, errors.New("quorum: key file: unsupported or weak sealing parameters")
	}
	return kf, nil
}

// Open returns the private key, unsealing with passphrase if needed, and
// checks it matches the file's public key.
func (kf KeyFile) Open(passphrase []byte) (ed25519.PrivateKey, error) {
	var seed []byte
	if kf.Sealed == nil {
		seed = kf.PrivateKey
	} else {
		if len(passphrase) == 0 {
			return nil, ErrPassphraseRequired
		}
		aead, err := keyFileAEAD(passphrase, kf.Sealed)
		if err != nil {
			return nil, err
		}
		seed, err = aead.Open(nil, kf.Sealed.Nonce, kf.Sealed.Ciphertext, keyFileAAD(kf.PublicKey))
		if err != nil {
			return nil, ErrWrongPassphrase
		}
	}
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("quorum: key file: bad seed length")
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if !priv.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(kf.PublicKey)) {
		return nil, errors.New("quorum: key file: private key does not match the public key")
	}
	return priv, nil
}

func keyFileAAD(pub []byte) []byte {
	return append([]byte("custody/operator-key/v1\x00"), pub...)
}

func keyFileAEAD(passphrase []byte, s *sealedSeed) (cipher.AEAD, error) {
	k, err := pbkdf2.Key(sha256.New, string(passphrase), s.Salt, s.Iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("quorum: key file kdf: %w", err)
	}
	blk, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}
