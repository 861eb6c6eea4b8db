package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func mustCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func identity(t *testing.T, ca *CA, role Role, id string) Identity {
	t.Helper()
	c, k, err := ca.Issue(role, id, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ident, err := LoadIdentity(c, k, ca.PEM())
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

// forged issues a certificate from ca with any subject and usages, as a
// misconfigured or hostile issuer could.
func forged(t *testing.T, ca *CA, subject pkix.Name, usage []x509.ExtKeyUsage) Identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: subject, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, CA: ca.Pool()}
}

// handshake runs a TLS handshake between client and server configurations
// over loopback TCP and returns the server's view of the client.
func handshake(t *testing.T, ca *x509.CertPool, server, client *tls.Config) (Peer, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := tls.Dial("tcp", ln.Addr().String(), client)
		if err != nil {
			return
		}
		// TLS 1.3: the client finishes first; read until the server judged
		// our certificate and closed.
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.Copy(io.Discard, c)
		_ = c.Close()
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	srv := tls.Server(raw, server)
	p, err := PeerOf(srv, ca)
	_ = srv.Close()
	<-done
	return p, err
}

func TestVerifyPeerRoles(t *testing.T) {
	ca := mustCA(t, "cluster")
	for _, role := range []Role{RoleNode, RoleBackend, RoleOperator} {
		id := identity(t, ca, role, "p-"+string(role))
		leaf, err := x509.ParseCertificate(id.Cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		p, err := VerifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}, ca.Pool())
		if err != nil || p.ID != "p-"+string(role) || p.Role != role || p.KeyFingerprint != KeyFingerprint(leaf) {
			t.Fatalf("%s: %+v, %v", role, p, err)
		}
		for _, other := range []Role{RoleNode, RoleBackend, RoleOperator} {
			_, err := VerifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}, ca.Pool(), other)
			if (other == role) != (err == nil) {
				t.Fatalf("%s certificate where %s required: %v", role, other, err)
			}
		}
	}
	if _, _, err := ca.Issue("auditor", "x", time.Now(), time.Hour); err == nil {
		t.Fatal("issued a certificate of an unknown role")
	}
	if _, _, err := ca.Issue(RoleNode, "", time.Now(), time.Hour); err == nil {
		t.Fatal("issued a certificate without an ID")
	}
}

func TestVerifyPeerRefuses(t *testing.T) {
	ca := mustCA(t, "cluster")
	other := mustCA(t, "attacker")
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	cases := map[string]Identity{
		"foreign CA":            identity(t, other, RoleNode, "n2"),
		"node without server":   forged(t, ca, pkix.Name{CommonName: "n2", OrganizationalUnit: []string{"node"}}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}),
		"empty ID":              forged(t, ca, pkix.Name{OrganizationalUnit: []string{"node"}}, both),
		"no role":               forged(t, ca, pkix.Name{CommonName: "n2"}, both),
		"two roles":             forged(t, ca, pkix.Name{CommonName: "n2", OrganizationalUnit: []string{"node", "operator"}}, both),
		"unknown role":          forged(t, ca, pkix.Name{CommonName: "n2", OrganizationalUnit: []string{"root"}}, both),
		"backend as node":       identity(t, ca, RoleBackend, "n2"),
		"operator without auth": forged(t, ca, pkix.Name{CommonName: "op", OrganizationalUnit: []string{"operator"}}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}),
	}
	server := identity(t, ca, RoleNode, "n1")
	for name, id := range cases {
		t.Run(name, func(t *testing.T) {
			id.CA = ca.Pool() // only the server's view of the client is under test
			if _, err := handshake(t, ca.Pool(), server.NodeTLS(nil), id.ClientTLS(RoleNode, nil)); err == nil {
				t.Fatalf("server accepted a %s client", name)
			}
		})
	}
	t.Run("good node", func(t *testing.T) {
		p, err := handshake(t, ca.Pool(), server.NodeTLS(nil), identity(t, ca, RoleNode, "n2").ClientTLS(RoleNode, nil))
		if err != nil || p.Node() != "n2" || p.Role != RoleNode {
			t.Fatalf("good node: %+v, %v", p, err)
		}
	})
}

func TestAuthorizerAndExpectNode(t *testing.T) {
	ca := mustCA(t, "cluster")
	server := identity(t, ca, RoleNode, "n1")
	denied := errors.New("not in the node set")
	auth := func(p Peer) error {
		if p.ID == "n3" {
			return denied
		}
		return nil
	}
	if _, err := handshake(t, ca.Pool(), server.NodeTLS(auth), identity(t, ca, RoleNode, "n3").ClientTLS(RoleNode, nil)); err == nil {
		t.Fatal("unauthorized n3 accepted")
	}
	if _, err := handshake(t, ca.Pool(), server.NodeTLS(auth), identity(t, ca, RoleNode, "n2").ClientTLS(RoleNode, nil)); err != nil {
		t.Fatalf("authorized n2 refused: %v", err)
	}
	// A client that dialled n9 refuses n1 answering.
	if _, err := handshake(t, ca.Pool(), server.NodeTLS(nil), identity(t, ca, RoleNode, "n2").ClientTLS(RoleNode, ExpectNode("n9"))); err == nil {
		t.Fatal("client accepted a server other than the one it dialled")
	}
}

