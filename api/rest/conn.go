package rest

import (
	"net/http"
	"sync/atomic"

	"github.com/custody-dev/custody/pki"
)

// ConnContext is the http.Server.ConnContext of the API ([NewServer] sets
// it): each connection's chain verification is kept for its later requests
// while the node's clock is within the chain's validity (pki.ConnContext,
// whose doc says why that is safe). A handler served without it verifies
// the chain on every request. The principal's registry entry, the rate
// limit and the endpoint's roles are checked on every request.
var ConnContext = pki.ConnContext

// chainVerifications counts the chain verifications verifyRequest ran (a
// seam for the tests, export_test.go).
var chainVerifications atomic.Int64

// verifyRequest is the request's peer at the node's clock, through the
// connection's slot when it has one.
func (s *server) verifyRequest(r *http.Request) (pki.Peer, error) {
	p, verified, err := pki.VerifyConnPeer(r.Context(), *r.TLS, s.cfg.CA, s.cfg.Now(), listenerRoles...)
	if verified {
		chainVerifications.Add(1)
	}
	return p, err
}
