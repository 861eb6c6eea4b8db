package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("transport: closed")

// maxBatch bounds how many queued frames are written with one flush.
const maxBatch = 64

// acceptMagic is the only thing an acceptor ever writes: once, after it has
// authenticated and authorised the dialer. It also names the protocol
// version.
const acceptMagic = "CTT1"

// maxPendingHandshakes bounds unauthenticated inbound connections; more are
// closed at once rather than queued.
const maxPendingHandshakes = 64

// Stats counts connection and frame events since New.
type Stats struct {
	// Delivered counts envelopes put on the Receive channel (nil Env included).
	Delivered int64
	// MalformedEnvelopes counts frames that did not unmarshal (delivered as nil Env).
	MalformedEnvelopes int64
	// FrameErrors counts connections closed for an oversize, empty or cut frame.
	FrameErrors int64
	// Refused counts handshakes refused for the peer's identity, either direction.
	Refused int64
	// Dials and DialFailures count outbound connection attempts.
	Dials, DialFailures int64
	// Dropped counts envelopes given up after a failed write and a failed retry.
	Dropped int64
}

type counters struct {
	delivered, malformed, frameErrors, refused, dials, dialFailures, dropped atomic.Int64
}

// Transport is one node's mTLS endpoint. It implements tss.Transport and is
// safe for concurrent use; the engine must be the only reader of Receive.
type Transport struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	srvTLS *tls.Config
	peers  map[pki.NodeID]*peer
	inbox  chan tss.Delivery
	stats  counters
	// pending holds a slot per inbound connection still in its handshake.
	pending chan struct{}

	stop   chan struct{}
	ctx    context.Context // cancelled by Close; bounds dials and handshakes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	conns   map[net.Conn]struct{}   // every open connection, closed by Close
	inbound map[pki.NodeID]net.Conn // the newest inbound connection per peer

	// inboxMu orders Close's close(inbox) after Sends to self in flight.
	inboxMu sync.RWMutex
}

type peer struct {
	id    pki.NodeID
	addr  string
	queue chan []byte // marshalled envelopes
}

// New validates cfg, binds cfg.Listen and starts accepting peers.
// Outbound connections are made on the first Send to each peer.
func New(cfg Config) (*Transport, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", c.Listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:     c,
		log:     c.Logger.With("node", string(c.Self)),
		ln:      ln,
		peers:   make(map[pki.NodeID]*peer, len(c.Peers)),
		inbox:   make(chan tss.Delivery, c.InboxSize),
		pending: make(chan struct{}, maxPendingHandshakes),
		stop:    make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
		conns:   map[net.Conn]struct{}{},
		inbound: map[pki.NodeID]net.Conn{},
	}
	t.srvTLS = t.serverTLS()
	for id, addr := range c.Peers {
		p := &peer{id: id, addr: addr, queue: make(chan []byte, c.QueueSize)}
		t.peers[id] = p
		t.wg.Add(1)
		go t.writeLoop(p)
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// Addr is the bound listen address (useful with port 0).
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Self is this node's ID.
func (t *Transport) Self() pki.NodeID { return t.cfg.Self }

// Receive returns the channel of authenticated deliveries. It is closed by Close.
func (t *Transport) Receive() <-chan tss.Delivery { return t.inbox }

// Stats returns the event counters.
func (t *Transport) Stats() Stats {
	s := &t.stats
	return Stats{
		Delivered: s.delivered.Load(), MalformedEnvelopes: s.malformed.Load(),
		FrameErrors: s.frameErrors.Load(), Refused: s.refused.Load(),
		Dials: s.dials.Load(), DialFailures: s.dialFailures.Load(), Dropped: s.dropped.Load(),
	}
}

// Send queues env for node to. It blocks while that peer's queue is full,
// until ctx ends or the transport closes. Unknown nodes fail with
// tss.ErrUnknownPeer. An envelope to Self is delivered locally, as from Self.
func (t *Transport) Send(ctx context.Context, to pki.NodeID, env *tss.Envelope) error {
	select {
	case <-t.stop:
		return ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	raw, err := env.Marshal()
	if err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	if len(raw) > MaxFrame {
		return fmt.Errorf("transport: envelope of %d bytes exceeds the frame limit", len(raw))
	}
	if to == t.cfg.Self {
		return t.deliverSelf(ctx, raw)
	}
	p, ok := t.peers[to]
	if !ok {
		return fmt.Errorf("transport: send: %w: %s", tss.ErrUnknownPeer, to)
	}
	select {
	case p.queue <- raw:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.stop:
		return ErrClosed
	}
}

func (t *Transport) deliverSelf(ctx context.Context, raw []byte) error {
	t.inboxMu.RLock()
	defer t.inboxMu.RUnlock()
	env, err := tss.UnmarshalEnvelope(raw)
	if err != nil {
		env = nil
	}
	select {
	case t.inbox <- tss.Delivery{From: t.cfg.Self, Env: env}:
		t.stats.delivered.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.stop:
		return ErrClosed
	}
}

// Close stops listening, closes every connection, waits for all of the
// transport's goroutines and then closes the Receive channel. Envelopes still
// queued are discarded. Close is idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.stop)
	t.cancel()
	err := t.ln.Close()
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	t.inboxMu.Lock()
	close(t.inbox)
	t.inboxMu.Unlock()
	return err
}

// track registers c so Close closes it; false means the transport is
// closing and the caller must close c itself.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	_ = c.Close()
}

