package rest

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/custody-dev/custody/pki"
)

// Chain verification once per TLS connection.
//
// authenticate checks a request's client certificate at the node's clock
// on every request, an open keep-alive connection's included. The X.509
// chain verification (ECDSA signature checks) was the costly part of that
// and its answer cannot change while the connection stays open, except by
// time: a connection's peer certificates are fixed at its handshake.
//
//   - ServerTLS requires TLS 1.3, which has no renegotiation; Go's server
//     refuses renegotiation at any version (crypto/tls
//     Conn.handleRenegotiation answers no_renegotiation when it is not the
//     client), and it implements no TLS 1.3 post-handshake client
//     authentication (it never sends a post-handshake CertificateRequest;
//     a post-handshake Certificate is an unexpected message that ends the
//     connection). So a client cannot present other certificates later on
//     the same connection.
//   - net/http takes the connection's tls.ConnectionState once, after the
//     handshake, and hands that same value to every request of the
//     connection (Request.TLS; HTTP/2 likewise).
//
// So authenticate keeps the verdict in a slot of the connection's context
// (ConnContext) and reuses it for a later request on that connection while
// the node's clock is within the verified chain's validity window
// (pki.Verification: the latest NotBefore to the earliest NotAfter); past
// either end (a certificate that expired while the connection stayed open,
// a clock set back) it verifies again and answers 401 as before. As
// defence in depth the slot is reused only for the same CA pool and
// byte-identical peer certificates. A failed verification empties the
// slot; only successes are kept. Everything else authenticate checks (the
// principal's registry entry, the rate limit, the endpoint's roles) runs
// on every request: a suspension still refuses the next request on an open
// connection. The slot dies with the connection, so the cache holds at
// most one verdict per open connection.

// connAuthKey is the context key of a connection's *connAuth.
type connAuthKey struct{}

// connAuth is one connection's slot: the last successful verification of
// its peer certificates, or nil. HTTP/2 serves a connection's requests
// concurrently, hence the atomic.
type connAuth struct{ v atomic.Pointer[connVerdict] }

// connVerdict is a verification and what it was made of.
type connVerdict struct {
	pki.Verification
	ca    *x509.CertPool
	certs []*x509.Certificate
}

// ConnContext is the http.Server.ConnContext of the API ([NewServer] sets
// it): it gives each connection the slot in which its peer certificates'
// chain verification is kept for its later requests. A handler served
// without it verifies the chain on every request.
func ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connAuthKey{}, new(connAuth))
}

// chainVerifications counts the chain verifications verifyRequest ran (a
// seam for the tests, export_test.go).
var chainVerifications atomic.Int64

// verifyRequest is the request's peer by verifyPeer at the node's clock,
// through the connection's slot when it has one.
func (s *server) verifyRequest(r *http.Request) (pki.Peer, error) {
	now := s.cfg.Now()
	slot, _ := r.Context().Value(connAuthKey{}).(*connAuth)
	if slot != nil {
		if v := slot.v.Load(); v != nil && v.ca == s.cfg.CA && v.HoldsAt(now) && sameCerts(v.certs, r.TLS.PeerCertificates) {
			return v.Peer, nil
		}
	}
	chainVerifications.Add(1)
	v, err := pki.VerifyPeerWindow(*r.TLS, s.cfg.CA, now, listenerRoles...)
	if slot != nil {
		if err != nil {
			slot.v.Store(nil)
		} else {
			slot.v.Store(&connVerdict{Verification: v, ca: s.cfg.CA, certs: r.TLS.PeerCertificates})
		}
	}
	return v.Peer, err
}

// sameCerts reports whether a and b are the same certificates (the same
// values when net/http hands the connection's state on, as it does).
func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}
