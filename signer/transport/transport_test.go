package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/transport"
	"github.com/custody-dev/custody/signer/tss"
)

func TestDeliveryInOrder(t *testing.T) {
	c := newCluster(t, ids(3))
	for i := range 50 {
		send(t, c.tr["node1"], "node2", env("node1", "node2", fmt.Sprint(i)))
		send(t, c.tr["node3"], "node2", env("node3", "node2", fmt.Sprint(i)))
	}
	next := map[pki.NodeID]int{}
	for range 100 {
		d := recv(t, c.tr["node2"])
		if d.Env == nil || d.Env.From != d.From {
			t.Fatalf("bad delivery %+v", d)
		}
		if got, want := string(d.Env.Payload), fmt.Sprint(next[d.From]); got != want {
			t.Fatalf("from %s: got %s, want %s (out of order)", d.From, got, want)
		}
		next[d.From]++
	}
}

func TestSendErrors(t *testing.T) {
	c := newCluster(t, ids(2))
	ctx := context.Background()
	if err := c.tr["node1"].Send(ctx, "node9", env("node1", "node9", "x")); !errors.Is(err, tss.ErrUnknownPeer) {
		t.Fatalf("unknown peer: got %v, want tss.ErrUnknownPeer", err)
	}
	// A message to self is delivered locally, authenticated as self.
	send(t, c.tr["node1"], "node1", env("node1", "node1", "me"))
	if d := recv(t, c.tr["node1"]); d.From != "node1" || string(d.Env.Payload) != "me" {
		t.Fatalf("self delivery: %+v", d)
	}
	if err := c.tr["node1"].Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.tr["node1"].Send(ctx, "node2", env("node1", "node2", "x")); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("after close: got %v, want ErrClosed", err)
	}
	if _, ok := <-c.tr["node1"].Receive(); ok {
		t.Fatal("Receive not closed by Close")
	}
	if err := c.tr["node1"].Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSendBlocksUntilQueuedOrContextDone(t *testing.T) {
	p := newPKI(t, "cluster")
	addrs := freeAddrs(t, 2) // addrs[1] has no listener: the peer is down
	tr, err := transport.New(transport.Config{Self: "node1", Listen: addrs[0], TLS: p.node(t, "node1"),
		Peers: map[pki.NodeID]string{"node2": addrs[1]}, QueueSize: 2,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Logger: (&logBuf{}).logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// The writer holds at most maxBatch envelopes while it redials; the queue
	// two more. Sending more must block and then fail with the context.
	var err2 error
	for i := 0; i < 200 && err2 == nil; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err2 = tr.Send(ctx, "node2", env("node1", "node2", "x"))
		cancel()
	}
	if !errors.Is(err2, context.DeadlineExceeded) {
		t.Fatalf("full queue: got %v, want context.DeadlineExceeded", err2)
	}
	waitFor(t, "dial failures", func() bool { return tr.Stats().DialFailures > 0 })
}

func TestConfigRejected(t *testing.T) {
	p := newPKI(t, "cluster")
	good := p.node(t, "node1")
	for name, cfg := range map[string]transport.Config{
		"no self":       {Listen: "127.0.0.1:0", TLS: good},
		"no tls":        {Self: "node1", Listen: "127.0.0.1:0"},
		"no listen":     {Self: "node1", TLS: good},
		"self as peer":  {Self: "node1", Listen: "127.0.0.1:0", TLS: good, Peers: map[pki.NodeID]string{"node1": "127.0.0.1:1"}},
		"empty address": {Self: "node1", Listen: "127.0.0.1:0", TLS: good, Peers: map[pki.NodeID]string{"node2": ""}},
	} {
		if _, err := transport.New(cfg); !errors.Is(err, transport.ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
}

// A certificate from another CA is refused by the acceptor, and a server
// presenting one is refused by the dialer.
func TestOtherCARefused(t *testing.T) {
	c := newCluster(t, ids(2))
	foreign := newPKI(t, "other")
	// Inbound: a valid-looking node2 certificate from a foreign CA.
	conn, err := tls.Dial("tcp", c.addrs["node1"], &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{foreign.node(t, "node2").Cert}, InsecureSkipVerify: true}) //nolint:gosec // attacker
	if err == nil {
		_, _ = conn.Write(frame(mustMarshal(t, env("node2", "node1", "forged"))))
		closedByPeer(t, conn)
		_ = conn.Close()
	}
	waitFor(t, "inbound refusal", func() bool { return c.tr["node1"].Stats().Refused == 1 })
	waitFor(t, "refusal logged", contains(c.logs["node1"], "inbound connection refused"))
	nothingDelivered(t, c.tr["node1"])

	// Outbound: node1 dials node2's address, where a foreign-CA "node2" listens.
	c.tr["node2"].Close()
	fake, err := transport.New(transport.Config{Self: "node2", Listen: c.addrs["node2"], TLS: foreign.node(t, "node2"),
		Peers: map[pki.NodeID]string{"node1": c.addrs["node1"]}, Logger: (&logBuf{}).logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	send(t, c.tr["node1"], "node2", env("node1", "node2", "secret round message"))
	waitFor(t, "outbound refusal", func() bool { return c.tr["node1"].Stats().Refused >= 2 })
	waitFor(t, "dial refusal logged", contains(c.logs["node1"], "certificate signed by unknown authority"))
	nothingDelivered(t, fake)
}

// A cluster certificate whose node ID is not in the peer map is refused.
func TestNodeNotInPeerMapRefused(t *testing.T) {
	c := newCluster(t, ids(2))
	stranger := c.pki.node(t, "node7")
	conn := rawDial(t, c.addrs["node1"], stranger)
	_, _ = conn.Write(frame(mustMarshal(t, env("node7", "node1", "hello"))))
	closedByPeer(t, conn)
	waitFor(t, "refusal", func() bool { return c.tr["node1"].Stats().Refused == 1 })
	waitFor(t, "refusal logged", contains(c.logs["node1"], `node \"node7\" is not a peer`))
	nothingDelivered(t, c.tr["node1"])
}

// The dialer refuses a valid cluster member answering at another member's address.
func TestDialerChecksServerIdentity(t *testing.T) {
	c := newCluster(t, ids(3))
	// node1 believes node2 listens where node3 actually does.
	cfg := c.config(t, "node1")
	cfg.Listen = freeAddrs(t, 1)[0]
	cfg.Peers["node2"] = c.addrs["node3"]
	logs := &logBuf{}
	cfg.Logger = logs.logger()
	confused, err := transport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer confused.Close()
	send(t, confused, "node2", env("node1", "node2", "for node2 only"))
	waitFor(t, "refusal", func() bool { return confused.Stats().Refused >= 1 })
	waitFor(t, "refusal logged", contains(logs, `dialled \"node2\" but the server is \"node3\"`))
	nothingDelivered(t, c.tr["node3"])
}

// node2 sending an envelope that claims to be from node1: the delivery is
// attributed to node2 and the engine counts it as spoofed.
func TestImpersonationAttributedToCertificate(t *testing.T) {
	c := newCluster(t, ids(3))
	send(t, c.tr["node2"], "node3", env("node1", "node3", "i am node1"))
	d := recv(t, c.tr["node3"])
	if d.From != "node2" {
		t.Fatalf("Delivery.From = %q, want node2 (the certificate)", d.From)
	}
	if d.Env == nil || d.Env.From != "node1" {
		t.Fatalf("envelope not delivered as sent: %+v", d.Env)
	}

	// Through a raw connection with node2's certificate, and into an engine.
	e, err := tss.NewEngine(tss.Config{Self: "node3", Transport: c.tr["node3"]})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	conn := rawDial(t, c.addrs["node3"], c.pki.node(t, "node2"))
	if _, err := conn.Write(frame(mustMarshal(t, env("node1", "node3", "i am node1")))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "spoofed count", func() bool { return e.Stats().Spoofed == 1 })
}

func TestFramingErrorsCloseConnection(t *testing.T) {
	c := newCluster(t, ids(2))
	cert := c.pki.node(t, "node2")
	for i, tc := range []struct {
		name, log string
		bytes     []byte
	}{
		{"oversize", "frame too large", []byte{0xff, 0xff, 0xff, 0xff}},
		{"just over the limit", "frame too large", frame(make([]byte, transport.MaxFrame+1))[:64]},
		{"empty", "empty frame", []byte{0, 0, 0, 0}},
	} {
		conn := rawDial(t, c.addrs["node1"], cert)
		if _, err := conn.Write(tc.bytes); err != nil {
			t.Fatal(err)
		}
		closedByPeer(t, conn)
		waitFor(t, tc.name+" counted", func() bool { return c.tr["node1"].Stats().FrameErrors == int64(i+1) })
		waitFor(t, tc.name+" logged", contains(c.logs["node1"], tc.log))
	}
	// A truncated frame followed by the peer hanging up is counted too.
	conn := rawDial(t, c.addrs["node1"], cert)
	_, _ = conn.Write(frame([]byte("abcdef"))[:7])
	_ = conn.CloseWrite()
	closedByPeer(t, conn)
	waitFor(t, "truncated counted", func() bool { return c.tr["node1"].Stats().FrameErrors == 4 })
	nothingDelivered(t, c.tr["node1"])
	// The node still works for honest traffic.
	send(t, c.tr["node2"], "node1", env("node2", "node1", "still fine"))
	if d := recv(t, c.tr["node1"]); d.Env == nil || string(d.Env.Payload) != "still fine" {
		t.Fatalf("after framing errors: %+v", d)
	}
}

func TestMalformedEnvelopeDeliveredNil(t *testing.T) {
	c := newCluster(t, ids(2))
	conn := rawDial(t, c.addrs["node1"], c.pki.node(t, "node2"))
	good := mustMarshal(t, env("node2", "node1", "after"))
	trailing := append(append([]byte(nil), good...), 0)
	for _, b := range [][]byte{[]byte("not an envelope"), trailing, good} {
		if _, err := conn.Write(frame(b)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if d := recv(t, c.tr["node1"]); d.From != "node2" || d.Env != nil {
			t.Fatalf("malformed %d: got %+v, want nil Env from node2", i, d)
		}
	}
	// The connection stays open: the next envelope arrives.
	if d := recv(t, c.tr["node1"]); d.From != "node2" || d.Env == nil || string(d.Env.Payload) != "after" {
		t.Fatalf("after malformed: %+v", d)
	}
	if got := c.tr["node1"].Stats().MalformedEnvelopes; got != 2 {
		t.Fatalf("MalformedEnvelopes = %d, want 2", got)
	}
}

func TestPeerRestart(t *testing.T) {
	c := newCluster(t, ids(2))
	send(t, c.tr["node1"], "node2", env("node1", "node2", "before"))
	if d := recv(t, c.tr["node2"]); string(d.Env.Payload) != "before" {
		t.Fatalf("before restart: %+v", d)
	}
	if err := c.tr["node2"].Close(); err != nil {
		t.Fatal(err)
	}
	restarted := c.start(t, "node2")
	// Frames written before node1 noticed the restart may be lost; probe
	// until one arrives, then everything after it must arrive in order.
	probe := 0
	waitFor(t, "delivery after restart", func() bool {
		send(t, c.tr["node1"], "node2", env("node1", "node2", fmt.Sprintf("probe%d", probe)))
		probe++
		select {
		case d := <-restarted.Receive():
			return d.From == "node1"
		default:
			return false
		}
	})
	for i := range 20 {
		send(t, c.tr["node1"], "node2", env("node1", "node2", fmt.Sprint(i)))
	}
	for want := 0; want < 20; {
		d := recv(t, restarted)
		if len(d.Env.Payload) > 5 && string(d.Env.Payload[:5]) == "probe" {
			continue
		}
		if string(d.Env.Payload) != fmt.Sprint(want) {
			t.Fatalf("after restart got %q, want %d", d.Env.Payload, want)
		}
		want++
	}
	if c.tr["node1"].Stats().Dials < 2 {
		t.Fatalf("node1 did not redial: %+v", c.tr["node1"].Stats())
	}
}

func TestCloseLeaksNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	nodes := ids(3)
	c := newCluster(t, nodes)
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				send(t, c.tr[a], b, env(a, b, "hi"))
			}
		}
	}
	for _, b := range nodes {
		for range 2 {
			recv(t, c.tr[b])
		}
	}
	// A send blocked on a full queue to a peer that is down, and a
	// half-open attacker connection, must not keep anything alive either.
	_ = c.tr["node3"].Close()
	_ = rawDial(t, c.addrs["node1"], c.pki.node(t, "node2"))
	for _, id := range nodes {
		if err := c.tr[id].Close(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

func mustMarshal(t testing.TB, e *tss.Envelope) []byte {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A dialer whose certificate the acceptor refuses learns it during dial (the
// acceptor's ack never comes), counts it and backs off; nothing is delivered.
func TestRefusedDialerNotified(t *testing.T) {
	c := newCluster(t, ids(2))
	if err := c.tr["node2"].Close(); err != nil {
		t.Fatal(err)
	}
	cfg := c.config(t, "node2")
	cfg.Peers = map[pki.NodeID]string{"node3": "127.0.0.1:1"} // node1 is not a peer of node2
	strict, err := transport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	send(t, c.tr["node1"], "node2", env("node1", "node2", "let me in"))
	waitFor(t, "dialer sees the refusal", func() bool { return c.tr["node1"].Stats().Refused >= 2 })
	waitFor(t, "refusal logged by the dialer", contains(c.logs["node1"], "the peer refused our certificate"))
	if st := strict.Stats(); st.Refused < 2 || st.Delivered != 0 {
		t.Fatalf("acceptor stats: %+v", st)
	}
	nothingDelivered(t, strict)
}

// Config.Authorize refuses a peer of the peer map in both directions (the
// daemon's node-set gate: a node removed from the node set, or one whose
// certificate key the set does not pin, keeps a valid cluster certificate).
func TestAuthorizeRefusesPeer(t *testing.T) {
	c := newCluster(t, ids(2))
	c.tr["node1"].Close()
	cfg := c.config(t, "node1")
	logs := &logBuf{}
	cfg.Logger = logs.logger()
	cfg.Authorize = func(p pki.Peer) error {
		if p.ID == "node2" {
			return errors.New("not in the node set")
		}
		return nil
	}
	gated, err := transport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer gated.Close()
	// Inbound: node2's valid certificate.
	conn := rawDial(t, c.addrs["node1"], c.pki.node(t, "node2"))
	_, _ = conn.Write(frame(mustMarshal(t, env("node2", "node1", "hello"))))
	closedByPeer(t, conn)
	waitFor(t, "inbound refusal", func() bool { return gated.Stats().Refused >= 1 })
	waitFor(t, "refusal logged", contains(logs, "not in the node set"))
	nothingDelivered(t, gated)
	// Outbound: node1 refuses node2 as a server too.
	before := gated.Stats().Refused
	send(t, gated, "node2", env("node1", "node2", "for node2"))
	waitFor(t, "outbound refusal", func() bool { return gated.Stats().Refused > before })
	nothingDelivered(t, c.tr["node2"])
}
