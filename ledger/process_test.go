package ledger_test

import (
	"bufio"
	"context"
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

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
)

// TestHelperProcess is not a test: TestFollowerKill9UnderLoad re-executes the
// test binary with LEDGER_HELPER_NODE=1 to run one ledger node in its own
// process, so it can be SIGKILLed for real.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("LEDGER_HELPER_NODE") != "1" {
		t.Skip("helper process for TestFollowerKill9UnderLoad")
	}
	pkiDir := os.Getenv("LEDGER_HELPER_PKI")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(pkiDir, name))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		return b
	}
	ident, err := pki.LoadIdentity(read("node.crt"), read("node.key"), read("ca.crt"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	stream, err := ListenStream(os.Getenv("LEDGER_HELPER_BIND"), ident, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := Open(ledgertest.Config(pki.NodeID(os.Getenv("LEDGER_HELPER_ID")), os.Getenv("LEDGER_HELPER_DIR"), stream))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("READY %s\n", s.Addr())
	// Run until the parent closes stdin (or kills us, which is the point).
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = s.Close()
	os.Exit(0)
}

type childNode struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startChild(t *testing.T, c *ledgertest.Cluster, id pki.NodeID, dir string) *childNode {
	t.Helper()
	pkiDir := t.TempDir()
	cert, key, err := c.PKI.CA.IssueNode(id, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"node.crt": cert, "node.key": key, "ca.crt": c.PKI.CA.PEM()} {
		if err := os.WriteFile(filepath.Join(pkiDir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LEDGER_HELPER_NODE=1", "LEDGER_HELPER_ID="+string(id), "LEDGER_HELPER_DIR="+dir,
		"LEDGER_HELPER_BIND=127.0.0.1:0", "LEDGER_HELPER_PKI="+pkiDir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- a
			}
		}
		close(ready)
	}()
	select {
	case a, ok := <-ready:
		if !ok {
			t.Fatal("helper node exited before it was ready")
		}
		return &childNode{cmd: cmd, stdin: stdin, addr: a}
	case <-time.After(ledgertest.Wait):
		t.Fatal("helper node not ready in time")
	}
	return nil
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
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _, err := leader.CreateRequest(ctx, "backend", createCmd(id, uint64(w)<<32|uint64(i)))
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
// with every acknowledged write.
func TestFollowerKill9UnderLoad(t *testing.T) {
	c := newCluster(t, 2)
	seed(c)
	dir := t.TempDir()
	child := startChild(t, c, "n3", dir)
	c.OnLeader(func(l *Store) error { return l.Join(context.Background(), "n3", child.addr) })

	lw := startLoad(c, 4, "k9")
	start := time.Now()
	ledgertest.Poll(t, "writes before the kill", func() error {
		if n := lw.count(); n < 100 && time.Since(start) < 20*time.Second {
			return fmt.Errorf("%d acked", n)
		}
		return nil
	})
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := child.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die of SIGKILL: %v", err)
	}
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
	for _, n := range c.Nodes {
		_ = n.Store.ReadLocal(func(st *State) error {
			for id := range acked {
				if st.Requests[id] == nil {
					t.Errorf("%s lost acknowledged %s", n.ID, id)
				}
			}
			return VerifyChain(st.Audit)
		})
	}
	t.Logf("%d acked writes (%d before SIGKILL), converged hash %x", len(acked), killedAt, h[:8])
}

// TestSnapshotInstallAfterPartition cuts a follower off while the leader
// writes and compacts its log past it, so healing needs InstallSnapshot; the
// follower's Restore must discard its old state and end at the same hash.
func TestSnapshotInstallAfterPartition(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.TrailingLogs = 16; cfg.SnapshotThreshold = 64 })
	seed(c)
	l := c.WaitLeader(nil)
	var cut *ledgertest.Node
	for _, n := range c.Nodes {
		if n != l {
			cut = n
		}
	}
	c.Isolate(cut, true)
	for i := range 80 {
		c.OnLeaderAmong(c.Others(cut), func(s *Store) error {
			_, _, err := s.CreateRequest(context.Background(), "backend", createCmd(fmt.Sprintf("s-%d", i), uint64(i)))
			return err
		})
	}
	for _, n := range c.Others(cut) {
		if err := n.Store.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	c.Isolate(cut, false)
	h := c.WaitConverged(c.Nodes...)
	if got := cut.Store.RaftStats()["last_snapshot_index"]; got == "0" || got == "" {
		t.Fatalf("healed follower caught up without a snapshot (last_snapshot_index %q)", got)
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
