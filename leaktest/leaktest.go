// Package leaktest finds secrets in captured logs (test support only).
//
// A test registers every secret it can get its hands on — HSM PINs, private
// keys, share scalars, sealed blobs, webhook secrets — in a [Secrets]; each
// is kept in every encoding it could leak in: the raw string, lower- and
// upper-case hex, standard and URL base64 with and without padding, Go's
// []byte formatting ("[1 2 3]"), and for integers decimal. [Secrets.Check]
// then fails the test for each secret found in a text, naming the secret
// and the line and printing the line with the secret masked.
//
// Forms shorter than [MinForm] characters and binary secrets shorter than
// [MinBytes] are not kept (they would match by chance); every secret worth
// looking for is longer.
//
// [Log] is an io.Writer a test hands to a logger to capture every line.
package leaktest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"
)

// MinForm is the shortest encoding of a secret that is looked for, and
// MinBytes the shortest binary secret.
const (
	MinForm  = 12
	MinBytes = 8
)

// Secrets are the secrets a test looks for. Safe for concurrent use.
type Secrets struct {
	mu    sync.Mutex
	forms map[string]string // encoding → the secret's name
	names map[string]bool
}

func (s *Secrets) add(name string, forms ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forms == nil {
		s.forms, s.names = map[string]string{}, map[string]bool{}
	}
	for _, f := range forms {
		if len(f) >= MinForm {
			if _, dup := s.forms[f]; !dup {
				s.forms[f] = name
			}
			s.names[name] = true
		}
	}
}

// Bytes adds a binary secret in its hex, base64 and []byte forms, and as
// is when it is printable text.
func (s *Secrets) Bytes(name string, b []byte) {
	if len(b) < MinBytes {
		return
	}
	h := hex.EncodeToString(b)
	forms := []string{h, strings.ToUpper(h),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		fmt.Sprint(b)}
	if printable(b) {
		forms = append(forms, string(b))
	}
	s.add(name, forms...)
}

// String adds a text secret (a PIN, a password, a webhook secret) as is
// and in the encodings of its bytes. One trailing newline is dropped.
func (s *Secrets) String(name, v string) {
	v = strings.TrimSuffix(strings.TrimSuffix(v, "\n"), "\r")
	s.add(name, v)
	s.Bytes(name, []byte(v))
}

// Int adds a secret integer (a key scalar, a prime): decimal, and its
// big-endian bytes in every binary form.
func (s *Secrets) Int(name string, v *big.Int) {
	if v == nil || v.Sign() == 0 {
		return
	}
	s.add(name, v.String(), v.Text(16), strings.ToUpper(v.Text(16)))
	s.Bytes(name, v.Bytes())
}

// PrivateKey adds a private key: the scalar of an ECDSA key, the seed and
// private key of an Ed25519 key, and the PKCS #8 DER of any key.
func (s *Secrets) PrivateKey(name string, k crypto.PrivateKey) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		s.Int(name, k.D)
	case ed25519.PrivateKey:
		s.Bytes(name+" (seed)", k.Seed())
		s.Bytes(name, k)
	}
	if der, err := x509.MarshalPKCS8PrivateKey(k); err == nil {
		s.Bytes(name+" (PKCS#8)", der)
	}
}

// PEM adds every block of a PEM file (its DER bytes, and each base64 line
// of its body), and the key inside a private key block.
func (s *Secrets) PEM(name string, data []byte) {
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return
		}
		s.Bytes(name, blk.Bytes)
		for _, line := range strings.Split(string(pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: blk.Bytes})), "\n") {
			if !strings.HasPrefix(line, "-----") {
				s.add(name, line)
			}
		}
		if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
			s.PrivateKey(name, k)
		} else if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
			s.PrivateKey(name, k)
		}
	}
}

// Names are the secrets added, sorted.
func (s *Secrets) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.names))
	for n := range s.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Leak is one secret found in a text.
type Leak struct {
	// Secret is the secret's name.
	Secret string
	// Line is the 1-based line of the text it is on; Masked that line with
	// every form of every secret replaced by <name>.
	Line   int
	Masked string
}

// Find returns every secret found in text, one Leak per secret and line.
func (s *Secrets) Find(text []byte) []Leak {
	s.mu.Lock()
	forms := make(map[string]string, len(s.forms))
	for f, n := range s.forms {
		forms[f] = n
	}
	s.mu.Unlock()
	// Most texts hold no secret: one search per form over the whole text,
	// then a line-by-line look only for the forms found.
	var hit []string
	for f := range forms {
		if bytes.Contains(text, []byte(f)) {
			hit = append(hit, f)
		}
	}
	if len(hit) == 0 {
		return nil
	}
	// Longest first, so masking a form does not leave a longer one's rest.
	slices.SortFunc(hit, func(a, b string) int { return len(b) - len(a) })
	var out []Leak
	for i, line := range strings.Split(string(text), "\n") {
		seen := map[string]bool{}
		masked := line
		for _, f := range hit {
			if strings.Contains(line, f) {
				if !seen[forms[f]] {
					seen[forms[f]] = true
					out = append(out, Leak{Secret: forms[f], Line: i + 1})
				}
				masked = strings.ReplaceAll(masked, f, "<"+forms[f]+">")
			}
		}
		for j := len(out) - len(seen); j < len(out); j++ {
			out[j].Masked = masked
		}
	}
	return out
}

// Check fails t for every secret found in text (what names the text: a
// node's log, a file).
func (s *Secrets) Check(t testing.TB, what string, text []byte) {
	t.Helper()
	for _, l := range s.Find(text) {
		t.Errorf("%s, line %d, holds the secret %q: %s", what, l.Line, l.Secret, l.Masked)
	}
}

func printable(b []byte) bool {
	for _, r := range string(b) {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Log captures what a logger writes, for Secrets.Check and for tests that
// look for a line. Safe for concurrent use; Tee, if set before the first
// write, also receives everything (stderr when debugging).
type Log struct {
	Tee io.Writer

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps p (and writes it to Tee).
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	if l.Tee != nil {
		_, _ = l.Tee.Write(p)
	}
	return len(p), nil
}

// Bytes is a copy of everything written so far.
func (l *Log) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

// Lines are the complete lines written so far.
func (l *Log) Lines() []string {
	b := l.Bytes()
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else {
		return nil
	}
	return strings.Split(string(b), "\n")
}
