package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func parsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNodeIDValidate(t *testing.T) {
	for _, id := range []NodeID{"n1", "node-1.eu_west", NodeID(strings.Repeat("a", 64))} {
		if err := id.Validate(); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []NodeID{"", NodeID(strings.Repeat("a", 65)), "n 1", "n/1", "n@1", "ñ"} {
		if err := id.Validate(); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}

// TestNodeCertificateAndFingerprint: a CA-issued node certificate yields
// its CN and the SHA-256 of its SubjectPublicKeyInfo; other roles, several
// OUs, a bad ID or missing usages are refused.
func TestNodeCertificateAndFingerprint(t *testing.T) {
	ca := mustCA(t, "c")
	certPEM, _, err := ca.IssueNode("n1", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := parsePEM(t, certPEM)
	id, err := NodeCertificate(c)
	if err != nil || id != "n1" {
		t.Fatalf("NodeCertificate = %q, %v", id, err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	fp := KeyFingerprint(c)
	if fp != hex.EncodeToString(sum[:]) {
		t.Fatalf("fingerprint %s", fp)
	}
	if err := ValidKeyFingerprint(fp); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", fp[:63], strings.ToUpper(fp), fp[:63] + "g", fp + "0"} {
		if ValidKeyFingerprint(bad) == nil {
			t.Errorf("fingerprint %q accepted", bad)
		}
	}

	backendPEM, _, err := ca.Issue(RoleBackend, "b1", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for name, c := range map[string]*x509.Certificate{
		"backend role":   parsePEM(t, backendPEM),
		"two roles":      forged(t, ca, pkix.Name{CommonName: "n2", OrganizationalUnit: []string{"node", "backend"}}, both).leaf(t),
		"bad id":         forged(t, ca, pkix.Name{CommonName: "n 2", OrganizationalUnit: []string{"node"}}, both).leaf(t),
		"client only":    forged(t, ca, pkix.Name{CommonName: "n2", OrganizationalUnit: []string{"node"}}, both[1:]).leaf(t),
		"no role at all": forged(t, ca, pkix.Name{CommonName: "n2"}, both).leaf(t),
	} {
		if id, err := NodeCertificate(c); err == nil {
			t.Errorf("%s: accepted as %q", name, id)
		}
	}
}

func (id Identity) leaf(t *testing.T) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(id.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}
