package eth

import (
	"bytes"
	"testing"
)

// FuzzParseUnsigned: arbitrary bytes never panic; whatever parses is
// canonical (Bytes() returns the input) and re-parses to the same payload.
func FuzzParseUnsigned(f *testing.F) {
	f.Add([]byte{0x02, 0xc0})
	f.Add([]byte{0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseUnsigned(b)
		if err != nil {
			return
		}
		if !bytes.Equal(u.Bytes(), b) {
			t.Fatalf("accepted non-canonical %x", b)
		}
		again, err := ParseUnsigned(u.Bytes())
		if err != nil || again.PayloadHash() != u.PayloadHash() {
			t.Fatalf("re-parse: %v", err)
		}
		if err := Compare(u.Description(), again.Description()); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseSigned: arbitrary bytes never panic; whatever parses has a
// low-S signature, a recovered sender and a canonical encoding.
func FuzzParseSigned(f *testing.F) {
	f.Add([]byte{0x02, 0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSigned(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Bytes(), b) {
			t.Fatalf("accepted non-canonical %x", b)
		}
		d := s.Description()
		if d.From == nil || *d.From != s.From() {
			t.Fatal("signed description without sender")
		}
		if _, err := ParseUnsigned(s.Unsigned().Bytes()); err != nil {
			t.Fatalf("unsigned part does not re-parse: %v", err)
		}
	})
}
