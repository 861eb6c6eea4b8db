package ledger

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/pki"
)

// StreamLayer is raft's stream layer over mutually authenticated TLS 1.3
// between node certificates of the cluster (see package pki). The caller
// owns the listener, so the daemon decides where raft listens and can share
// the node identity with its other components; [Config.Stream] takes any
// raft.StreamLayer (tests wrap one to inject faults).
type StreamLayer struct {
	ln   net.Listener
	conf *tls.Config
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// NewStreamLayer serves raft on ln with the node identity id. auth (may be
// nil) is asked about every authenticated peer, in both directions: for
// example, only nodes of the current node set.
func NewStreamLayer(ln net.Listener, id pki.Identity, auth pki.Authorizer) (*StreamLayer, error) {
	if err := id.Valid(); err != nil {
		return nil, fmt.Errorf("ledger: stream layer: %w", err)
	}
	return &StreamLayer{ln: ln, conf: id.NodeTLS(auth)}, nil
}

// ListenStream binds bind (host:port; port 0 picks one) and returns a
// StreamLayer on it.
func ListenStream(bind string, id pki.Identity, auth pki.Authorizer) (*StreamLayer, error) {
	if err := id.Valid(); err != nil {
		return nil, fmt.Errorf("ledger: stream layer: %w", err)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("ledger: listen %s: %w", bind, err)
	}
	return NewStreamLayer(ln, id, auth)
}

// Accept waits for the next inbound connection and completes its TLS
// handshake, so an unauthenticated peer never reaches raft. A failed
// handshake closes that connection and Accept keeps waiting.
func (l *StreamLayer) Accept() (net.Conn, error) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, l.conf)
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
func (l *StreamLayer) Close() error { return l.ln.Close() }

// Addr is the listener's address, which peers dial.
func (l *StreamLayer) Addr() net.Addr { return l.ln.Addr() }

// Dial connects to a peer and completes the mutually authenticated
// handshake within timeout.
func (l *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), l.conf)
	if err != nil {
		return nil, fmt.Errorf("ledger: dial %s: %w", address, err)
	}
	return c, nil
}
