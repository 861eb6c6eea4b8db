package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/devnet"
)

// devnetNodeEnv, when set (tests), adds each node process's environment.
var devnetNodeEnv func(i, n int) []string

func newDevnetCmd() *cobra.Command {
	var (
		asJSON  bool
		keep    bool
		dir     string
		btcd    string
		noBTC   bool
		ethNode string
		geth    string
		nodes   int
		cache   string
	)
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "Run a whole cluster on this machine and walk the withdrawal story",
		Long: `Run a custody cluster on this machine and walk the withdrawal story
through its real APIs (what "make demo" runs).

The devnet provisions one SoftHSM2 token per node (plus one for an
operator's device), runs "custody cluster init", starts four
"custody node run" processes on loopback, serves an Ethereum chain
(go-ethereum's simulated backend, over JSON-RPC; with --eth-node geth a
real "geth --dev" process instead, found on PATH, in ./.bin or --geth)
with an ERC-20 token it deploys, and starts a btcd regtest node (when
btcd is found: on PATH, in ./.bin, or --btcd; --no-btc runs none). It
then creates 2-of-3 hot ETH and BTC wallets by distributed keygen, funds
them, allowlists destinations and shows:

  1. a withdrawal to a non-allowlisted address denied, with the reason;
  2. ETH, ERC-20 and BTC withdrawals waiting after one approval, signed,
     broadcast and confirmed after the second;
  3. a withdrawal above the hot limit routed cold, awaiting a ceremony;
  4. a lock refusing the next withdrawal, and an unlock after its delay;
  5. a rejected withdrawal, never signed.

--json prints one JSON object per line per step; each signed withdrawal's
line carries what verifying it needs (raw transaction, and for Bitcoin the
outputs it spends). --keep leaves the cluster running after the story and
writes DIR/devnet.json (API URLs, CA, credential files); Ctrl-C or
"custody devnet stop --dir DIR" stops every process the devnet started.
Without --dir the files live in a temporary directory removed at the end.

tss pre-params (Paillier keys and safe primes: tens of seconds of CPU
each) come from a cache, --preparams-cache (default: custody/devnet-preparams
in the user's cache directory; "none" for none): the nodes take sets from
it before generating their own and return their unused sets at the end,
each set used once, and a background process at the lowest CPU priority
tops it up to 8 sets. The first devnet on a machine makes them (a minute
or two on two cores); the next ones start at once. "custody devnet
preparams" fills the cache ahead of time. Nodes refuse such a cache unless
every chain they sign for is a local development chain (the sets sit in
plain files).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			if format == "json" {
				asJSON = true
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("devnet: the custody binary: %w", err)
			}
			switch {
			case noBTC:
				btcd = ""
			case btcd == "":
				btcd = findTool(self, "btcd")
			}
			if geth != "" && !cmd.Flags().Changed("eth-node") {
				ethNode = devnet.ETHGeth
			}
			switch ethNode {
			case devnet.ETHEmbedded:
				if geth != "" {
					return errors.New("devnet: --geth with --eth-node embedded: the embedded chain runs no geth")
				}
			case devnet.ETHGeth:
				if geth == "" {
					geth = findTool(self, "geth")
				}
				if geth == "" {
					return errors.New("devnet: --eth-node geth: no geth found on PATH or in ./.bin (make tools-geth installs geth v1.16.7 into .bin; or pass --geth PATH)")
				}
			default:
				return fmt.Errorf("devnet: --eth-node %q: want embedded or geth", ethNode)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			var progress io.Writer = cmd.ErrOrStderr()
			if !asJSON {
				progress = out
				fmt.Fprintln(out, "starting the devnet")
			}
			if cache == "none" {
				cache = ""
			}
			n, err := devnet.Start(ctx, devnet.Config{Bin: self, Env: devnetEnv(), NodeEnv: devnetNodeEnv, Dir: dir, Keep: keep,
				Nodes: nodes, Btcd: btcd, ETHNode: ethNode, Geth: geth, Progress: progress, PreParamsCache: cache})
			if err != nil {
				return err
			}
			defer n.Stop()
			storyCtx, cancel := context.WithTimeout(ctx, 15*time.Minute)
			defer cancel()
			steps, err := n.RunStory(storyCtx, func(st devnet.Step) {
				if asJSON {
					devnet.PrintJSON(out, st)
				} else {
					devnet.PrintText(out, st)
				}
			})
			if err != nil {
				return fmt.Errorf("devnet: the story stopped: %w (node logs in %s)", err, filepath.Join(n.Dir, "logs"))
			}
			if !asJSON {
				fmt.Fprintln(out)
				devnet.PrintTable(out, steps)
			}
			if !keep {
				return nil
			}
			kept := devnet.Step{Step: "devnet", Outcome: "kept running", Detail: n.InfoFile()}
			if asJSON {
				devnet.PrintJSON(out, kept)
			}
			info, _ := json.MarshalIndent(n.Info(), "", "  ")
			fmt.Fprintf(progress, "\nthe devnet keeps running (blocks are mined every few seconds): %s\n%s\nCtrl-C, or custody devnet stop --dir %s, stops it\n", n.InfoFile(), info, n.Dir)
			n.Mine(ctx)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line per step (same as -o json)")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the cluster running after the story (until Ctrl-C)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the devnet's files (default: a temporary one, removed at the end)")
	cmd.Flags().StringVar(&btcd, "btcd", "", "btcd binary (default: PATH, then .bin/btcd)")
	cmd.Flags().BoolVar(&noBTC, "no-btc", false, "run no Bitcoin node (the Bitcoin steps are skipped)")
	cmd.Flags().StringVar(&ethNode, "eth-node", devnet.ETHEmbedded, "Ethereum node: embedded (go-ethereum's simulated backend in this process) or geth (a real geth --dev process)")
	cmd.Flags().StringVar(&geth, "geth", "", "geth binary for --eth-node geth, which it implies (default: PATH, then .bin/geth)")
	cmd.Flags().IntVar(&nodes, "nodes", 4, "signer nodes")
	cmd.Flags().StringVar(&cache, "preparams-cache", devnetPreParamsCache(), `tss pre-params cache directory ("none": every node generates its own)`)
	cmd.AddCommand(newDevnetStopCmd(), newDevnetPreParamsCmd())
	return cmd
}

// devnetPreParamsCache is --preparams-cache's default (tests: none; their
// nodes use committed fixtures).
var devnetPreParamsCache = devnet.DefaultPreParamsCache

func newDevnetPreParamsCmd() *cobra.Command {
	var (
		cache  string
		target int
		keep   bool
	)
	cmd := &cobra.Command{
		Use:   "preparams",
		Short: "Fill the devnet's tss pre-params cache ahead of time",
		Long: `Generate tss pre-params into the devnet's cache until it holds --target sets
(each takes tens of seconds of CPU), so the next "custody devnet" starts
without generating. With --keep it then goes on topping the cache up until
SIGTERM (what a running devnet starts in the background, at the lowest CPU
priority). The sets sit in plain files: only devnet nodes accept them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cache == "" || cache == "none" {
				return errors.New("devnet preparams: --cache names no directory")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			return devnet.FillPreParams(ctx, cache, target, keep, func(format string, a ...any) {
				fmt.Fprintf(out, format+"\n", a...)
			})
		},
	}
	cmd.Flags().StringVar(&cache, "cache", devnetPreParamsCache(), "the cache directory")
	cmd.Flags().IntVar(&target, "target", devnet.DefaultPreParamsTarget, "sets to keep in the cache (1..64)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep topping the cache up until SIGTERM")
	return cmd
}

