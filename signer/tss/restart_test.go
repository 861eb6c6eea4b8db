package tss_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

// The helper process signs as node1 over a pipe transport: fd 3 carries
// frames from the parent (envelopes for node1, each with the sender the
// parent's in-memory network authenticated), fd 4 frames to the parent
// (node1's envelopes, then the result). A frame is kind u8 | u16 len from |
// from | u32 len body | body.
const (
	frameEnvelope = 'E'
	frameSigned   = 'S' // body: r || s || v
	frameFailed   = 'F' // body: the error text

	helperEnv   = "CUSTODY_TSS_HELPER"
	round5Type  = "binance.tsslib.ecdsa.signing.SignRound5Message"
	commitRound = r1m2 // SignRound1Message2: the commitment to gamma_i·G
)

func writeFrame(w io.Writer, kind byte, from pki.NodeID, body []byte) error {
	b := make([]byte, 0, 7+len(from)+len(body))
	b = append(b, kind)
	b = binary.BigEndian.AppendUint16(b, uint16(len(from)))
	b = append(b, from...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	_, err := w.Write(b)
	return err
}

func readFrame(r *bufio.Reader) (kind byte, from pki.NodeID, body []byte, err error) {
	var h [3]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, "", nil, err
	}
	f := make([]byte, binary.BigEndian.Uint16(h[1:]))
	if _, err = io.ReadFull(r, f); err != nil {
		return 0, "", nil, err
	}
	var n [4]byte
	if _, err = io.ReadFull(r, n[:]); err != nil {
		return 0, "", nil, err
	}
	body = make([]byte, binary.BigEndian.Uint32(n[:]))
	_, err = io.ReadFull(r, body)
	return h[0], pki.NodeID(f), body, err
}

// pipeTransport is the helper's tss.Transport: the parent authenticates.
type pipeTransport struct {
	mu  sync.Mutex
	out io.Writer
	in  chan tss.Delivery
}

func (p *pipeTransport) Send(_ context.Context, _ pki.NodeID, env *tss.Envelope) error {
	raw, err := env.Marshal()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return writeFrame(p.out, frameEnvelope, "", raw)
}

func (p *pipeTransport) Receive() <-chan tss.Delivery { return p.in }

// TestHelperSigner is not a test: TestKilledSignerDoesNotResume re-executes
// the test binary with CUSTODY_TSS_HELPER=sign to run node1's engine in its
// own process, so that it can be SIGKILLed in the middle of signing.
func TestHelperSigner(t *testing.T) {
	if os.Getenv(helperEnv) != "sign" {
		t.Skip("helper process for TestKilledSignerDoesNotResume")
	}
	os.Exit(helperSign())
}

func helperSign() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "helper:", err); return 2 }
	raw, err := os.ReadFile(os.Getenv("CUSTODY_TSS_SHARE"))
	if err != nil {
		return fail(err)
	}
	share, err := tss.UnmarshalShare(raw)
	if err != nil {
		return fail(err)
	}
	sess, err := tss.ParseSessionID(os.Getenv("CUSTODY_TSS_SESSION"))
	if err != nil {
		return fail(err)
	}
	var digest [32]byte
	if d, err := hex.DecodeString(os.Getenv("CUSTODY_TSS_DIGEST")); err != nil || len(d) != 32 {
		return fail(fmt.Errorf("digest: %v", err))
	} else {
		copy(digest[:], d)
	}
	timeout, err := time.ParseDuration(os.Getenv("CUSTODY_TSS_TIMEOUT"))
	if err != nil {
		return fail(err)
	}
	in, out := os.NewFile(3, "from-parent"), os.NewFile(4, "to-parent")
	tr := &pipeTransport{out: out, in: make(chan tss.Delivery, 1024)}
	go func() {
		r := bufio.NewReader(in)
		for {
			_, from, body, err := readFrame(r)
			if err != nil {
				return
			}
			env, err := tss.UnmarshalEnvelope(body)
			if err != nil {
				env = nil
			}
			tr.in <- tss.Delivery{From: from, Env: env}
		}
	}()
	e, err := tss.NewEngine(tss.Config{Self: "node1", Transport: tr})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sig, err := e.Sign(ctx, share, tss.SignParams{Session: sess, Signers: []pki.NodeID{"node1", "node2"}, Digest: digest})
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if err != nil {
		_ = writeFrame(out, frameFailed, "", []byte(err.Error()))
		return 0
	}
	_ = writeFrame(out, frameSigned, "", sig.Bytes65())
	return 0
}

