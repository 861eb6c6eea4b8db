package quorum

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"
)

type digestVectors struct {
	Valid []struct {
		Name        string `json:"name"`
		ClusterID   string `json:"cluster_id"`
		RequestID   string `json:"request_id"`
		PayloadHash string `json:"payload_hash"`
		Decision    string `json:"decision"`
		ExpiryUnix  int64  `json:"expiry_unix"`
		Encoding    string `json:"encoding"`
		Digest      string `json:"digest"`
	} `json:"valid"`
	Invalid []struct {
		Name     string `json:"name"`
		Encoding string `json:"encoding"`
	} `json:"invalid"`
	Signatures []struct {
		Name      string `json:"name"`
		Kind      string `json:"kind"`
		Seed      string `json:"seed"`
		PublicKey string `json:"public_key"`
		DeviceID  string `json:"device_id"`
		Digest    string `json:"digest"`
		Signature string `json:"signature"`
	} `json:"signatures"`
}

func loadVectors(t testing.TB) digestVectors {
	t.Helper()
	b, err := os.ReadFile("testdata/digest_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v digestVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Valid) == 0 || len(v.Invalid) == 0 || len(v.Signatures) == 0 {
		t.Fatal("vector file is incomplete")
	}
	return v
}

func TestDigestVectors(t *testing.T) {
	v := loadVectors(t)
	for _, tc := range v.Valid {
		t.Run(tc.Name, func(t *testing.T) {
			h, err := ParseHash(tc.PayloadHash)
			if err != nil {
				t.Fatal(err)
			}
			d, err := ParseDecision(tc.Decision)
			if err != nil {
				t.Fatal(err)
			}
			st := Statement{ClusterID: tc.ClusterID, RequestID: tc.RequestID, PayloadHash: h, Decision: d, Expiry: time.Unix(tc.ExpiryUnix, 0)}
			enc, err := st.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(enc); got != tc.Encoding {
				t.Fatalf("encoding\n got %s\nwant %s", got, tc.Encoding)
			}
			dg, err := st.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(dg[:]); got != tc.Digest {
				t.Fatalf("digest %s, want %s", got, tc.Digest)
			}
			back, err := DecodeStatement(enc)
			if err != nil {
				t.Fatal(err)
			}
			if back.ClusterID != st.ClusterID || back.RequestID != st.RequestID || back.PayloadHash != st.PayloadHash ||
				back.Decision != st.Decision || !back.Expiry.Equal(st.Expiry) {
				t.Fatalf("round trip: %+v != %+v", back, st)
			}
		})
	}
	for _, tc := range v.Invalid {
		t.Run("invalid/"+tc.Name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.Encoding)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeStatement(b); !errors.Is(err, ErrMalformedStatement) {
				t.Fatalf("DecodeStatement = %v, want ErrMalformedStatement", err)
			}
		})
	}
	for _, tc := range v.Signatures {
		t.Run("signature/"+tc.Name, func(t *testing.T) {
			seed, _ := hex.DecodeString(tc.Seed)
			k := ed25519.NewKeyFromSeed(seed)
			pub := k.Public().(ed25519.PublicKey)
			if hex.EncodeToString(pub) != tc.PublicKey {
				t.Fatalf("public key %x", pub)
			}
			if id := DeviceID(DeviceKind(tc.Kind), pub); id != tc.DeviceID {
				t.Fatalf("device id %s, want %s", id, tc.DeviceID)
			}
			dg, _ := ParseHash(tc.Digest)
			sig := ed25519.Sign(k, dg[:])
			if hex.EncodeToString(sig) != tc.Signature {
				t.Fatalf("signature %x", sig)
			}
			dev := Device{Kind: DeviceKind(tc.Kind), PublicKey: pub}
			if err := dev.VerifyDigest(dg, sig); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStatementEncodeRejects(t *testing.T) {
	ok := Statement{ClusterID: "c", RequestID: "r", Decision: Approve, Expiry: time.Unix(100, 0)}
	if _, err := ok.Encode(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(s *Statement){
		"sub-second expiry": func(s *Statement) { s.Expiry = s.Expiry.Add(time.Millisecond) },
		"zero expiry":       func(s *Statement) { s.Expiry = time.Time{} },
		"negative expiry":   func(s *Statement) { s.Expiry = time.Unix(-5, 0) },
		"no decision":       func(s *Statement) { s.Decision = 0 },
		"empty request":     func(s *Statement) { s.RequestID = "" },
		"newline in id":     func(s *Statement) { s.RequestID = "a\nb" },
		"non-ascii cluster": func(s *Statement) { s.ClusterID = "clüster" },
		"long request id":   func(s *Statement) { s.RequestID = string(bytes.Repeat([]byte("r"), 256)) },
	}
	for name, mut := range bad {
		s := ok
		mut(&s)
		if _, err := s.Encode(); !errors.Is(err, ErrMalformedStatement) {
			t.Errorf("%s: Encode = %v", name, err)
		}
		if _, err := s.Digest(); err == nil {
			t.Errorf("%s: Digest accepted", name)
		}
	}
}

// Changing any single field changes the digest (no field is left out).
func TestDigestBindsEveryField(t *testing.T) {
	base := Statement{ClusterID: "c1", RequestID: "r1", PayloadHash: Hash{1}, Decision: Approve, Expiry: time.Unix(1000, 0)}
	d0, _ := base.Digest()
	muts := []func(s *Statement){
		func(s *Statement) { s.ClusterID = "c2" },
		func(s *Statement) { s.RequestID = "r2" },
		func(s *Statement) { s.PayloadHash[31] = 1 },
		func(s *Statement) { s.Decision = Reject },
		func(s *Statement) { s.Expiry = s.Expiry.Add(time.Second) },
		// Moving a byte between adjacent strings must not collide.
		func(s *Statement) { s.ClusterID, s.RequestID = "c1r", "1" },
	}
	for i, m := range muts {
		s := base
		m(&s)
		d, err := s.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if d == d0 {
			t.Errorf("mutation %d does not change the digest", i)
		}
	}
}

// FuzzDecodeStatement: no panics; whatever decodes re-encodes to the same
// bytes (one canonical encoding per statement).
func FuzzDecodeStatement(f *testing.F) {
	for _, tc := range loadVectors(f).Valid {
		b, _ := hex.DecodeString(tc.Encoding)
		f.Add(b)
	}
	for _, tc := range loadVectors(f).Invalid {
		b, _ := hex.DecodeString(tc.Encoding)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeStatement(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedStatement) {
				t.Fatalf("error does not wrap ErrMalformedStatement: %v", err)
			}
			return
		}
		enc, err := st.Encode()
		if err != nil {
			t.Fatalf("decoded statement does not encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("non-canonical decode: %x -> %x", b, enc)
		}
	})
}

// FuzzStatementEncode: any statement that encodes decodes back to itself.
func FuzzStatementEncode(f *testing.F) {
	f.Add("cluster-prod-1", "wd-0001", []byte{1, 2, 3}, uint8(1), int64(1795000000))
	f.Add("c", "r", []byte{}, uint8(2), int64(1))
	f.Add("a b", "\x00", []byte{0xff}, uint8(0), int64(-1))
	f.Fuzz(func(t *testing.T, cluster, request string, hash []byte, dec uint8, exp int64) {
		var h Hash
		copy(h[:], hash)
		st := Statement{ClusterID: cluster, RequestID: request, PayloadHash: h, Decision: Decision(dec), Expiry: time.Unix(exp, 0)}
		enc, err := st.Encode()
		if err != nil {
			return
		}
		back, err := DecodeStatement(enc)
		if err != nil {
			t.Fatalf("encoded statement does not decode: %v", err)
		}
		if back.ClusterID != cluster || back.RequestID != request || back.PayloadHash != h || back.Decision != Decision(dec) || back.Expiry.Unix() != exp {
			t.Fatalf("round trip changed the statement: %+v", back)
		}
	})
}
