package eth

import "testing"

// BenchmarkBuildParseAssemble: build an ETH transfer, re-parse it as a
// signer does, sign (btcec) and assemble with sender recovery.
func BenchmarkBuildParseAssemble(b *testing.B) {
	k, wallet := newKey(b)
	in := baseIntent(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u, err := NewUnsigned(in)
		if err != nil {
			b.Fatal(err)
		}
		p, err := ParseUnsigned(u.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		r, s, v := signRSV(b, k, p.SigningHash())
		if _, err := p.Assemble(r, s, v, wallet); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseSigned: parse, recover sender, describe.
func BenchmarkParseSigned(b *testing.B) {
	k, wallet := newKey(b)
	u, _ := NewUnsigned(baseIntent(b))
	r, s, v := signRSV(b, k, u.SigningHash())
	st, err := u.Assemble(r, s, v, wallet)
	if err != nil {
		b.Fatal(err)
	}
	raw := st.Bytes()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ParseSigned(raw); err != nil {
			b.Fatal(err)
		}
	}
}
