package hsm_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm"
)

// FuzzParseBlobHeader: arbitrary bytes never panic, and an accepted header
// is self-consistent.
func FuzzParseBlobHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("CSB"))
	f.Add(append([]byte("CSB\x01"), make([]byte, 44)...))
	f.Add(append([]byte("CSB\x02"), make([]byte, 44)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := hsm.ParseBlobHeader(b)
		if err != nil {
			if !errors.Is(err, hsm.ErrMalformedBlob) && !errors.Is(err, hsm.ErrUnknownVersion) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if h.Version != 1 || len(h.KEKID) != 16 || len(h.IV) != 12 || len(b) < 48 {
			t.Fatalf("accepted inconsistent header %+v from %d bytes", h, len(b))
		}
	})
}

// FuzzSealerOpen opens arbitrary blobs with a real SoftHSM KEK: no panic,
// a classified error, and nothing but the genuine blob ever opens.
func FuzzSealerOpen(f *testing.F) {
	cfg := softhsm.NewTestToken(f, "fuzz")
	tok, err := hsm.Open(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { tok.Close() })
	s, err := tok.CreateKEK("kek")
	if err != nil {
		f.Fatal(err)
	}
	genuine, err := s.Seal([]byte("secret share"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine, []byte("aad"))
	f.Add(genuine[:40], []byte("aad"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, blob, aad []byte) {
		pt, err := s.Open(blob, aad)
		if err == nil {
			if !bytes.Equal(blob, genuine) || !bytes.Equal(aad, []byte("aad")) || string(pt) != "secret share" {
				t.Fatalf("forged blob opened: %x", blob)
			}
			return
		}
		for _, want := range []error{hsm.ErrMalformedBlob, hsm.ErrUnknownVersion, hsm.ErrWrongKEK, hsm.ErrAuthFailed} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("unclassified error: %v", err)
	})
}
