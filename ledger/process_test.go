package ledger_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// TestHelperProcess is not a test: the kill -9, torn-tail and full-disk tests
// re-execute the test binary with LEDGER_HELPER_NODE=1 to run one ledger node
// in its own process, so it can be SIGKILLed (or its file size limited) for
// real. It prints "READY <addr>", then obeys one command per stdin line and
// answers each with "OK ..." or "ERR ..." (see helperNode.command); acknowledged
// writes are printed as "ACK <id> <index>" the moment they return. It runs
// until stdin closes (or it is killed, which is the point).
func TestHelperProcess(t *testing.T) {
	if os.Getenv("LEDGER_HELPER_NODE") != "1" {
		t.Skip("helper process for the kill -9, torn-tail and full-disk tests")
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pkiDir := os.Getenv("LEDGER_HELPER_PKI")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(pkiDir, name))
		if err != nil {
			fail(err)
		}
		return b
	}
	ident, err := pki.LoadIdentity(read("node.crt"), read("node.key"), read("ca.crt"))
	if err != nil {
		fail(err)
	}
	stream, err := ListenStream(os.Getenv("LEDGER_HELPER_BIND"), ident, nil)
	if err != nil {
		fail(err)
	}
	cfg := ledgertest.Config(pki.NodeID(os.Getenv("LEDGER_HELPER_ID")), os.Getenv("LEDGER_HELPER_DIR"), stream)
	cfg.LogStore = LogStore(os.Getenv("LEDGER_HELPER_STORE"))
	if v, ok := os.LookupEnv("LEDGER_HELPER_SEGMENT"); ok {
		if cfg.WALSegmentSize, err = strconv.Atoi(v); err != nil {
			fail(err)
		}
	}
	s, err := Open(cfg)
	if err != nil {
		fail(err)
	}
	h := &helperNode{t: t, s: s, dir: cfg.Dir, store: cfg.LogStore}
	h.println("READY " + s.Addr())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if err := h.command(strings.Fields(sc.Text())); err != nil {
			h.println("ERR " + err.Error())
		}
	}
	_ = s.Close()
	os.Exit(0)
}

// helperNode is the node inside a helper process.
type helperNode struct {
	t     *testing.T
	s     *Store
	dir   string
	store LogStore
	out   sync.Mutex
}

func (h *helperNode) println(line string) {
	h.out.Lock()
	defer h.out.Unlock()
	fmt.Println(line)
}

// command runs one command:
//
//	bootstrap              bootstrap a one-node cluster, wait to lead
//	join ID ADDR           add a voter (as leader)
//	seed                   genesis and the test wallets
//	create ID NONCE        one create; ACK on success, ERR otherwise
//	load PREFIX WORKERS    start writers that create PREFIX-w-i until killed
//	limit                  cap the file size (RLIMIT_FSIZE) just past the
//	                       log's end: the next append fails part-way
func (h *helperNode) command(f []string) error {
	ctx := context.Background()
	if len(f) == 0 {
		return errors.New("empty command")
	}
	switch {
	case f[0] == "bootstrap" && len(f) == 1:
		if err := h.s.Bootstrap(); err != nil {
			return err
		}
		ledgertest.Poll(h.t, "leadership after bootstrap", func() error {
			if !h.s.IsLeader() {
				return errors.New("not leader")
			}
			return nil
		})
	case f[0] == "join" && len(f) == 3:
		if err := h.s.Join(ctx, pki.NodeID(f[1]), f[2]); err != nil {
			return err
		}
	case f[0] == "seed" && len(f) == 1:
		if _, err := h.s.Submit(ctx, "ceremony", genesisCmd()); err != nil {
			return err
		}
		for _, cmd := range testWalletCmds(h.t, time.Now()) {
			if _, err := h.s.Submit(ctx, "keygen", cmd); err != nil {
				return err
			}
		}
	case f[0] == "create" && len(f) == 3:
		nonce, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		r, _, err := h.s.CreateRequest(cctx, "backend", createCmd(f[1], nonce))
		if err != nil {
			return fmt.Errorf("create %s: %w", f[1], err)
		}
		h.println(fmt.Sprintf("ACK %s %d", f[1], r.CreatedIdx))
	case f[0] == "load" && len(f) == 3:
		workers, err := strconv.Atoi(f[2])
		if err != nil {
			return err
		}
		for w := range workers {
			go func() {
				for i := 0; ; i++ {
					id := fmt.Sprintf("%s-%d-%d", f[1], w, i)
					r, _, err := h.s.CreateRequest(ctx, "backend", createCmd(id, uint64(w)<<32|uint64(i)))
					if err != nil {
						h.println(fmt.Sprintf("LOADERR %s %v", id, err))
						return
					}
					h.println(fmt.Sprintf("ACK %s %d", id, r.CreatedIdx))
				}
			}()
		}
	case f[0] == "limit" && len(f) == 1:
		limit, err := fileSizeLimitPastLog(h.dir, h.store)
		if err != nil {
			return err
		}
		// Without SIGXFSZ ignored the kernel would kill us; ignored, a write
		// past the limit fails with EFBIG ("file too large").
		signal.Ignore(syscall.SIGXFSZ)
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(limit), Max: math.MaxUint64}); err != nil {
			return err
		}
		h.println(fmt.Sprintf("OK limit %d", limit))
		return nil
	default:
		return fmt.Errorf("unknown command %q", f)
	}
	h.println("OK")
	return nil
}

