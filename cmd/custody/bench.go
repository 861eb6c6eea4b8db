package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/bench"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/devnet"
	"github.com/custody-dev/custody/pki"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a devnet through its APIs",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newBenchWithdrawCmd())
	return cmd
}

// benchFlags are bench withdraw's settings.
type benchFlags struct {
	dir                   string
	nodes                 int
	count, concurrency    int
	amount                string
	poll                  time.Duration
	warmup                int
	latencyCount          int
	createNode            string
	createCount, createC  int
	skipCreate            bool
	sequential, baseCount int
	baseC                 int
	skipBaseline          bool
	timeout               time.Duration
	idleLimit             time.Duration
}

// validate refuses values that cannot make a measurement.
func (f *benchFlags) validate() error {
	switch {
	case f.count < 1 || f.count > 100_000:
		return fmt.Errorf("--count %d: want 1..100000", f.count)
	case f.concurrency < 1 || f.concurrency > 256:
		return fmt.Errorf("--concurrency %d: want 1..256", f.concurrency)
	case f.concurrency > f.count:
		return fmt.Errorf("--concurrency %d is more than --count %d", f.concurrency, f.count)
	case f.nodes < 2 || f.nodes > 16:
		return fmt.Errorf("--nodes %d: want 2..16 (a 2-of-n wallet)", f.nodes)
	case f.poll < time.Millisecond || f.poll > 5*time.Second:
		return fmt.Errorf("--poll %s: want 1ms..5s", f.poll)
	case f.warmup < 0 || f.warmup > 100:
		return fmt.Errorf("--warmup %d: want 0..100", f.warmup)
	case f.latencyCount < 0 || f.latencyCount > 10_000:
		return fmt.Errorf("--latency-count %d: want 0..10000", f.latencyCount)
	case !f.skipCreate && (f.createCount < 1 || f.createCount > 100_000):
		return fmt.Errorf("--create-count %d: want 1..100000", f.createCount)
	case !f.skipCreate && (f.createC < 1 || f.createC > 256):
		return fmt.Errorf("--create-concurrency %d: want 1..256", f.createC)
	case !f.skipBaseline && (f.sequential < 1 || f.sequential > 1000):
		return fmt.Errorf("--baseline-sessions %d: want 1..1000", f.sequential)
	case !f.skipBaseline && (f.baseC < 1 || f.baseC > 64):
		return fmt.Errorf("--baseline-concurrency %d: want 1..64", f.baseC)
	case !f.skipBaseline && (f.baseCount < f.baseC || f.baseCount > 10_000):
		return fmt.Errorf("--baseline-count %d: want --baseline-concurrency (%d)..10000", f.baseCount, f.baseC)
	case f.timeout <= 0:
		return fmt.Errorf("--timeout %s: want a positive duration", f.timeout)
	case f.idleLimit < 0:
		return fmt.Errorf("--idle-wait %s: want 0 or a positive duration", f.idleLimit)
	}
	a, err := amount.ParseUnits(f.amount, 18)
	if err != nil {
		return fmt.Errorf("--amount %q: %w", f.amount, err)
	}
	if a.Big().Sign() <= 0 {
		return fmt.Errorf("--amount %q: want a positive amount of ETH", f.amount)
	}
	if one, _ := amount.ParseUnits("1", 18); a.Big().Cmp(one.Big()) > 0 {
		return fmt.Errorf("--amount %q: at most 1 ETH per withdrawal (the wallet holds about 10, and the devnet's rules route above 2 cold)", f.amount)
	}
	return nil
}

