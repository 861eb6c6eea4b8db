package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// Identity is one principal's TLS identity: its certificate and key, and
// the cluster CA its peers must chain to.
type Identity struct {
	// Cert is this principal's certificate and key.
	Cert tls.Certificate
	// CA is the pool of cluster CA certificates peers must chain to.
	CA *x509.CertPool
}

// LoadIdentity builds an Identity from PEM-encoded certificate, key and CA.
func LoadIdentity(certPEM, keyPEM, caPEM []byte) (Identity, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return Identity{}, fmt.Errorf("pki: key pair: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return Identity{}, errors.New("pki: no CA certificate in PEM")
	}
	return Identity{Cert: cert, CA: pool}, nil
}

// Valid reports a usable identity (a certificate and a CA).
func (id Identity) Valid() error {
	if id.CA == nil {
		return errors.New("pki: no cluster CA")
	}
	if len(id.Cert.Certificate) == 0 {
		return errors.New("pki: no certificate")
	}
	return nil
}

// Authorizer decides whether an authenticated peer may connect; it runs on
// every handshake, after [VerifyPeer].
type Authorizer func(Peer) error

// VerifyPeer is the one peer-certificate check: the chain leads to the
// cluster CA only, every certificate of it is valid now (time.Now), the
// certificate has an ID and exactly one role, the role is one of want (any
// role when want is empty), and a node certificate is valid for both
// server and client authentication.
func VerifyPeer(cs tls.ConnectionState, ca *x509.CertPool, want ...Role) (Peer, error) {
	return VerifyPeerAt(cs, ca, time.Now(), want...)
}

// VerifyPeerAt is [VerifyPeer] at the time now: a listener that decides
// on the node's own clock (the HTTPS API) refuses a certificate that is
// expired or not yet valid by that clock.
func VerifyPeerAt(cs tls.ConnectionState, ca *x509.CertPool, now time.Time, want ...Role) (Peer, error) {
	v, err := VerifyPeerWindow(cs, ca, now, want...)
	return v.Peer, err
}

// Verification is a successful [VerifyPeerAt] and the times it holds for.
type Verification struct {
	// Peer is the authenticated peer.
	Peer Peer
	// NotBefore and NotAfter are the latest NotBefore and the earliest
	// NotAfter of the certificates of the chain that verified, the CA's
	// included: at any time in between that chain verifies again, and
	// nothing else VerifyPeerAt checks depends on the time, so it would
	// find the same Peer for the same certificates and pool.
	NotBefore, NotAfter time.Time
}

// HoldsAt reports whether now is within v's validity window (both ends
// included, as x509 has them). A clock set back before NotBefore is
// outside it, as one past NotAfter.
func (v Verification) HoldsAt(now time.Time) bool {
	return !now.IsZero() && !now.Before(v.NotBefore) && !now.After(v.NotAfter)
}

// VerifyPeerWindow is [VerifyPeerAt] that also returns the window of
// times its verdict holds for: a caller that sees the same certificates
// again (a request on the same TLS connection) may reuse the verdict
// while its clock is in the window, instead of verifying the chain again.
func VerifyPeerWindow(cs tls.ConnectionState, ca *x509.CertPool, now time.Time, want ...Role) (Verification, error) {
	p, chain, err := verifyPeerAt(cs, ca, now, want)
	if err != nil {
		return Verification{}, err
	}
	v := Verification{Peer: p, NotBefore: chain[0].NotBefore, NotAfter: chain[0].NotAfter}
	for _, c := range chain[1:] {
		if c.NotBefore.After(v.NotBefore) {
			v.NotBefore = c.NotBefore
		}
		if c.NotAfter.Before(v.NotAfter) {
			v.NotAfter = c.NotAfter
		}
	}
	return v, nil
}

