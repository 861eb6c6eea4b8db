package hsm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
)

// pointOf returns the uncompressed SEC 1 point of the private scalar d on c.
func pointOf(t testing.TB, c Curve, d uint64) []byte {
	t.Helper()
	scalar := new(big.Int).SetUint64(d).FillBytes(make([]byte, 32))
	switch c {
	case Secp256k1:
		priv, _ := btcec.PrivKeyFromBytes(scalar)
		return priv.PubKey().SerializeUncompressed()
	case P256:
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
		if err != nil {
			t.Fatal(err)
		}
		point, err := priv.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return point
	}
	t.Fatalf("no test points for %v", c)
	return nil
}

// pointsByFirstXByte returns, for every value of the first byte of X, one
// point on c whose X starts with it, from the scalars 1, 2, 3, ...
func pointsByFirstXByte(t testing.TB, c Curve) [256][]byte {
	t.Helper()
	var out [256][]byte
	found := 0
	for d := uint64(1); found < 256; d++ {
		p := pointOf(t, c, d)
		if out[p[1]] == nil {
			out[p[1]] = p
			found++
		}
	}
	return out
}

// derOctetString is CKA_EC_POINT as PKCS#11 2.40 specifies it: the point in
// a DER OCTET STRING.
func derOctetString(t testing.TB, point []byte) []byte {
	t.Helper()
	der, err := asn1.Marshal(point)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// checkSetPoint checks that setPoint accepts v on c and decodes it to point.
func checkSetPoint(t *testing.T, c Curve, v, point []byte) {
	t.Helper()
	k := &ECKey{curve: c}
	if err := k.setPoint(v); err != nil {
		t.Fatalf("%v: setPoint(%x): %v", c, v, err)
	}
	if !bytes.Equal(k.point, point) {
		t.Fatalf("%v: setPoint(%x) decoded point %x, want %x", c, v, k.point, point)
	}
	x, y := new(big.Int).SetBytes(point[1:33]), new(big.Int).SetBytes(point[33:])
	if k.pub == nil || k.pub.X.Cmp(x) != 0 || k.pub.Y.Cmp(y) != 0 {
		t.Fatalf("%v: setPoint(%x): public key %+v does not match the point", c, v, k.pub)
	}
	if (c == Secp256k1) != (k.k1 != nil) {
		t.Fatalf("%v: setPoint(%x): btcec key set=%t", c, v, k.k1 != nil)
	}
}

// TestSetPointRawWithX3F is the regression test for a raw 65-byte point
// whose X starts with 0x3f: 04 3f ... reads as a complete DER OCTET STRING
// of 63 bytes, which setPoint used to take for the wrapped form and then
// refuse for its length (TestFaultSignatureChecks failed 1 run in 256).
func TestSetPointRawWithX3F(t *testing.T) {
	for _, c := range []Curve{Secp256k1, P256} {
		point := pointsByFirstXByte(t, c)[0x3f]
		var inner []byte
		if rest, err := asn1.Unmarshal(point, &inner); err != nil || len(rest) != 0 || len(inner) != 63 {
			t.Fatalf("%v: raw point %x is not also a complete DER OCTET STRING; the test lost its point", c, point)
		}
		checkSetPoint(t, c, point, point)
		checkSetPoint(t, c, derOctetString(t, point), point)
	}
}

// TestSetPointEveryFirstXByte: both encodings of CKA_EC_POINT are accepted
// whatever byte X starts with, on both curves.
func TestSetPointEveryFirstXByte(t *testing.T) {
	for _, c := range []Curve{Secp256k1, P256} {
		for b, point := range pointsByFirstXByte(t, c) {
			t.Run(c.String()+"/x0="+strconv.FormatUint(uint64(b), 16), func(t *testing.T) {
				checkSetPoint(t, c, point, point)
				checkSetPoint(t, c, derOctetString(t, point), point)
			})
		}
	}
}

// TestSetPointRefusesNonPoints: anything but an uncompressed point on the
// key's curve, raw or in a DER OCTET STRING, is refused with an error that
// names the curve and the length.
func TestSetPointRefusesNonPoints(t *testing.T) {
	for _, c := range []Curve{Secp256k1, P256} {
		point := pointsByFirstXByte(t, c)[0x3f]
		offCurve := bytes.Clone(point)
		offCurve[64] ^= 1
		other := Secp256k1
		if c == Secp256k1 {
			other = P256
		}
		otherPoint := pointsByFirstXByte(t, other)[0x3f]
		compressed := append([]byte{2 + point[64]&1}, point[1:33]...)
		hybrid := append([]byte{6 + point[64]&1}, point[1:]...)
		der := derOctetString(t, point)
		for name, v := range map[string][]byte{
			"empty":                {},
			"raw truncated":        point[:64],
			"raw plus a byte":      append(bytes.Clone(point), 0),
			"raw off the curve":    offCurve,
			"raw other curve":      otherPoint,
			"raw compressed":       compressed,
			"raw hybrid":           hybrid,
			"raw 04 3f zeros":      append([]byte{4, 0x3f}, make([]byte, 63)...),
			"DER off the curve":    derOctetString(t, offCurve),
			"DER other curve":      derOctetString(t, otherPoint),
			"DER compressed":       derOctetString(t, compressed),
			"DER hybrid":           derOctetString(t, hybrid),
			"DER truncated":        der[:len(der)-1],
			"DER trailing byte":    append(bytes.Clone(der), 0),
			"DER twice":            derOctetString(t, der),
			"DER long-form length": append([]byte{4, 0x81, 65}, point...),
			"DER constructed":      append([]byte{0x24, 65}, point...),
			"DER BIT STRING":       append([]byte{3, 66, 0}, point...),
		} {
			k := &ECKey{curve: c}
			err := k.setPoint(v)
			if err == nil {
				t.Errorf("%v: %s: setPoint(%x) accepted it as %x", c, name, v, k.point)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, c.String()) || !strings.Contains(msg, strconv.Itoa(len(v))+" bytes") {
				t.Errorf("%v: %s: error does not name the curve and the length (%d bytes): %v", c, name, len(v), err)
			}
			if k.pub != nil || k.k1 != nil || k.point != nil {
				t.Errorf("%v: %s: refused, but the key was changed", c, name)
			}
		}
	}
}

// FuzzParseECPoint feeds arbitrary CKA_EC_POINT values to parseECPoint on
// secp256k1 or P-256: no panic; it accepts exactly the uncompressed points on
// the curve, raw or in a complete DER OCTET STRING (checked against a
// reference framing over the curve libraries' own parsers); an accepted
// point decodes the same from either encoding; a refusal names the curve
// and the length.
func FuzzParseECPoint(f *testing.F) {
	for _, c := range []Curve{Secp256k1, P256} {
		point := pointsByFirstXByte(f, c)[0x3f]
		f.Add(point, c == P256)
		f.Add(derOctetString(f, point), c == P256)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{4, 0x3f}, true)
	f.Fuzz(func(t *testing.T, v []byte, onP256 bool) {
		c := Secp256k1
		if onP256 {
			c = P256
		}
		// The reference: a 65-byte 04 || X || Y that the curve's library
		// parses, raw or as the whole content of a DER OCTET STRING.
		valid := func(b []byte) bool {
			if len(b) != 65 || b[0] != 4 {
				return false
			}
			if c == P256 {
				_, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
				return err == nil
			}
			_, err := btcec.ParsePubKey(b)
			return err == nil
		}
		var inner []byte
		rest, err := asn1.Unmarshal(v, &inner)
		derOK := err == nil && len(rest) == 0 && valid(inner)
		rawOK := valid(v)
		if derOK && rawOK {
			t.Fatalf("%v: %x is a valid point both raw and DER-wrapped", c, v)
		}
		point, pub, k1, err := parseECPoint(c, v)
		if err != nil {
			if derOK || rawOK {
				t.Fatalf("%v: refused a valid point (raw=%t, DER=%t) %x: %v", c, rawOK, derOK, v, err)
			}
			if msg := err.Error(); !strings.Contains(msg, c.String()) || !strings.Contains(msg, strconv.Itoa(len(v))+" bytes") {
				t.Fatalf("%v: error does not name the curve and the length (%d bytes): %v", c, len(v), err)
			}
			return
		}
		switch {
		case rawOK && !bytes.Equal(point, v), derOK && !bytes.Equal(point, inner):
			t.Fatalf("%v: %x decoded to %x", c, v, point)
		case !rawOK && !derOK:
			t.Fatalf("%v: accepted %x as %x, the reference refuses it", c, v, point)
		}
		x, y := new(big.Int).SetBytes(point[1:33]), new(big.Int).SetBytes(point[33:])
		if pub == nil || pub.X.Cmp(x) != 0 || pub.Y.Cmp(y) != 0 || (c == Secp256k1) != (k1 != nil) {
			t.Fatalf("%v: public key does not match the point %x", c, point)
		}
		der, err := asn1.Marshal(point)
		if err != nil {
			t.Fatal(err)
		}
		for _, enc := range [][]byte{point, der} {
			if p, _, _, err := parseECPoint(c, enc); err != nil || !bytes.Equal(p, point) {
				t.Fatalf("%v: point %x accepted as %x but its encoding %x gives %x, %v", c, point, v, enc, p, err)
			}
		}
	})
}
