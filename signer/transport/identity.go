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
// map; the certificate check is pki's, the one raft uses.
func (t *Transport) serverTLS() *tls.Config {
	return t.cfg.TLS.NodeTLS(func(p pki.Peer) error {
		if _, ok := t.cfg.Peers[p.Node()]; !ok {
			return fmt.Errorf("%w: node %q is not a peer", ErrRefused, p.ID)
		}
		return nil
	})
}

// clientTLS accepts only the server whose node ID is want.
func (t *Transport) clientTLS(want pki.NodeID) *tls.Config {
	return t.cfg.TLS.ClientTLS(pki.RoleNode, pki.ExpectNode(want))
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
