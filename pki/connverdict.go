package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync/atomic"
	"time"
)

// Chain verification once per TLS connection.
//
// The HTTPS servers (the API and the node RPC) check a request's client
// certificate on every request, an open keep-alive connection's included.
// The X.509 chain verification (ECDSA signature checks) is the costly part
// of that, and its answer cannot change while the connection stays open,
// except by time: a connection's peer certificates are fixed at its
// handshake.
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
// So a server keeps the verdict in a slot of the connection's context
// ([ConnContext]) and [VerifyConnPeer] reuses it for a later request on
// that connection while the caller's clock is within the verified chain's
// validity window ([Verification]: the latest NotBefore to the earliest
// NotAfter); past either end (a certificate that expired while the
// connection stayed open, a clock set back) it verifies again, and refuses
// as before. As defence in depth the slot is reused only for the same CA
// pool, the same wanted roles and byte-identical peer certificates. A
// failed verification empties the slot; only successes are kept.
// Everything else a server checks (a principal's registry entry, the node
// set, rate limits, roles per endpoint) stays per request. The slot dies
// with the connection, so there is at most one verdict per open
// connection.

// connSlotKey is the context key of a connection's *connSlot.
type connSlotKey struct{}

// connSlot is one connection's slot: the last successful verification of
// its peer certificates, or nil. HTTP/2 serves a connection's requests
// concurrently, hence the atomic.
type connSlot struct{ v atomic.Pointer[connVerdict] }

// connVerdict is a verification and what it was made of.
type connVerdict struct {
	Verification
	ca    *x509.CertPool
	roles []Role
	certs []*x509.Certificate
}

// ConnContext is an http.Server.ConnContext: it gives each connection the
// slot in which its peer certificates' chain verification is kept for its
// later requests. A server without it verifies the chain on every request.
func ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connSlotKey{}, new(connSlot))
}

// VerifyConnPeer is [VerifyPeerWindow] through the slot of the request
// context ctx ([ConnContext]): a verdict the same connection earned is
// reused while now is within its window. verified reports whether the
// chain was verified by this call (not reused).
func VerifyConnPeer(ctx context.Context, cs tls.ConnectionState, ca *x509.CertPool, now time.Time, want ...Role) (p Peer, verified bool, err error) {
	slot, _ := ctx.Value(connSlotKey{}).(*connSlot)
	if slot != nil {
		if v := slot.v.Load(); v != nil && v.ca == ca && v.HoldsAt(now) && sameRoles(v.roles, want) && sameCerts(v.certs, cs.PeerCertificates) {
			return v.Peer, false, nil
		}
	}
	v, err := VerifyPeerWindow(cs, ca, now, want...)
	if slot != nil {
		if err != nil {
			slot.v.Store(nil)
		} else {
			slot.v.Store(&connVerdict{Verification: v, ca: ca, roles: want, certs: cs.PeerCertificates})
		}
	}
	return v.Peer, true, err
}

func sameRoles(a, b []Role) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
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