func newBenchWithdrawCmd() *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "withdraw --concurrency N --count M [--dir DIR]",
		Short: "Time withdrawals from the final approval to the signed transaction, creates, and plain tss-lib",
		Long: `Measure withdrawals end to end against a devnet, and plain tss-lib signing on
this machine for comparison.

With --dir DIR it uses the devnet "custody devnet --keep --dir DIR" runs
(DIR/devnet.json: the API URLs, the CA, the backend's and operators'
credential files); its ETH wallet must be active with an allowlisted, active
destination (the devnet story leaves both). Without --dir it starts a devnet
in a temporary directory (--nodes nodes, no Bitcoin), creates the hot ETH
wallet by distributed keygen, funds it and allowlists a fresh destination,
and stops it at the end.

It then waits (at most --idle-wait) for the node processes to go idle: after
a keygen every node refills its tss pre-params, seconds of CPU that would be
measured as signing otherwise.

Latency: --latency-count withdrawals one at a time first (as below); their
p50 is what the latency target compares with a single plain session.

Withdrawals: --count ETH withdrawals of --amount to the allowlisted
destination, --concurrency of them in flight (after --warmup unmeasured
ones). Each is created through the backend API (the backend's device signs
the intent), approved by alice then bob through the operator API (each
approval signed in this process with the operator's device key from the
devnet's files: running the operator CLI per approval would measure process
start-up), and read (GET, backend API) every --poll until it carries the
signed transaction. Withdrawal i uses node i mod n for all its calls.
Reported: from the final approval's acknowledgement (its POST answered, the
approval committed) to the first read showing the signature: p50, p99, max
(resolution: --poll plus one read); and withdrawals/s = signed / (first
create → last signed).

Creates: --create-count withdrawals created through the API, --create-
concurrency at a time, round robin over the nodes (a follower forwards to
the leader), never approved: policy evaluated, request and nonce committed.
They expire after two minutes, which releases their nonces. Reported: p99
and requests/s (target: 1,000/s with p99 ≤ 25 ms at concurrency 16).

Plain tss-lib (unless --skip-baseline): pre-params generated fresh for three
parties (about 30 s each on this project's two cores, concurrently; the
committed fixtures are for tests only), one 3-party keygen, then
--baseline-sessions single 2-of-3 sessions one after another (their p50 is
the latency baseline) and --baseline-count sessions --baseline-concurrency
at a time (signatures/s). Ratios against the targets: withdrawal p50 ≤ 1.3×
the plain single-session p50; withdrawals/s at concurrency 4 ≥ 0.8× plain
signatures/s at 4.

The report is a table, or JSON with -o json. The exit status is non-zero
when a withdrawal or a create failed (the report is printed first).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			if err := f.validate(); err != nil {
				return fmt.Errorf("bench withdraw: %w", err)
			}
			if cmd.Flags().Changed("nodes") && f.dir != "" {
				return errors.New("bench withdraw: --nodes applies to a devnet this run starts, not to --dir")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, f.timeout)
			defer cancel()
			r, err := runBenchWithdraw(ctx, f, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("bench withdraw: %w", err)
			}
			if err := report(cmd, r, func(w io.Writer) error { r.Text(w); return nil }); err != nil {
				return err
			}
			failed := r.Withdraw.Failed
			if r.Sequential != nil {
				failed += r.Sequential.Failed
			}
			if r.Create != nil {
				failed += r.Create.Failed
			}
			if failed > 0 {
				return fmt.Errorf("bench withdraw: %d withdrawals and creates failed (see the report)", failed)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", "", "a running devnet's directory (custody devnet --keep --dir DIR); default: start one")
	fl.IntVar(&f.nodes, "nodes", 4, "signer nodes of the devnet this run starts")
	fl.IntVar(&f.count, "count", 20, "withdrawals to measure")
	fl.IntVar(&f.concurrency, "concurrency", 4, "withdrawals in flight")
	fl.StringVar(&f.amount, "amount", "0.0001", "ETH per withdrawal")
	fl.DurationVar(&f.poll, "poll", 25*time.Millisecond, "how often a withdrawal being signed is read (the latency's resolution)")
	fl.IntVar(&f.warmup, "warmup", 1, "unmeasured withdrawals first")
	fl.IntVar(&f.latencyCount, "latency-count", 5, "withdrawals one at a time before the concurrent run, for the latency ratio (0: none)")
	fl.StringVar(&f.createNode, "create-node", "", "send every create to this node (n1, n2, ...) instead of round robin")
	fl.IntVar(&f.createCount, "create-count", 400, "withdrawals to create for the creation measure")
	fl.IntVar(&f.createC, "create-concurrency", 16, "creates in flight")
	fl.BoolVar(&f.skipCreate, "skip-create", false, "do not measure creation")
	fl.IntVar(&f.sequential, "baseline-sessions", 5, "plain tss-lib single sessions, one after another")
	fl.IntVar(&f.baseCount, "baseline-count", 12, "plain tss-lib sessions for signatures/s")
	fl.IntVar(&f.baseC, "baseline-concurrency", 4, "plain tss-lib sessions at a time")
	fl.BoolVar(&f.skipBaseline, "skip-baseline", false, "do not run plain tss-lib (no ratios; saves the pre-params)")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Minute, "give up after this long")
	fl.DurationVar(&f.idleLimit, "idle-wait", 4*time.Minute, "wait at most this long for the nodes to go idle before measuring (0: do not wait)")
	return cmd
}

// benchApprovers answer every withdrawal: the devnet's operators with
// Ed25519 device key files (carol's answers are signed in her PKCS#11 token
// after the devnet story).
var benchApprovers = []string{"alice", "bob"}

// benchRateLimit is the api.rate_limit of a devnet bench withdraw starts:
// the most the node config takes.
var benchRateLimit = daemon.RateLimit{PerMinute: 1_000_000, Burst: 100_000}

func runBenchWithdraw(ctx context.Context, f *benchFlags, progress io.Writer) (*bench.Report, error) {
	say := func(format string, a ...any) { fmt.Fprintf(progress, format+"\n", a...) }
	r := &bench.Report{Machine: bench.ThisMachine(time.Now()), Devnet: f.dir}
	var info devnet.Info
	if f.dir != "" {
		b, err := os.ReadFile(filepath.Join(f.dir, "devnet.json"))
		if err != nil {
			return nil, fmt.Errorf("%w (is a devnet running with --keep --dir %s?)", err, f.dir)
		}
		if err := json.Unmarshal(b, &info); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(f.dir, "devnet.json"), err)
		}
		r.Notes = append(r.Notes, "the devnet's api.rate_limit applies (default: 20 requests/s per principal and node, burst 100): answers 429 are retried by the withdrawals and counted as failures by the creates")
	} else {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("the custody binary: %w", err)
		}
		say("starting a devnet (%d nodes; they generate tss pre-params: about a minute on two cores)", f.nodes)
		n, err := devnet.Start(ctx, devnet.Config{Bin: self, Env: devnetEnv(), NodeEnv: devnetNodeEnv, Nodes: f.nodes, Progress: progress,
			RateLimit: benchRateLimit})
		if err != nil {
			return nil, err
		}
		defer n.Stop()
		if err := bench.Prepare(ctx, n, say); err != nil {
			return nil, fmt.Errorf("devnet setup: %w (node logs in %s)", err, filepath.Join(n.Dir, "logs"))
		}
		info, r.Started = n.Info(), true
		r.Notes = append(r.Notes, fmt.Sprintf("the devnet this run started allows each principal %d requests a minute per node, burst %d (api.rate_limit), so the API's rate limit is not what is measured; the default (%d a minute, burst %d) holds one backend to %d requests/s per node",
			benchRateLimit.PerMinute, benchRateLimit.Burst, rest.DefaultRatePerMinute, rest.DefaultRateBurst, rest.DefaultRatePerMinute/60))
	}
	r.Nodes = len(info.APIs)
	t, err := bench.Open(info, benchApprovers)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	dest, err := t.Discover(ctx, devnet.ETHWallet)
	if err != nil {
		return nil, err
	}
	say("wallet %s (%s) pays %s", dest.Wallet, dest.From, dest.To)
	if f.idleLimit > 0 {
		var pids []int
		for _, p := range info.PIDs {
			pids = append(pids, p)
		}
		say("waiting for the nodes to go idle (at most %s)", f.idleLimit)
		waited, idle := bench.WaitIdle(ctx, pids, 0.2, f.idleLimit)
		r.IdleWaitSeconds, r.Idle = waited.Seconds(), idle
		if !idle {
			r.Notes = append(r.Notes, fmt.Sprintf("the nodes did not go idle within %s: measured while they used CPU", f.idleLimit))
		}
	}
	if f.warmup > 0 {
		say("warm-up: %d withdrawals", f.warmup)
		w, err := t.Withdraw(ctx, bench.WithdrawConfig{Count: f.warmup, Concurrency: 1, Dest: dest, Amount: f.amount, Approvers: benchApprovers, Poll: f.poll})
		if err != nil {
			return nil, err
		}
		if w.Failed > 0 {
			return nil, fmt.Errorf("warm-up withdrawal failed: %v", w.Errors)
		}
	}
	if f.latencyCount > 0 {
		say("withdrawals one at a time: %d", f.latencyCount)
		l, err := t.Withdraw(ctx, bench.WithdrawConfig{Count: f.latencyCount, Concurrency: 1, Dest: dest, Amount: f.amount, Approvers: benchApprovers, Poll: f.poll})
		if err != nil {
			return nil, err
		}
		r.Sequential = &l
	}
	say("withdrawals: %d, %d in flight", f.count, f.concurrency)
	if r.Withdraw, err = t.Withdraw(ctx, bench.WithdrawConfig{Count: f.count, Concurrency: f.concurrency, Dest: dest,
		Amount: f.amount, Approvers: benchApprovers, Poll: f.poll}); err != nil {
		return nil, err
	}
	if !f.skipCreate {
		say("creates: %d, %d in flight", f.createCount, f.createC)
		node := ""
		if f.createNode != "" {
			if node = info.APIs[pki.NodeID(f.createNode)]; node == "" {
				return nil, fmt.Errorf("--create-node %s: the devnet has no such node", f.createNode)
			}
		}
		c, err := t.Create(ctx, bench.CreateConfig{Count: f.createCount, Concurrency: f.createC, Dest: dest, Amount: f.amount, ExpiresIn: 2 * time.Minute, Node: node})
		if err != nil {
			return nil, err
		}
		r.Create = &c
	}
	if !f.skipBaseline {
		p, err := bench.Plain(ctx, bench.PlainConfig{Sequential: f.sequential, Concurrency: f.baseC, Count: f.baseCount, Progress: progress})
		if err != nil {
			return nil, err
		}
		r.Plain = &p
		r.Notes = append(r.Notes, "plain tss-lib ran in this process after the devnet measures, with the devnet's nodes running idle")
	}
	r.Compute()
	return r, nil
}