// sleep waits d or until Close; false means closed.
func (t *Transport) sleep(d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-t.stop:
		return false
	}
}

func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.stop:
				return
			default:
			}
			t.log.Warn("transport: accept failed", "err", err)
			if !t.sleep(t.cfg.BackoffMin) {
				return
			}
			continue
		}
		if !t.track(c) {
			_ = c.Close()
			return
		}
		select {
		case t.pending <- struct{}{}:
		default:
			t.log.Warn("transport: too many pending handshakes, closing", "remote", c.RemoteAddr().String())
			t.untrack(c)
			continue
		}
		t.wg.Add(1)
		go t.serveInbound(c)
	}
}

// serveInbound authenticates one inbound connection and delivers its frames
// in order, attributed to the certificate's node ID.
func (t *Transport) serveInbound(raw net.Conn) {
	defer t.wg.Done()
	defer t.untrack(raw)
	remote := raw.RemoteAddr().String()
	tc := tls.Server(raw, t.srvTLS)
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-t.pending
	var from pki.NodeID
	if err == nil {
		from, err = t.identify(tc)
	}
	if err != nil {
		if t.ctx.Err() != nil {
			return
		}
		t.stats.refused.Add(1)
		t.log.Warn("transport: inbound connection refused", "remote", remote, "err", err)
		return
	}
	// Tell the dialer it was accepted. TLS 1.3 lets a client finish its
	// handshake before the server has checked the client certificate, so
	// without this a refused dialer would write frames into the void.
	_ = raw.SetWriteDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	if _, err := tc.Write([]byte(acceptMagic)); err != nil {
		t.log.Debug("transport: accept ack failed", "peer", string(from), "err", err)
		return
	}
	_ = raw.SetWriteDeadline(time.Time{})
	t.mu.Lock()
	old := t.inbound[from]
	t.inbound[from] = raw
	t.mu.Unlock()
	if old != nil {
		// The peer keeps one outbound connection; a new one means the old
		// one is dead on its side.
		_ = old.Close()
	}
	defer func() {
		t.mu.Lock()
		if t.inbound[from] == raw {
			delete(t.inbound, from)
		}
		t.mu.Unlock()
	}()
	t.log.Debug("transport: peer connected", "peer", string(from), "remote", remote)

	br := bufio.NewReaderSize(tc, 64<<10)
	for {
		_ = raw.SetReadDeadline(time.Time{})
		body, err := readFrame(br, MaxFrame, func() {
			_ = raw.SetReadDeadline(time.Now().Add(t.cfg.FrameTimeout))
		})
		if err != nil {
			switch {
			case t.ctx.Err() != nil:
			case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
				t.log.Debug("transport: peer disconnected", "peer", string(from))
			default:
				if errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrEmptyFrame) || errors.Is(err, io.ErrUnexpectedEOF) {
					t.stats.frameErrors.Add(1)
				}
				t.log.Warn("transport: closing inbound connection", "peer", string(from), "remote", remote, "err", err)
			}
			return
		}
		env, err := tss.UnmarshalEnvelope(body)
		if err != nil {
			t.stats.malformed.Add(1)
			t.log.Warn("transport: malformed envelope", "peer", string(from), "bytes", len(body))
			env = nil
		}
		select {
		case t.inbox <- tss.Delivery{From: from, Env: env}:
			t.stats.delivered.Add(1)
		case <-t.stop:
			return
		}
	}
}

// outConn is an authenticated outbound connection. Only frames are written;
// a reader goroutine notices the peer closing it (for example on restart) so
// the next batch goes to a fresh connection instead of a dead socket.
type outConn struct {
	raw  net.Conn
	tc   *tls.Conn
	bw   *bufio.Writer
	dead chan struct{}
}