// devnetEnv is what every child of the devnet gets in addition to this
// process's environment (tests: the flag that makes the test binary the
// CLI).
var devnetEnv = func() []string { return nil }

// findTool looks for a chain's binary (btcd, geth) on PATH, next to the
// custody binary, then in ./.bin (make tools and make tools-geth install
// them there).
func findTool(self, name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range []string{filepath.Join(filepath.Dir(self), name), filepath.Join(".bin", name)} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			abs, _ := filepath.Abs(p)
			return abs
		}
	}
	return ""
}

func newDevnetStopCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "stop --dir DIR",
		Short: "Stop a devnet started with --keep --dir DIR",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("devnet stop: --dir is required")
			}
			b, err := os.ReadFile(filepath.Join(dir, "devnet.json"))
			if err != nil {
				return fmt.Errorf("devnet stop: %w (is a devnet running with --dir %s?)", err, dir)
			}
			var info devnet.Info
			if err := json.Unmarshal(b, &info); err != nil {
				return fmt.Errorf("devnet stop: devnet.json: %w", err)
			}
			if info.PID <= 0 {
				return errors.New("devnet stop: devnet.json names no devnet process")
			}
			// The PID may be stale (a crashed devnet, then reuse) or the
			// file planted: signal only a process running custody devnet
			// with this very directory.
			abs, err := filepath.Abs(dir)
			if err != nil {
				return fmt.Errorf("devnet stop: %w", err)
			}
			if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", info.PID)); err != nil ||
				!strings.Contains(string(cl), "\x00devnet\x00") || filepath.Clean(info.Dir) != abs {
				return fmt.Errorf("devnet stop: process %d is not the devnet of %s (stale devnet.json?); nothing signalled", info.PID, abs)
			}
			p, err := os.FindProcess(info.PID)
			if err == nil {
				err = p.Signal(syscall.SIGTERM)
			}
			if err != nil {
				return fmt.Errorf("devnet stop: process %d: %w", info.PID, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sent SIGTERM to the devnet (process %d); it stops its nodes and chains\n", info.PID)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the devnet's directory (its devnet.json)")
	return cmd
}
