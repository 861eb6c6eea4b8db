package leaktest_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	"github.com/custody-dev/custody/leaktest"
)

// TestFindsEveryEncoding: a secret planted in a log line in any of the
// encodings is found and masked; a clean text and short forms find
// nothing.
func TestFindsEveryEncoding(t *testing.T) {
	pin := "0123456789abcdef0123456789abcdef"
	raw := []byte("\x00\x01secret-bytes\xff\xfe")
	scalar, _ := new(big.Int).SetString("98765432109876543210987654321098765432109876543210", 10)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	var s leaktest.Secrets
	s.String("pin", pin+"\n")
	s.Bytes("blob", raw)
	s.Int("scalar", scalar)
	s.PEM("node key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	s.PrivateKey("device key", ed)
	s.String("short", "1234") // too short to look for
	if got := s.Names(); strings.Join(got, ",") != "blob,device key,device key (PKCS#8),device key (seed),node key,node key (PKCS#8),pin,scalar" {
		t.Fatalf("names %v", got)
	}

	planted := map[string]string{
		"pin raw":          pin,
		"pin hex":          hex.EncodeToString([]byte(pin)),
		"blob hex":         hex.EncodeToString(raw),
		"blob HEX":         strings.ToUpper(hex.EncodeToString(raw)),
		"blob base64":      base64.StdEncoding.EncodeToString(raw),
		"blob base64url":   base64.RawURLEncoding.EncodeToString(raw),
		"blob %v":          fmt.Sprint(raw),
		"scalar decimal":   scalar.String(),
		"scalar hex":       scalar.Text(16),
		"ecdsa D hex":      hex.EncodeToString(ec.D.Bytes()),
		"ecdsa D decimal":  ec.D.String(),
		"ed25519 seed b64": base64.StdEncoding.EncodeToString(ed.Seed()),
		"ed25519 key hex":  hex.EncodeToString(ed),
		"pkcs8 DER base64": base64.StdEncoding.EncodeToString(der),
		"PEM body line":    strings.Split(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "\n")[1],
	}
	for what, form := range planted {
		text := []byte("{\"msg\":\"clean\"}\n{\"msg\":\"x\",\"v\":\"" + form + "\"}\n")
		leaks := s.Find(text)
		if len(leaks) == 0 || leaks[0].Line != 2 {
			t.Errorf("%s: found %+v", what, leaks)
			continue
		}
		if strings.Contains(leaks[0].Masked, form) || !strings.Contains(leaks[0].Masked, "<") {
			t.Errorf("%s: not masked: %s", what, leaks[0].Masked)
		}
	}
	if l := s.Find([]byte("request 1234 of 1234\nnothing here\n")); len(l) != 0 {
		t.Fatalf("clean text: %+v", l)
	}
}

// TestLogCapturesJSONLines: a JSON slog handler writing to a Log gives
// its lines back, and a secret logged through it is found.
func TestLogCapturesJSONLines(t *testing.T) {
	var l leaktest.Log
	log := slog.New(slog.NewJSONHandler(&l, nil))
	log.Info("one", "n", 1)
	log.Info("two", "blob", []byte("0123456789abcdefXYZ"))
	lines := l.Lines()
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	}
	var s leaktest.Secrets
	s.Bytes("blob", []byte("0123456789abcdefXYZ"))
	if leaks := s.Find(l.Bytes()); len(leaks) != 1 || leaks[0].Line != 2 || leaks[0].Secret != "blob" {
		t.Fatalf("leaks %+v", leaks)
	}
}
