package hsm

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Sealed blob format, version 1 (all offsets in bytes):
//
//	0   3  magic "CSB" (custody sealed blob)
//	3   1  version = 1
//	4  16  KEK id (the KEK's CKA_ID)
//	20 12  GCM IV, fresh random per seal
//	32  n  ciphertext (same length as the plaintext)
//	32+n 16 GCM tag
//
// GCM's additional data is the 32-byte header followed by the caller's AAD,
// so the header cannot be changed without failing authentication, and the
// fixed header length keeps the concatenation unambiguous.
const (
	blobMagic      = "CSB"
	blobVersion1   = 1
	kekIDLen       = 16
	gcmIVLen       = 12
	gcmTagLen      = 16
	blobHeaderLen  = len(blobMagic) + 1 + kekIDLen + gcmIVLen
	blobMinLen     = blobHeaderLen + gcmTagLen
	kekValueLen    = 32 // AES-256
	maxSealPayload = 1 << 24
)

// Sealer seals and opens data with one KEK that lives in the token. It is
// safe for concurrent use.
type Sealer struct {
	tok    *Token
	label  string
	id     []byte
	handle pkcs11.ObjectHandle
}

// KeyAttributes are the security-relevant attributes of a key as the token
// reports them.
type KeyAttributes struct {
	Label            string `json:"label"`
	ID               string `json:"id"` // hex CKA_ID
	Class            string `json:"class"`
	KeyType          string `json:"key_type"`
	ValueLen         uint   `json:"value_len,omitempty"`
	Token            bool   `json:"token"`
	Private          bool   `json:"private"`
	Sensitive        bool   `json:"sensitive"`
	Extractable      bool   `json:"extractable"`
	AlwaysSensitive  bool   `json:"always_sensitive"`
	NeverExtractable bool   `json:"never_extractable"`
}

// Safe reports whether the attributes guarantee the key value never left
// the token in the clear and never can.
func (a KeyAttributes) Safe() bool {
	return a.Token && a.Sensitive && !a.Extractable && a.AlwaysSensitive && a.NeverExtractable
}