// verifyPeerAt is VerifyPeerAt returning the chain that verified (leaf
// first, the CA's certificate last).
func verifyPeerAt(cs tls.ConnectionState, ca *x509.CertPool, now time.Time, want []Role) (Peer, []*x509.Certificate, error) {
	if now.IsZero() {
		return Peer{}, nil, fmt.Errorf("%w: no time to verify the certificate at", ErrUnauthenticated)
	}
	if len(cs.PeerCertificates) == 0 {
		return Peer{}, nil, fmt.Errorf("%w: no certificate", ErrUnauthenticated)
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	// Any usage passes the chain check; the usages each role needs are
	// checked below.
	opts := x509.VerifyOptions{Roots: ca, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return Peer{}, nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	if len(leaf.Subject.OrganizationalUnit) != 1 || !Role(leaf.Subject.OrganizationalUnit[0]).valid() {
		return Peer{}, nil, fmt.Errorf("%w: certificate has no single custody role (OU %q)", ErrUnauthenticated, leaf.Subject.OrganizationalUnit)
	}
	p := Peer{ID: leaf.Subject.CommonName, Role: Role(leaf.Subject.OrganizationalUnit[0]), KeyFingerprint: KeyFingerprint(leaf)}
	if p.ID == "" {
		return Peer{}, nil, fmt.Errorf("%w: certificate has no ID", ErrUnauthenticated)
	}
	if len(want) > 0 && !slices.Contains(want, p.Role) {
		return Peer{}, nil, fmt.Errorf("%w: %s certificate where %v is required", ErrUnauthenticated, p, want)
	}
	need := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if p.Role == RoleNode {
		need = append(need, x509.ExtKeyUsageServerAuth)
	}
	for _, u := range need {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			return Peer{}, nil, fmt.Errorf("%w: %s certificate lacks the extended key usages of its role", ErrUnauthenticated, p)
		}
	}
	// Verify returns at least one chain when it succeeds; the first
	// bounds the window (any chain valid now would do: each is valid
	// throughout its own window).
	return p, chains[0], nil
}

func (id Identity) check(cs tls.ConnectionState, role Role, auth Authorizer) error {
	p, err := VerifyPeer(cs, id.CA, role)
	if err != nil {
		return err
	}
	if auth != nil {
		if err := auth(p); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnauthorized, p, err)
		}
	}
	return nil
}

// ServerTLS is the server side of a mutually authenticated TLS 1.3
// connection: clients must present a certificate of role that auth (may be
// nil) accepts.
func (id Identity) ServerTLS(role Role, auth Authorizer) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// The standard hostname check does not apply (package doc); the
		// chain, role and ID are verified in VerifyConnection.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection
		VerifyConnection:   func(cs tls.ConnectionState) error { return id.check(cs, role, auth) },
	}
}

// ClientTLS is the client side: the server must present a certificate of
// role that auth (may be nil) accepts.
func (id Identity) ClientTLS(role Role, auth Authorizer) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{id.Cert},
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection
		VerifyConnection:   func(cs tls.ConnectionState) error { return id.check(cs, role, auth) },
	}
}

// NodeTLS is the one configuration for node-to-node links (raft, tss, node
// RPC), for dialling and for accepting (a client ignores ClientAuth): the peer must hold a node certificate that auth
// (may be nil) accepts.
func (id Identity) NodeTLS(auth Authorizer) *tls.Config {
	return id.ServerTLS(RoleNode, auth)
}

// ExpectNode is an Authorizer accepting only the node want (a client that
// dialled want refuses anyone else answering).
func ExpectNode(want NodeID) Authorizer {
	return func(p Peer) error {
		if p.Node() != want {
			return fmt.Errorf("dialled %q but the server is %q", want, p.ID)
		}
		return nil
	}
}

// PeerOf returns the authenticated peer of a TLS connection made with a
// configuration from this package, completing the handshake if needed.
func PeerOf(c net.Conn, ca *x509.CertPool) (Peer, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return Peer{}, fmt.Errorf("%w: not a TLS connection", ErrUnauthenticated)
	}
	if err := tc.Handshake(); err != nil {
		return Peer{}, fmt.Errorf("pki: handshake: %w", err)
	}
	return VerifyPeer(tc.ConnectionState(), ca)
}
