package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/custody-dev/custody/ledger/raftnet"
	"github.com/custody-dev/custody/signer/tss"
)

// ErrRefused is wrapped when a peer's certificate does not chain to the
// cluster CA, is not a node certificate, or names a node that is not in the
// peer map (or, when dialling, not the node meant).
var ErrRefused = errors.New("transport: peer refused")

// nodeID checks the peer certificate the way raftnet does (chain to the
// cluster CA only, both server and client auth, CommonName is the node ID)
// and returns the node ID. raftnet has no exported check on a
// tls.ConnectionState, which a handshake callback needs, so it is repeated
// here; after the handshake raftnet.PeerID re-derives the ID and the two
// must agree (see identify).
func nodeID(cs tls.ConnectionState, ca *x509.CertPool) (tss.PartyID, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: no certificate", ErrRefused)
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca, Intermediates: inter, KeyUsages: usages}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrRefused, err)
	}
	for _, u := range usages {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			return "", fmt.Errorf("%w: not a node certificate (needs server and client auth)", ErrRefused)
		}
	}
	if leaf.Subject.CommonName == "" {
		return "", fmt.Errorf("%w: certificate has no node ID", ErrRefused)
	}
	return tss.PartyID(leaf.Subject.CommonName), nil
}

// serverTLS accepts clients whose node ID is in the peer map.
func (t *Transport) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cfg.TLS.Cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// The chain and node ID are checked in VerifyConnection (hostnames
		// do not apply, see the package documentation).
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := nodeID(cs, t.cfg.TLS.CA)
			if err != nil {
				return err
			}
			if _, ok := t.cfg.Peers[id]; !ok {
				return fmt.Errorf("%w: node %q is not a peer", ErrRefused, id)
			}
			return nil
		},
	}
}

// clientTLS accepts only the server whose node ID is want.
func (t *Transport) clientTLS(want tss.PartyID) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{t.cfg.TLS.Cert},
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := nodeID(cs, t.cfg.TLS.CA)
			if err != nil {
				return err
			}
			if id != want {
				return fmt.Errorf("%w: dialled %q but the server is %q", ErrRefused, want, id)
			}
			return nil
		},
	}
}

// identify returns the authenticated node ID of a completed handshake,
// derived by raftnet so raft and tss agree on who a certificate names.
func (t *Transport) identify(c net.Conn) (tss.PartyID, error) {
	id, err := raftnet.PeerID(c, t.cfg.TLS.CA)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return tss.PartyID(id), nil
}