func TestLoadIdentityRefusesGarbage(t *testing.T) {
	ca := mustCA(t, "cluster")
	c, k, err := ca.IssueNode("n1", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(c, k, []byte("not a CA")); err == nil {
		t.Fatal("loaded an identity without a CA")
	}
	if _, err := LoadIdentity(c, []byte("not a key"), ca.PEM()); err == nil {
		t.Fatal("loaded an identity without a key")
	}
	if err := (Identity{}).Valid(); err == nil {
		t.Fatal("empty identity valid")
	}
}

// TestVerifyPeerAtTheGivenClock: validity is checked at the time the
// caller gives (the node's clock), not the wall clock: a certificate valid
// now is refused at a time past its NotAfter or before its NotBefore, and
// one expired by the wall clock passes at a time within its validity.
func TestVerifyPeerAtTheGivenClock(t *testing.T) {
	ca := mustCA(t, "cluster")
	issued := time.Now().Add(-30 * time.Minute)
	cs, leaf := peerState(t, ca, RoleBackend, "backend", issued, 20*time.Minute) // NotBefore issued-1h, NotAfter issued+20m
	if _, err := VerifyPeer(cs, ca.Pool(), RoleBackend); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("expired by the wall clock: %v", err)
	}
	if p, err := VerifyPeerAt(cs, ca.Pool(), issued, RoleBackend); err != nil || p.ID != "backend" {
		t.Fatalf("within its validity by the given clock: %+v, %v", p, err)
	}
	for name, at := range map[string]time.Time{
		"after NotAfter":   leaf.NotAfter.Add(time.Second),
		"before NotBefore": leaf.NotBefore.Add(-time.Second),
		"no time":          {},
	} {
		if _, err := VerifyPeerAt(cs, ca.Pool(), at, RoleBackend); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestVerifyPeerWindow: the window a verification holds for is the
// intersection of the chain's validities, the CA's included (a leaf
// outliving its CA holds only until the CA's NotAfter), both ends
// included; at any time in it VerifyPeerAt finds the same peer, at any
// time outside it none; a refused verification has no window.
func TestVerifyPeerWindow(t *testing.T) {
	ca := mustCA(t, "cluster") // NotBefore now-1h, NotAfter now+1h
	issued := time.Now().Add(30 * time.Minute)
	cs, leaf := peerState(t, ca, RoleOperator, "alice", issued, time.Hour) // NotBefore now-30m, NotAfter now+1h30m
	v, err := VerifyPeerWindow(cs, ca.Pool(), time.Now(), RoleOperator)
	if err != nil || v.Peer.ID != "alice" || v.Peer.Role != RoleOperator {
		t.Fatalf("%+v, %v", v, err)
	}
	if !v.NotBefore.Equal(leaf.NotBefore) || !v.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Fatalf("window %v..%v, want the leaf's NotBefore %v and the CA's NotAfter %v", v.NotBefore, v.NotAfter, leaf.NotBefore, ca.Cert.NotAfter)
	}
	for _, at := range []time.Time{v.NotBefore, v.NotAfter, v.NotBefore.Add(time.Minute)} {
		if !v.HoldsAt(at) {
			t.Errorf("does not hold at %v", at)
		}
		if p, err := VerifyPeerAt(cs, ca.Pool(), at, RoleOperator); err != nil || p != v.Peer {
			t.Errorf("at %v, within the window: %+v, %v", at, p, err)
		}
	}
	for _, at := range []time.Time{v.NotBefore.Add(-time.Second), v.NotAfter.Add(time.Second), {}} {
		if v.HoldsAt(at) {
			t.Errorf("holds at %v", at)
		}
		if _, err := VerifyPeerAt(cs, ca.Pool(), at, RoleOperator); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("at %v, outside the window: %v", at, err)
		}
	}
	if v, err := VerifyPeerWindow(cs, ca.Pool(), time.Now(), RoleBackend); err == nil || v != (Verification{}) {
		t.Fatalf("refused, yet %+v, %v", v, err)
	}
}

// peerState issues a certificate of role and id from ca (issued at, valid
// for valid) and returns it as a TLS connection's peer, with its leaf.
func peerState(t *testing.T, ca *CA, role Role, id string, at time.Time, valid time.Duration) (tls.ConnectionState, *x509.Certificate) {
	t.Helper()
	c, _, err := ca.Issue(role, id, at, valid)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(c)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}, leaf
}
