package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/transport"
	"github.com/custody-dev/custody/signer/tss"
)

// deadline bounds every wait in these tests; reaching it is a failure, not a
// timing assertion.
const deadline = 30 * time.Second

// testPKI is a throwaway cluster CA whose files live in a test's TempDir, so
// node configs go through the same PEM loading as a deployment.
type testPKI struct {
	ca  *pki.CA
	dir string
}

func newPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	ca, err := pki.NewCA(name, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, dir: dir}
}

// node issues a certificate for id, writes it to the PKI dir and loads it back.
func (p *testPKI) node(t testing.TB, id pki.NodeID) pki.Identity {
	t.Helper()
	certPEM, keyPEM, err := p.ca.IssueNode(id, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(p.dir, string(id)+".crt")
	keyFile := filepath.Join(p.dir, string(id)+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	read := func(f string) []byte {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cfg, err := pki.LoadIdentity(read(certFile), read(keyFile), read(filepath.Join(p.dir, "ca.pem")))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// freeAddrs reserves n loopback ports and releases them for the nodes to bind.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return out
}

// logBuf collects log output for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// cluster is a set of transports of one PKI with a full peer map.
type cluster struct {
	pki   *testPKI
	addrs map[pki.NodeID]string
	tr    map[pki.NodeID]*transport.Transport
	logs  map[pki.NodeID]*logBuf
}

func ids(n int) []pki.NodeID {
	out := make([]pki.NodeID, n)
	for i := range out {
		out[i] = pki.NodeID(fmt.Sprintf("node%d", i+1))
	}
	return out
}

func newCluster(t testing.TB, nodes []pki.NodeID) *cluster {
	t.Helper()
	c := &cluster{pki: newPKI(t, "cluster"), addrs: map[pki.NodeID]string{},
		tr: map[pki.NodeID]*transport.Transport{}, logs: map[pki.NodeID]*logBuf{}}
	for i, a := range freeAddrs(t, len(nodes)) {
		c.addrs[nodes[i]] = a
	}
	for _, id := range nodes {
		c.start(t, id)
	}
	return c
}

func (c *cluster) config(t testing.TB, id pki.NodeID) transport.Config {
	peers := map[pki.NodeID]string{}
	for p, a := range c.addrs {
		if p != id {
			peers[p] = a
		}
	}
	if c.logs[id] == nil {
		c.logs[id] = &logBuf{}
	}
	return transport.Config{Self: id, Listen: c.addrs[id], Peers: peers, TLS: c.pki.node(t, id),
		BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Logger: c.logs[id].logger()}
}

func (c *cluster) start(t testing.TB, id pki.NodeID) *transport.Transport {
	t.Helper()
	tr, err := transport.New(c.config(t, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	c.tr[id] = tr
	return tr
}

func env(from, to pki.NodeID, payload string) *tss.Envelope {
	return &tss.Envelope{Wallet: "w", Type: "test", From: from, To: to, Payload: []byte(payload)}
}

func send(t testing.TB, tr *transport.Transport, to pki.NodeID, e *tss.Envelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := tr.Send(ctx, to, e); err != nil {
		t.Fatalf("send to %s: %v", to, err)
	}
}

func recv(t testing.TB, tr *transport.Transport) tss.Delivery {
	t.Helper()
	select {
	case d, ok := <-tr.Receive():
		if !ok {
			t.Fatal("receive channel closed")
		}
		return d
	case <-time.After(deadline):
		t.Fatal("no delivery before the deadline")
	}
	return tss.Delivery{}
}

// nothingDelivered checks the inbox is empty now.
func nothingDelivered(t testing.TB, tr *transport.Transport) {
	t.Helper()
	select {
	case d := <-tr.Receive():
		t.Fatalf("unexpected delivery from %q: %+v", d.From, d.Env)
	default:
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	end := time.After(deadline)
	for !cond() {
		select {
		case <-tick.C:
		case <-end:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func contains(l *logBuf, s string) func() bool {
	return func() bool { return strings.Contains(l.String(), s) }
}

// rawDial connects to addr presenting cert, like a hostile or foreign node
// would: it does not check the server, only speaks TLS 1.3 with a client cert.
func rawDial(t testing.TB, addr string, cert pki.Identity) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert.Cert},
		InsecureSkipVerify: true, //nolint:gosec // the test plays an attacker
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// frame encodes body with its u32 length prefix.
func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// closedByPeer reads until the server closes the connection (or refuses
// it with an alert); reaching the deadline instead is a failure.
func closedByPeer(t testing.TB, c *tls.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(deadline))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server kept the connection open")
	}
}
