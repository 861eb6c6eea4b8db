package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/custody-dev/custody/pki"
)

// Config describes one node's endpoint. Zero durations and sizes take the
// defaults named on each field.
type Config struct {
	// Self is this node's ID; it must equal the CommonName of TLS.Cert.
	Self pki.NodeID
	// Listen is the address to bind (host:port; port 0 picks one, see Addr).
	Listen string
	// Peers maps every other node's ID to the address it listens on. Only
	// these nodes may connect here, and only they can be sent to.
	Peers map[pki.NodeID]string
	// TLS is the node certificate and cluster CA (the identity raft uses).
	TLS pki.Identity
	// Authorize, if set, must also accept every peer, in both directions
	// (the daemon passes its ledger.NodeGate: only nodes of the node set,
	// with the key the set pins). Nil: the peer map alone decides.
	Authorize pki.Authorizer

	// DialTimeout bounds a TCP connect plus TLS handshake (default 5s).
	DialTimeout time.Duration
	// HandshakeTimeout bounds an inbound TLS handshake (default 5s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds writing one batch of frames (default 10s); a peer
	// that stops reading loses its connection rather than stalling Send.
	WriteTimeout time.Duration
	// FrameTimeout bounds receiving the rest of a frame once its length has
	// arrived (default 30s), so a stalled sender cannot pin a buffer forever.
	FrameTimeout time.Duration
	// BackoffMin and BackoffMax bound the redial delay (defaults 50ms, 5s).
	BackoffMin, BackoffMax time.Duration
	// QueueSize is the per-peer outbound queue in envelopes (default 256).
	QueueSize int
	// InboxSize is the buffer of the Receive channel (default 1024).
	InboxSize int
	// Logger receives connection events (refusals, framing errors,
	// reconnects); nil means slog.Default(). Nothing secret is logged.
	Logger *slog.Logger
}

// ErrConfig is wrapped by New for an unusable configuration.
var ErrConfig = errors.New("transport: bad config")

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Self == "" {
		return cfg, fmt.Errorf("%w: no Self", ErrConfig)
	}
	if cfg.TLS.CA == nil || len(cfg.TLS.Cert.Certificate) == 0 {
		return cfg, fmt.Errorf("%w: TLS needs a node certificate and the cluster CA", ErrConfig)
	}
	if cfg.Listen == "" {
		return cfg, fmt.Errorf("%w: no Listen address", ErrConfig)
	}
	peers := make(map[pki.NodeID]string, len(cfg.Peers))
	for id, addr := range cfg.Peers {
		if id == "" || addr == "" {
			return cfg, fmt.Errorf("%w: peer %q has address %q", ErrConfig, id, addr)
		}
		if id == cfg.Self {
			return cfg, fmt.Errorf("%w: Peers contains Self (%s)", ErrConfig, id)
		}
		peers[id] = addr
	}
	cfg.Peers = peers
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DialTimeout, 5*time.Second)
	def(&cfg.HandshakeTimeout, 5*time.Second)
	def(&cfg.WriteTimeout, 10*time.Second)
	def(&cfg.FrameTimeout, 30*time.Second)
	def(&cfg.BackoffMin, 50*time.Millisecond)
	def(&cfg.BackoffMax, 5*time.Second)
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.InboxSize <= 0 {
		cfg.InboxSize = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