// signerProcess is one run of the helper: node1 in its own process, bridged
// onto the parent's in-memory network.
type signerProcess struct {
	cmd    *exec.Cmd
	toProc *os.File
	result chan []byte // frameSigned body, or nil after frameFailed / exit
	failed chan string
	round1 chan []byte // node1's first round-1 commitment payload
	exited chan struct{}
	err    error  // cmd.Wait's, once exited is closed
	dir    string // its working directory and TMPDIR
}

// bridge carries node1's traffic between the network and the current
// helper process.
type bridge struct {
	net *tss.MemNetwork
	mu  sync.Mutex // held while an envelope is forwarded to cur
	cur *signerProcess
}

func newBridge(t *testing.T, net *tss.MemNetwork) *bridge {
	b := &bridge{net: net}
	in := net.Endpoint("node1").Receive()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case d := <-in:
				raw, err := d.Env.Marshal()
				if err != nil {
					continue
				}
				b.mu.Lock()
				if b.cur != nil {
					_ = writeFrame(b.cur.toProc, frameEnvelope, d.From, raw)
				}
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// quiesce waits until nothing queued for node1 is left to forward, so that
// a new process starts with none of its predecessor's traffic.
func (b *bridge) quiesce(t *testing.T) {
	t.Helper()
	ch := b.net.Endpoint("node1").Receive()
	deadline := time.Now().Add(testDeadline)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for len(ch) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("node1's inbox never drained")
		}
		<-tick.C
	}
	b.mu.Lock()
	b.cur = nil
	b.mu.Unlock()
}

// start runs node1 as a new process signing digest in session sess with
// share file sharePath; kill, if set, decides from each envelope node1
// sends whether to SIGKILL the process instead of forwarding it.
func (b *bridge) start(t *testing.T, sharePath string, sess tss.SessionID, digest [32]byte, timeout time.Duration, kill func(*tss.Envelope) bool) *signerProcess {
	t.Helper()
	fromParent, toProc, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromProc, toParent, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &signerProcess{toProc: toProc, result: make(chan []byte, 1), failed: make(chan string, 1),
		round1: make(chan []byte, 1), exited: make(chan struct{}), dir: t.TempDir()}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSigner$", "-test.count=1")
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), helperEnv+"=sign", "CUSTODY_TSS_SHARE="+sharePath,
		"CUSTODY_TSS_SESSION="+sess.String(), "CUSTODY_TSS_DIGEST="+hex.EncodeToString(digest[:]),
		"CUSTODY_TSS_TIMEOUT="+timeout.String(), "TMPDIR="+p.dir)
	cmd.ExtraFiles = []*os.File{fromParent, toParent}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	fromParent.Close()
	toParent.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.exited; toProc.Close() })
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	b.mu.Lock()
	b.cur = p
	b.mu.Unlock()
	go func() {
		defer fromProc.Close()
		r := bufio.NewReader(fromProc)
		sawRound1 := false
		for {
			kind, _, body, err := readFrame(r)
			if err != nil {
				close(p.result)
				return
			}
			switch kind {
			case frameSigned:
				p.result <- body
			case frameFailed:
				p.failed <- string(body)
			case frameEnvelope:
				env, err := tss.UnmarshalEnvelope(body)
				if err != nil {
					continue
				}
				if env.Type == commitRound && !sawRound1 {
					sawRound1 = true
					p.round1 <- env.Payload
				}
				if kill != nil && kill(env) {
					_ = cmd.Process.Signal(syscall.SIGKILL)
					continue
				}
				_ = b.net.Endpoint("node1").Send(context.Background(), env.To, env)
			}
		}
	}()
	return p
}