// childNode is a helper process running one node.
type childNode struct {
	t     *testing.T
	id    pki.NodeID
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	lines chan string // command answers (OK/ERR)
	done  chan struct{}

	mu sync.Mutex
	// onAck, if set, runs for every ACK line (in the reader goroutine)
	// with the number of IDs acknowledged so far.
	onAck   func(n int)
	acked   map[string]uint64 // ID → raft index, every ACK printed
	loadErr []string
	stderr  strings.Builder
}

// startChild starts a helper process running node id on dir with store;
// env adds LEDGER_HELPER_* settings (LEDGER_HELPER_SEGMENT: WAL segment
// size, 0 for the production default).
func startChild(t *testing.T, c *ledgertest.Cluster, id pki.NodeID, dir string, store LogStore, env ...string) *childNode {
	t.Helper()
	pkiDir := t.TempDir()
	cert, key := c.PKI.NodePEM(t, id)
	for name, b := range map[string][]byte{"node.crt": cert, "node.key": key, "ca.crt": c.PKI.CA.PEM()} {
		if err := os.WriteFile(filepath.Join(pkiDir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LEDGER_HELPER_NODE=1", "LEDGER_HELPER_ID="+string(id), "LEDGER_HELPER_DIR="+dir,
		"LEDGER_HELPER_BIND=127.0.0.1:0", "LEDGER_HELPER_PKI="+pkiDir, "LEDGER_HELPER_STORE="+string(store))
	cmd.Env = append(cmd.Env, env...)
	ch := &childNode{t: t, id: id, cmd: cmd, lines: make(chan string, 16), done: make(chan struct{}), acked: map[string]uint64{}}
	cmd.Stderr = &lockedWriter{mu: &ch.mu, w: &ch.stderr}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	ch.stdin = stdin
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-ch.done
		if t.Failed() {
			t.Logf("helper %s stderr:\n%s", id, ch.stderrText())
		}
	})
	ready := make(chan string, 1)
	go func() {
		defer close(ch.done)
		defer func() { _ = cmd.Wait() }()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch f := strings.Fields(line); {
			case len(f) == 2 && f[0] == "READY":
				ready <- f[1]
			case len(f) == 3 && f[0] == "ACK":
				idx, _ := strconv.ParseUint(f[2], 10, 64)
				ch.mu.Lock()
				ch.acked[f[1]] = idx
				n, onAck := len(ch.acked), ch.onAck
				ch.mu.Unlock()
				if onAck != nil {
					onAck(n)
				}
			case len(f) > 0 && f[0] == "LOADERR":
				ch.mu.Lock()
				ch.loadErr = append(ch.loadErr, line)
				ch.mu.Unlock()
			default:
				ch.lines <- line
			}
		}
	}()
	select {
	case a := <-ready:
		ch.addr = a
		return ch
	case <-ch.done:
		t.Fatalf("helper %s exited before it was ready: %s", id, ch.stderrText())
	case <-time.After(ledgertest.Wait):
		t.Fatalf("helper %s not ready in time", id)
	}
	return nil
}