func (c *outConn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

func (c *outConn) write(batch [][]byte, timeout time.Duration) error {
	_ = c.raw.SetWriteDeadline(time.Now().Add(timeout))
	var hdr [4]byte
	for _, f := range batch {
		binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
		if _, err := c.bw.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := c.bw.Write(f); err != nil {
			return err
		}
	}
	return c.bw.Flush()
}

// writeLoop owns the peer's outbound connection: it dials when there is
// something to send, writes queued frames in batches and redials with
// backoff after a failure.
func (t *Transport) writeLoop(p *peer) {
	defer t.wg.Done()
	var conn *outConn
	defer func() {
		if conn != nil {
			t.untrack(conn.raw)
		}
	}()
	var batch [][]byte
	retried := false
	for {
		if len(batch) == 0 {
			select {
			case f := <-p.queue:
				batch = append(batch, f)
			case <-t.stop:
				return
			}
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case f := <-p.queue:
				batch = append(batch, f)
			default:
				break fill
			}
		}
		if conn != nil && conn.isDead() {
			t.untrack(conn.raw)
			conn = nil
		}
		if conn == nil {
			if conn = t.connect(p); conn == nil {
				return
			}
		}
		err := conn.write(batch, t.cfg.WriteTimeout)
		if err == nil {
			clear(batch)
			batch = batch[:0]
			retried = false
			continue
		}
		if t.ctx.Err() != nil {
			return
		}
		t.untrack(conn.raw)
		conn = nil
		if retried {
			t.stats.dropped.Add(int64(len(batch)))
			t.log.Warn("transport: dropping envelopes after a failed retry", "peer", string(p.id), "count", len(batch), "err", err)
			clear(batch)
			batch = batch[:0]
			retried = false
		} else {
			t.log.Warn("transport: write failed, reconnecting", "peer", string(p.id), "err", err)
			retried = true
		}
	}
}

// connect dials p until it succeeds or the transport closes (nil).
func (t *Transport) connect(p *peer) *outConn {
	var base, delay time.Duration
	for {
		if delay > 0 && !t.sleep(delay) {
			return nil
		}
		c, err := t.dial(p)
		if err == nil {
			return c
		}
		if t.ctx.Err() != nil {
			return nil
		}
		t.stats.dialFailures.Add(1)
		if errors.Is(err, ErrRefused) {
			t.stats.refused.Add(1)
		}
		base = min(max(2*base, t.cfg.BackoffMin), t.cfg.BackoffMax)
		// Jitter within [base/2, base] so restarted peers are not hit in step.
		delay = base/2 + rand.N(base/2+1)
		t.log.Warn("transport: dial failed", "peer", string(p.id), "addr", p.addr, "retry_in", delay, "err", err)
	}
}

func (t *Transport) dial(p *peer) (*outConn, error) {
	t.stats.dials.Add(1)
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", p.addr, err)
	}
	if !t.track(raw) {
		_ = raw.Close()
		return nil, ErrClosed
	}
	tc := tls.Client(raw, t.clientTLS(p.id))
	if err := tc.HandshakeContext(ctx); err != nil {
		t.untrack(raw)
		if errors.Is(err, pki.ErrUnauthenticated) || errors.Is(err, pki.ErrUnauthorized) {
			return nil, fmt.Errorf("%w: handshake with %s at %s: %w", ErrRefused, p.id, p.addr, err)
		}
		return nil, fmt.Errorf("transport: handshake with %s at %s: %w", p.id, p.addr, err)
	}
	id, err := t.identify(tc)
	if err == nil && id != p.id {
		err = fmt.Errorf("%w: dialled %q, certificate names %q", ErrRefused, p.id, id)
	}
	if err == nil {
		err = awaitAccept(ctx, raw, tc)
	}
	if err != nil {
		t.untrack(raw)
		return nil, err
	}
	c := &outConn{raw: raw, tc: tc, bw: bufio.NewWriterSize(tc, 64<<10), dead: make(chan struct{})}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		// The acceptor writes nothing after its ack; any read result is the
		// end of this connection (peer closed or restarted, or Close).
		_, _ = io.Copy(io.Discard, tc)
		close(c.dead)
	}()
	return c, nil
}

// awaitAccept waits for the acceptor's ack. A TLS alert instead means the
// acceptor refused our certificate (not in its peer map, or another CA).
func awaitAccept(ctx context.Context, raw net.Conn, tc *tls.Conn) error {
	if d, ok := ctx.Deadline(); ok {
		_ = raw.SetReadDeadline(d)
	}
	var ack [len(acceptMagic)]byte
	_, err := io.ReadFull(tc, ack[:])
	_ = raw.SetReadDeadline(time.Time{})
	// crypto/tls reports an alert from the peer as a *net.OpError with Op
	// "remote error".
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "remote error":
		return fmt.Errorf("%w: the peer refused our certificate: %v", ErrRefused, err)
	case err != nil:
		return fmt.Errorf("transport: waiting for the peer to accept: %w", err)
	case string(ack[:]) != acceptMagic:
		return fmt.Errorf("transport: peer speaks another protocol (%q)", ack[:])
	}
	return nil
}