// CreateKEK generates an AES-256 KEK inside the token with CKA_TOKEN,
// CKA_SENSITIVE=true and CKA_EXTRACTABLE=false set explicitly (SoftHSM
// defaults CKA_SENSITIVE to false), wrap/unwrap disabled. It returns
// ErrKeyExists if a secret key with this label is present.
func (t *Token) CreateKEK(label string) (*Sealer, error) {
	if label == "" {
		return nil, fmt.Errorf("hsm: empty KEK label")
	}
	t.keys.Lock()
	defer t.keys.Unlock()
	id := make([]byte, kekIDLen)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("hsm: random: %w", err)
	}
	err := t.withSession(func(sh pkcs11.SessionHandle) error {
		hs, err := t.findObjects(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		})
		if err != nil {
			return t.wrap("find KEK", err)
		}
		if len(hs) > 0 {
			return fmt.Errorf("%w: a secret key labelled %q is in token %q", ErrKeyExists, label, t.info.Label)
		}
		_, err = t.ctx.GenerateKey(sh,
			[]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
			[]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, kekValueLen),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
				pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			})
		if err != nil {
			return t.wrap("generate KEK", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t.KEK(label)
}

// KEK finds the AES KEK labelled label. It refuses (ErrUnsafeKey) a key that
// is not an AES-256 token key with CKA_ALWAYS_SENSITIVE and
// CKA_NEVER_EXTRACTABLE true, because such a key may exist outside the token.
// It returns ErrKeyNotFound if there is none.
func (t *Token) KEK(label string) (*Sealer, error) {
	var s *Sealer
	err := t.withSession(func(sh pkcs11.SessionHandle) error {
		h, err := t.findOne(sh, "secret key", label, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		})
		if err != nil {
			if isPKCS11(err) {
				return t.wrap("find KEK", err)
			}
			return err
		}
		a, err := t.keyAttributes(sh, h)
		if err != nil {
			return t.wrap("read KEK attributes", err)
		}
		switch {
		case a.KeyType != "AES" || a.ValueLen != kekValueLen:
			return fmt.Errorf("%w: KEK %q is %s/%d bytes, want AES/%d", ErrUnsafeKey, label, a.KeyType, a.ValueLen, kekValueLen)
		case !a.Safe():
			return fmt.Errorf("%w: KEK %q: token=%t sensitive=%t extractable=%t always_sensitive=%t never_extractable=%t",
				ErrUnsafeKey, label, a.Token, a.Sensitive, a.Extractable, a.AlwaysSensitive, a.NeverExtractable)
		}
		id, _ := hex.DecodeString(a.ID)
		if len(id) != kekIDLen {
			return fmt.Errorf("%w: KEK %q has a %d-byte CKA_ID, want %d (not created by custody)", ErrUnsafeKey, label, len(id), kekIDLen)
		}
		s = &Sealer{tok: t, label: label, id: id, handle: h}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func isPKCS11(err error) bool { _, ok := rvOf(err); return ok }

// keyAttributes reads the security-relevant attributes of a key object.
func (t *Token) keyAttributes(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (KeyAttributes, error) {
	m, err := t.getAttrs(sh, h, pkcs11.CKA_CLASS, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_LABEL, pkcs11.CKA_ID,
		pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE,
		pkcs11.CKA_ALWAYS_SENSITIVE, pkcs11.CKA_NEVER_EXTRACTABLE)
	if err != nil {
		return KeyAttributes{}, err
	}
	a := KeyAttributes{
		Label:            string(m[pkcs11.CKA_LABEL]),
		ID:               hex.EncodeToString(m[pkcs11.CKA_ID]),
		Class:            className(attrUint(m[pkcs11.CKA_CLASS])),
		KeyType:          keyTypeName(attrUint(m[pkcs11.CKA_KEY_TYPE])),
		Token:            attrBool(m[pkcs11.CKA_TOKEN]),
		Private:          attrBool(m[pkcs11.CKA_PRIVATE]),
		Sensitive:        attrBool(m[pkcs11.CKA_SENSITIVE]),
		Extractable:      attrBool(m[pkcs11.CKA_EXTRACTABLE]),
		AlwaysSensitive:  attrBool(m[pkcs11.CKA_ALWAYS_SENSITIVE]),
		NeverExtractable: attrBool(m[pkcs11.CKA_NEVER_EXTRACTABLE]),
	}
	if attrUint(m[pkcs11.CKA_CLASS]) == pkcs11.CKO_SECRET_KEY {
		v, err := t.getAttrs(sh, h, pkcs11.CKA_VALUE_LEN)
		if err != nil {
			return KeyAttributes{}, err
		}
		a.ValueLen = attrUint(v[pkcs11.CKA_VALUE_LEN])
	}
	return a, nil
}

// Label returns the KEK's label.
func (s *Sealer) Label() string { return s.label }

// ID returns the KEK's CKA_ID, which every blob it seals carries.
func (s *Sealer) ID() []byte { return bytes.Clone(s.id) }

// Attributes reads the KEK's attributes from the token again.
func (s *Sealer) Attributes() (KeyAttributes, error) {
	var a KeyAttributes
	err := s.tok.withSession(func(sh pkcs11.SessionHandle) error {
		var err error
		a, err = s.tok.keyAttributes(sh, s.handle)
		if err != nil {
			return s.tok.wrap("read KEK attributes", err)
		}
		return nil
	})
	return a, err
}

// Seal encrypts plaintext with AES-256-GCM inside the token under a fresh
// random IV, authenticating aad (which is not stored in the blob: Open needs
// the same aad). Random 96-bit IVs keep the GCM collision bound (2^-32) for
// up to 2^32 seals per KEK, far beyond a custody node's share count.
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	if len(plaintext) > maxSealPayload {
		return nil, fmt.Errorf("hsm: seal: %d bytes is more than the %d-byte limit", len(plaintext), maxSealPayload)
	}
	header := make([]byte, blobHeaderLen, blobHeaderLen+len(plaintext)+gcmTagLen)
	copy(header, blobMagic)
	header[3] = blobVersion1
	copy(header[4:], s.id)
	iv := header[4+kekIDLen : blobHeaderLen]
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("hsm: random: %w", err)
	}
	var ct []byte
	err := s.tok.withSession(func(sh pkcs11.SessionHandle) error {
		params := pkcs11.NewGCMParams(bytes.Clone(iv), gcmAAD(header, aad), gcmTagLen*8)
		defer params.Free()
		if err := s.tok.ctx.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, s.handle); err != nil {
			return s.tok.wrap("seal: C_EncryptInit", err)
		}
		var err error
		ct, err = s.tok.ctx.Encrypt(sh, plaintext)
		if err != nil {
			return s.tok.wrap("seal: C_Encrypt", err)
		}
		// A token that ignores our IV and picks its own would make the blob
		// unopenable; refuse rather than store it.
		if got := params.IV(); got != nil && !bytes.Equal(got, iv) {
			return fmt.Errorf("hsm: seal: token replaced the GCM IV")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ct) != len(plaintext)+gcmTagLen {
		return nil, fmt.Errorf("hsm: seal: token returned %d bytes for %d bytes of plaintext", len(ct), len(plaintext))
	}
	return append(header, ct...), nil
}

// Open checks and decrypts a blob made by Seal with the same KEK and aad.
// Errors: ErrMalformedBlob (empty, truncated, not a blob), ErrUnknownVersion,
// ErrWrongKEK (sealed under another KEK), ErrAuthFailed (aad differs or the
// blob was modified).
func (s *Sealer) Open(blob, aad []byte) ([]byte, error) {
	hdr, err := ParseBlobHeader(blob)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(hdr.KEKID, s.id) {
		return nil, fmt.Errorf("%w: blob KEK id %x, this KEK (%q) is %x", ErrWrongKEK, hdr.KEKID, s.label, s.id)
	}
	var pt []byte
	err = s.tok.withSession(func(sh pkcs11.SessionHandle) error {
		params := pkcs11.NewGCMParams(bytes.Clone(hdr.IV), gcmAAD(blob[:blobHeaderLen], aad), gcmTagLen*8)
		defer params.Free()
		if err := s.tok.ctx.DecryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, s.handle); err != nil {
			return s.tok.wrap("open: C_DecryptInit", err)
		}
		var err error
		pt, err = s.tok.ctx.Decrypt(sh, blob[blobHeaderLen:])
		switch {
		case err == nil:
			return nil
		case isRV(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID), isRV(err, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE),
			isRV(err, pkcs11.CKR_GENERAL_ERROR) && !tokenGone(err):
			// SoftHSM 2.6 reports a GCM tag mismatch as CKR_GENERAL_ERROR,
			// other tokens as CKR_ENCRYPTED_DATA_INVALID; the header was
			// already checked, so what is left is a wrong AAD or modified bytes.
			return fmt.Errorf("%w: %w", ErrAuthFailed, err)
		default:
			return s.tok.wrap("open: C_Decrypt", err)
		}
	})
	if err != nil {
		return nil, err
	}
	return pt, nil
}

// gcmAAD is the GCM additional data: the fixed-length header, then the
// caller's AAD.
func gcmAAD(header, aad []byte) []byte {
	out := make([]byte, 0, len(header)+len(aad))
	return append(append(out, header...), aad...)
}

// BlobHeader is the parsed, unauthenticated header of a sealed blob.
type BlobHeader struct {
	Version byte
	KEKID   []byte
	IV      []byte
}

// ParseBlobHeader checks the framing of a sealed blob without the key: it
// is what Open checks first, and lets tools tell which KEK a blob needs. The
// header is only authenticated by a successful Open.
func ParseBlobHeader(blob []byte) (BlobHeader, error) {
	switch {
	case len(blob) == 0:
		return BlobHeader{}, fmt.Errorf("%w: empty", ErrMalformedBlob)
	case len(blob) < len(blobMagic)+1 || string(blob[:len(blobMagic)]) != blobMagic:
		return BlobHeader{}, fmt.Errorf("%w: not a custody sealed blob (bad magic)", ErrMalformedBlob)
	case blob[3] != blobVersion1:
		return BlobHeader{}, fmt.Errorf("%w: version %d (this build reads version %d)", ErrUnknownVersion, blob[3], blobVersion1)
	case len(blob) < blobMinLen:
		return BlobHeader{}, fmt.Errorf("%w: truncated: %d bytes, at least %d needed", ErrMalformedBlob, len(blob), blobMinLen)
	}
	return BlobHeader{
		Version: blob[3],
		KEKID:   bytes.Clone(blob[4 : 4+kekIDLen]),
		IV:      bytes.Clone(blob[4+kekIDLen : blobHeaderLen]),
	}, nil
}