// TestKilledSignerDoesNotResume (SECURITY.md 7): node1 runs in its own
// process and is SIGKILLed the moment it sends its round-5 message (R is
// fixed by then); node2's engine gives up on the session. A new node1
// process asked to run that same session again has nothing to resume from
// (the engine never writes signing state: its working directory and TMPDIR
// stay empty): it starts at round 1 with a fresh commitment to a fresh
// gamma_i, and node2, which remembers the session as used, drops all of it,
// so the old session never completes. New sessions over the very same
// digest then sign with fresh randomness: different R each time.
func TestKilledSignerDoesNotResume(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("in the helper process")
	}
	_, shares := shared2of3(t)
	raw, err := shares["node1"].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sharePath := filepath.Join(t.TempDir(), "node1.share")
	if err := os.WriteFile(sharePath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	net := tss.NewMemNetwork()
	e2, err := tss.NewEngine(tss.Config{Self: "node2", Transport: net.Endpoint("node2")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e2.Close)
	b := newBridge(t, net)
	signers := []pki.NodeID{"node1", "node2"}
	d := digestOf("the same transfer, again and again")
	sign2 := func(ctx context.Context, sess tss.SessionID) chan result[*tss.Signature] {
		out := make(chan result[*tss.Signature], 1)
		go func() {
			s, err := e2.Sign(ctx, shares["node2"], tss.SignParams{Session: sess, Signers: signers, Digest: d})
			out <- result[*tss.Signature]{"node2", s, err}
		}()
		return out
	}
	var commitments [][]byte
	commitment := func(p *signerProcess) {
		t.Helper()
		select {
		case c := <-p.round1:
			for _, prev := range commitments {
				if bytes.Equal(prev, c) {
					t.Fatal("a new run of node1 reused a round-1 commitment (same gamma_i)")
				}
			}
			commitments = append(commitments, c)
		case <-time.After(testDeadline):
			t.Fatal("node1 sent no round-1 commitment")
		}
	}

	// 1. Kill node1 in round 5.
	sess := tss.NewSessionID()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	p1 := b.start(t, sharePath, sess, d, testDeadline, func(env *tss.Envelope) bool { return env.Type == round5Type })
	res2 := sign2(ctx2, sess)
	commitment(p1)
	<-p1.exited
	err = p1.err
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("node1 was not killed in round 5: %v", err)
	}
	if ents, err := os.ReadDir(p1.dir); err != nil || len(ents) != 0 {
		t.Fatalf("the killed signer left files in its working directory: %v %v", ents, err)
	}
	cancel2() // node2 notices its peer is gone
	if r := <-res2; !errors.Is(r.err, tss.ErrTimeout) {
		t.Fatalf("node2 after node1 died: %v", r.err)
	}

	// 2. Restart node1 and ask it to run the killed session again.
	b.quiesce(t)
	before := e2.Stats().FinishedSession
	p2 := b.start(t, sharePath, sess, d, 5*time.Second, nil)
	commitment(p2)
	if sig, ok := <-p2.result; ok {
		t.Fatalf("the killed session was completed after a restart: %x", sig)
	}
	select {
	case msg := <-p2.failed:
		if !strings.Contains(msg, tss.ErrTimeout.Error()) {
			t.Fatalf("the restarted node1 failed otherwise: %s", msg)
		}
	default:
		t.Fatal("the restarted node1 exited without a result")
	}
	<-p2.exited
	if e2.Stats().FinishedSession == before {
		t.Fatal("node2 did not drop the restarted node1's envelopes as a used session")
	}
	if _, err := e2.Sign(context.Background(), shares["node2"], tss.SignParams{Session: sess, Signers: signers, Digest: d}); !errors.Is(err, tss.ErrSessionReused) {
		t.Fatalf("node2 accepted the killed session's ID again: %v", err)
	}

	// 3. New sessions over the same digest: fresh randomness, different R.
	var rs [][32]byte
	for i := 0; i < 2; i++ {
		b.quiesce(t)
		sess := tss.NewSessionID()
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		p := b.start(t, sharePath, sess, d, testDeadline, nil)
		res2 := sign2(ctx, sess)
		commitment(p)
		r2 := <-res2
		cancel()
		if r2.err != nil {
			t.Fatalf("node2 in a new session: %v", r2.err)
		}
		sig1, ok := <-p.result
		if !ok || !bytes.Equal(sig1, r2.val.Bytes65()) {
			t.Fatalf("node1's process returned %x, node2 %x", sig1, r2.val.Bytes65())
		}
		<-p.exited
		tsstest.VerifySignature(t, r2.val, shares["node2"].PubKey, d)
		for _, r := range rs {
			if r == r2.val.R {
				t.Fatal("two sessions over the same digest produced the same R")
			}
		}
		rs = append(rs, r2.val.R)
	}
}