// do sends one command and returns its answer line.
func (ch *childNode) do(cmd string) string {
	ch.t.Helper()
	if _, err := fmt.Fprintln(ch.stdin, cmd); err != nil {
		ch.t.Fatalf("helper %s: send %q: %v", ch.id, cmd, err)
	}
	select {
	case l := <-ch.lines:
		return l
	case <-ch.done:
		return ""
	case <-time.After(ledgertest.Wait):
		ch.t.Fatalf("helper %s: no answer to %q", ch.id, cmd)
	}
	return ""
}

// must sends a command that has to succeed.
func (ch *childNode) must(cmd string) {
	ch.t.Helper()
	if l := ch.do(cmd); !strings.HasPrefix(l, "OK") {
		ch.t.Fatalf("helper %s: %q: %q (stderr: %s)", ch.id, cmd, l, ch.stderrText())
	}
}

// setOnAck installs the ACK callback.
func (ch *childNode) setOnAck(fn func(n int)) {
	ch.mu.Lock()
	ch.onAck = fn
	ch.mu.Unlock()
}

// loadErrors returns the writers' failures ("LOADERR ..." lines).
func (ch *childNode) loadErrors() []string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return slices.Clone(ch.loadErr)
}

// kill9 SIGKILLs the helper (if an ACK callback did not already) and waits
// until it is gone and every line it printed has been read.
func (ch *childNode) kill9() {
	ch.t.Helper()
	if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		ch.t.Fatal(err)
	}
	<-ch.done
	if ws, ok := ch.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		ch.t.Fatalf("helper %s did not die of SIGKILL: %v (stderr: %s)", ch.id, ch.cmd.ProcessState, ch.stderrText())
	}
}

// ackedIDs returns every ID the helper acknowledged, with its raft index.
func (ch *childNode) ackedIDs() map[string]uint64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return maps.Clone(ch.acked)
}

func (ch *childNode) stderrText() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.stderr.String()
}

// lockedWriter serialises writes to w under mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// forEachStore runs fn as a subtest per log store.
func forEachStore(t *testing.T, fn func(t *testing.T, store LogStore)) {
	for _, store := range []LogStore{LogStoreWAL, LogStoreBoltDB} {
		t.Run(string(store), func(t *testing.T) { fn(t, store) })
	}
}

// withStore is a cluster tune that selects the log store.
func withStore(store LogStore, more ...func(*Config)) func(*Config) {
	return func(cfg *Config) {
		cfg.LogStore = store
		for _, f := range more {
			f(cfg)
		}
	}
}

// requireAcked checks that every node of c holds every acknowledged ID and a
// verifying audit chain.
func requireAcked(t *testing.T, c *ledgertest.Cluster, acked map[string]uint64) {
	t.Helper()
	for _, n := range c.Live() {
		_ = n.Store.ReadLocal(func(st *State) error {
			for id := range acked {
				if st.Requests[id] == nil {
					t.Errorf("%s lost acknowledged %s", n.ID, id)
				}
			}
			if err := VerifyChain(st.Audit); err != nil {
				t.Errorf("%s: %v", n.ID, err)
			}
			return nil
		})
	}
}

