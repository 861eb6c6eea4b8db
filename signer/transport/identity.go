package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/custody-dev/custody/pki"
)

// ErrRefused is wrapped when a peer's certificate does not chain to the
// cluster CA, is not a node certificate, or names a node that is not in the
// peer map (or, when dialling, not the node meant).
var ErrRefused = errors.New("transport: peer refused")

// serverTLS accepts clients whose node certificate names a node in the peer
// map and passes Config.Authorize; the certificate check is pki's, the one
// raft uses.
func (t *Transport) serverTLS() *tls.Config {
	return t.cfg.TLS.NodeTLS(func(p pki.Peer) error {
		if _, ok := t.cfg.Peers[p.Node()]; !ok {
			return fmt.Errorf("%w: node %q is not a peer", ErrRefused, p.ID)
		}
		return t.authorize(p)
	})
}

// clientTLS accepts only the server whose node ID is want and that passes
// Config.Authorize.
func (t *Transport) clientTLS(want pki.NodeID) *tls.Config {
	expect := pki.ExpectNode(want)
	return t.cfg.TLS.ClientTLS(pki.RoleNode, func(p pki.Peer) error {
		if err := expect(p); err != nil {
			return err
		}
		return t.authorize(p)
	})
}

func (t *Transport) authorize(p pki.Peer) error {
	if t.cfg.Authorize == nil {
		return nil
	}
	if err := t.cfg.Authorize(p); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return nil
}

// identify returns the authenticated node ID of a completed handshake.
func (t *Transport) identify(c net.Conn) (pki.NodeID, error) {
	p, err := pki.PeerOf(c, t.cfg.TLS.CA)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if p.Role != pki.RoleNode {
		return "", fmt.Errorf("%w: %s is not a node", ErrRefused, p)
	}
	return p.Node(), nil
}
