// Package raftnet is the mutually authenticated TLS stream layer under the
// ledger's raft transport.
//
// # Identity
//
// Every node holds a certificate issued by the cluster CA. The certificate's
// Subject CommonName is the node's raft server ID, and the certificate must be
// valid for both server and client authentication. Both ends of every
// connection verify the other's chain against the cluster CA only (never the
// system roots) and extract the peer's node ID; an optional [Authorizer] then
// decides whether that ID may speak raft here (for example: only members of
// the current configuration or a pending join).
//
// Hostnames are deliberately not part of the check: raft dials addresses, and
// a node is who its CA-issued certificate says it is, wherever it listens.
package raftnet

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// ErrUnauthenticated is returned (wrapped) when a peer presents no
// certificate, one not issued by the cluster CA, or one without a node ID.
var ErrUnauthenticated = errors.New("raftnet: peer not authenticated")

// Authorizer decides whether an authenticated node ID may connect. It is called
// on every handshake, in both directions.
type Authorizer func(nodeID string) error

// Config describes one node's TLS identity.
type Config struct {
	// Cert is this node's certificate and key; its CommonName is the node ID.
	Cert tls.Certificate
	// CA is the pool of cluster CA certificates peers must chain to.
	CA *x509.CertPool
	// Authorize, if set, is consulted after chain verification.
	Authorize Authorizer
}

// Layer is a [raft.StreamLayer] over mutually authenticated TLS.
type Layer struct {
	ln        net.Listener
	advertise net.Addr
	tlsConf   *tls.Config
}

var _ raft.StreamLayer = (*Layer)(nil)

// Listen binds bind (host:port; port 0 picks one) and returns the layer. The
// advertised address is the bound address.
func Listen(bind string, cfg Config) (*Layer, error) {
	if cfg.CA == nil {
		return nil, errors.New("raftnet: no cluster CA")
	}
	if len(cfg.Cert.Certificate) == 0 {
		return nil, errors.New("raftnet: no node certificate")
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cfg.Cert},
		// The standard hostname check does not apply (see package doc); the
		// chain and identity are verified in verifyPeer for both directions.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection below
		ClientAuth:         tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPeer(cs, cfg.CA, cfg.Authorize)
			return err
		},
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raftnet: listen %s: %w", bind, err)
	}
	return &Layer{ln: ln, advertise: ln.Addr(), tlsConf: tc}, nil
}

// PeerID returns the authenticated node ID of a connection made or accepted by
// a Layer, completing the handshake if needed.
func PeerID(c net.Conn, ca *x509.CertPool) (string, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return "", fmt.Errorf("%w: not a TLS connection", ErrUnauthenticated)
	}
	if err := tc.Handshake(); err != nil {
		return "", fmt.Errorf("raftnet: handshake: %w", err)
	}
	return verifyPeer(tc.ConnectionState(), ca, nil)
}

func verifyPeer(cs tls.ConnectionState, ca *x509.CertPool, auth Authorizer) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: no certificate", ErrUnauthenticated)
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         ca,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	if !hasUsage(leaf, x509.ExtKeyUsageServerAuth) || !hasUsage(leaf, x509.ExtKeyUsageClientAuth) {
		return "", fmt.Errorf("%w: certificate is not a node certificate (needs server and client auth)", ErrUnauthenticated)
	}
	id := leaf.Subject.CommonName
	if id == "" {
		return "", fmt.Errorf("%w: certificate has no node ID", ErrUnauthenticated)
	}
	if auth != nil {
		if err := auth(id); err != nil {
			return "", fmt.Errorf("raftnet: node %q not authorized: %w", id, err)
		}
	}
	return id, nil
}

func hasUsage(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, have := range c.ExtKeyUsage {
		if have == u {
			return true
		}
	}
	return false
}

// Accept waits for the next inbound connection and completes its TLS handshake
// (so an unauthenticated peer never reaches raft). A failed handshake closes
// that connection and Accept keeps waiting.
func (l *Layer) Accept() (net.Conn, error) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, l.tlsConf)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			continue
		}
		_ = tc.SetDeadline(time.Time{})
		return tc, nil
	}
}

// Close stops listening.
func (l *Layer) Close() error { return l.ln.Close() }

// Addr is the advertised address.
func (l *Layer) Addr() net.Addr { return l.advertise }

// Dial connects to a peer and completes the mutually authenticated handshake
// within timeout.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), l.tlsConf)
	if err != nil {
		return nil, fmt.Errorf("raftnet: dial %s: %w", address, err)
	}
	return c, nil
}