// loadWriter submits creates with unique IDs to whichever in-process node
// leads, recording every acknowledged ID, until stopped.
type loadWriter struct {
	mu    sync.Mutex
	acked map[string]bool
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startLoad(c *ledgertest.Cluster, workers int, prefix string) *loadWriter {
	lw := &loadWriter{acked: map[string]bool{}, stop: make(chan struct{})}
	for w := range workers {
		lw.wg.Add(1)
		go func() {
			defer lw.wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			var (
				cmd   RequestCreate
				cmdOf = -1
			)
			for i := 0; ; {
				select {
				case <-lw.stop:
					return
				default:
				}
				var leader *Store
				for _, n := range c.Live() {
					if n.Store.IsLeader() {
						leader = n.Store
					}
				}
				if leader == nil {
					<-tick.C
					continue
				}
				id := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				// A retry after an unknown outcome must send the same
				// command (createCmd signs at the wall clock).
				if cmdOf != i {
					cmd, cmdOf = createCmd(id, uint64(w)<<32|uint64(i)), i
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _, err := leader.CreateRequest(ctx, "backend", cmd)
				cancel()
				switch {
				case err == nil:
					lw.mu.Lock()
					lw.acked[id] = true
					lw.mu.Unlock()
					i++
				case errors.Is(err, ErrNotLeader), errors.Is(err, ErrTimeout):
					// Unknown outcome: retry the same ID (idempotent).
					<-tick.C
				default:
					panic(fmt.Sprintf("load write %s: %v", id, err))
				}
			}
		}()
	}
	return lw
}

func (lw *loadWriter) count() int {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return len(lw.acked)
}

func (lw *loadWriter) finish() map[string]bool {
	close(lw.stop)
	lw.wg.Wait()
	return lw.acked
}

// TestFollowerKill9UnderLoad runs the third node as a separate process,
// SIGKILLs it while writes flow, restarts it from the same data dir (in this
// process, on the same address) and checks it converges to the same FSM hash
// with every acknowledged write. Both log stores.
func TestFollowerKill9UnderLoad(t *testing.T) {
	forEachStore(t, func(t *testing.T, store LogStore) {
		c := newCluster(t, 2, withStore(store))
		seed(c)
		dir := t.TempDir()
		child := startChild(t, c, "n3", dir, store)
		c.OnLeader(func(l *Store) error { return l.Join(context.Background(), "n3", child.addr) })

		lw := startLoad(c, 4, "k9")
		start := time.Now()
		ledgertest.Poll(t, "writes before the kill", func() error {
			if n := lw.count(); n < 100 && time.Since(start) < 20*time.Second {
				return fmt.Errorf("%d acked", n)
			}
			return nil
		})
		child.kill9()
		killedAt := lw.count()
		ledgertest.Poll(t, "writes after the kill", func() error {
			if n := lw.count(); n < killedAt+100 {
				return fmt.Errorf("%d acked", n)
			}
			return nil
		})
		acked := lw.finish()

		n3 := &ledgertest.Node{ID: "n3", Dir: dir}
		c.StartNode(n3, child.addr)
		c.Nodes = append(c.Nodes, n3)
		h := c.WaitConverged(c.Nodes...)
		requireAcked(t, c, idSet(acked))
		t.Logf("%d acked writes (%d before SIGKILL), converged hash %x", len(acked), killedAt, h[:8])
	})
}

// TestLeaderKill9AfterAck runs the leader as a separate process with writers
// inside it, SIGKILLs it the moment it has acknowledged its 50th write (more
// are in flight), and checks that the two survivors elect a leader holding
// every write the dead leader acknowledged; then the old leader restarts
// from its data dir and converges. Both log stores.
func TestLeaderKill9AfterAck(t *testing.T) {
	forEachStore(t, func(t *testing.T, store LogStore) {
		c := &ledgertest.Cluster{T: t, PKI: ledgertest.NewPKI(t), Tune: withStore(store)}
		for _, id := range []pki.NodeID{"n2", "n3"} {
			n := &ledgertest.Node{ID: id, Dir: t.TempDir()}
			c.StartNode(n, "127.0.0.1:0")
			c.Nodes = append(c.Nodes, n)
		}
		dir := t.TempDir()
		child := startChild(t, c, "n1", dir, store)
		child.must("bootstrap")
		for _, n := range c.Nodes {
			child.must("join " + string(n.ID) + " " + n.Addr)
		}
		child.must("seed")
		killed := make(chan struct{})
		var once sync.Once
		child.setOnAck(func(n int) {
			if n >= 50 {
				// Right after an acknowledged write, from the goroutine
				// that read the ACK.
				once.Do(func() { _ = child.cmd.Process.Signal(syscall.SIGKILL); close(killed) })
			}
		})
		child.must("load lk 4")
		select {
		case <-killed:
		case <-time.After(ledgertest.Wait):
			t.Fatalf("leader acknowledged too few writes: %d (%s)", len(child.ackedIDs()), child.stderrText())
		}
		child.kill9()
		acked := child.ackedIDs()
		if errs := child.loadErrors(); len(errs) > 0 {
			t.Fatalf("writes failed before the kill: %v", errs)
		}

		// The survivors elect a leader that holds every acknowledged write.
		l := c.WaitLeader(c.Nodes)
		ctx, cancel := context.WithTimeout(context.Background(), ledgertest.Wait)
		defer cancel()
		ledgertest.Poll(t, "a linearizable read on the new leader", func() error {
			return l.Store.ReadLinearizable(ctx, func(st *State) error {
				for id := range acked {
					if st.Requests[id] == nil {
						t.Fatalf("new leader %s lacks %s, acknowledged by the killed leader", l.ID, id)
					}
				}
				return nil
			})
		})
		after := createCmd("after-kill", 1<<40) // once: a retry must resend the same command
		c.OnLeader(func(s *Store) error {
			_, _, err := s.CreateRequest(context.Background(), "backend", after)
			return err
		})

		n1 := &ledgertest.Node{ID: "n1", Dir: dir}
		c.StartNode(n1, child.addr)
		c.Nodes = append(c.Nodes, n1)
		h := c.WaitConverged(c.Nodes...)
		requireAcked(t, c, acked)
		t.Logf("%d writes acknowledged before SIGKILL of the leader, converged hash %x", len(acked), h[:8])
	})
}

func idSet(ids map[string]bool) map[string]uint64 {
	out := map[string]uint64{}
	for id := range ids {
		out[id] = 0
	}
	return out
}

// TestSnapshotInstallAfterPartition cuts a follower off while the others
// write, certify checkpoints and compact their logs past it, so healing
// needs InstallSnapshot: a certified checkpoint, stored under its own index
// and term, which the follower verifies against its pinned genesis before
// taking every later entry from the leader's log. Four nodes: three are the
// checkpoint quorum of four, so the cluster certifies with one node cut off
// (three nodes could not: their quorum is all three). The WAL frees only
// whole sealed segments (and still serves truncated entries of its tail
// segment), so its segments are small enough here that the entries the
// follower misses are really gone.
func TestSnapshotInstallAfterPartition(t *testing.T) {
	var ops []ledgertest.Operator
	for _, o := range allOps {
		ops = append(ops, o.Operator)
	}
	g := ledgertest.GenesisFor([]pki.NodeID{"n1", "n2", "n3", "n4"}, testCluster, 2, testRules, ops...)
	g.CheckpointInterval = 16
	c := newCluster(t, 4, func(cfg *Config) {
		cfg.TrailingLogs = 32
		cfg.SnapshotThreshold = 1 << 20 // snapshots here are taken by hand
		cfg.WALSegmentSize = 8 << 10
		cfg.Genesis = &g
	})
	seedWith(c, g)
	l := c.WaitLeader(nil)
	var cut *ledgertest.Node
	for _, n := range c.Nodes {
		if n != l {
			cut = n
		}
	}
	c.Isolate(cut, true)
	for i := range 150 {
		cmd := createCmd(fmt.Sprintf("s-%d", i), uint64(i)) // once: a retry after a timeout must resend the same command
		c.OnLeaderAmong(c.Others(cut), func(s *Store) error {
			_, _, err := s.CreateRequest(context.Background(), "backend", cmd)
			return err
		})
	}
	// Snapshot once a checkpoint close enough to the log's end is certified.
	for _, n := range c.Others(cut) {
		ledgertest.Poll(t, "a snapshot of a recent certified checkpoint", func() error { return n.Store.Snapshot() })
	}
	c.Isolate(cut, false)
	h := c.WaitConverged(c.Nodes...)
	if got := cut.Store.RaftStats()["last_snapshot_index"]; got == "0" || got == "" {
		t.Fatalf("healed follower caught up without a snapshot (last_snapshot_index %q)", got)
	}
	if err := cut.Store.Halted(); err != nil {
		t.Fatal(err)
	}
	// The healed node must also survive a restart from its snapshot + log.
	if err := cut.Store.Close(); err != nil {
		t.Fatal(err)
	}
	c.StartNode(cut, cut.Addr)
	if got := c.WaitConverged(c.Nodes...); got != h {
		// More writes may not happen here, so the hash must be unchanged.
		t.Fatalf("hash after restart %x, before %x", got[:8], h[:8])
	}
}
