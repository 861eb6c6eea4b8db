package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/softhsm"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a signer node",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newNodeRunCmd(), newNodeQuarantineCmd())
	return cmd
}

func newNodeQuarantineCmd() *cobra.Command {
	var (
		configPath string
		clear      string
	)
	cmd := &cobra.Command{
		Use:   "quarantine --config FILE [--clear NODE]",
		Short: "Show or clear the tss failure budget a stopped node keeps in its data dir",
		Long: `A node counts the signing and keygen failures it can prove a peer caused; a
peer reaching the limit (3) is quarantined: the node refuses every session with
it until a person clears it. The counts live in DATA_DIR/tss-budget.json and
survive restarts.

Without --clear, print each party's failures and whether it is quarantined.
With --clear NODE, reset that party's count. Stop the node first: a running
node rewrites the file after each failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config is required")
			}
			cfg, err := daemon.LoadConfig(configPath)
			if err != nil {
				return err
			}
			if clear != "" {
				if err := daemon.ClearQuarantine(cfg.DataDir, pki.NodeID(clear)); err != nil {
					return err
				}
				return report(cmd, map[string]string{"cleared": clear}, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "cleared the failures of %s\n", clear)
					return err
				})
			}
			limit, failures, err := daemon.ReadBudget(cfg.DataDir)
			if err != nil {
				return err
			}
			type row struct {
				Node        pki.NodeID `json:"node"`
				Failures    int        `json:"failures"`
				Quarantined bool       `json:"quarantined"`
			}
			rows := []row{}
			for _, p := range slices.Sorted(maps.Keys(failures)) {
				rows = append(rows, row{p, failures[p], failures[p] >= limit})
			}
			return report(cmd, map[string]any{"limit": limit, "parties": rows}, func(w io.Writer) error {
				if len(rows) == 0 {
					_, err := fmt.Fprintf(w, "no failures recorded (limit %d)\n", limit)
					return err
				}
				for _, r := range rows {
					state := ""
					if r.Quarantined {
						state = "  QUARANTINED"
					}
					fmt.Fprintf(w, "%-12s %d of %d failures%s\n", r.Node, r.Failures, limit, state)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the node's config file")
	cmd.Flags().StringVar(&clear, "clear", "", "reset this party's failures (lifts its quarantine)")
	return cmd
}

// nodeTestOptions is nil in the custody binary: only this package's
// process tests set it (in a _test.go file, in the child processes they
// start from the test binary), to hand nodes committed pre-params
// fixtures instead of generating them (about 30 s each). Fixtures are
// refused outside test binaries anyway (preparams.Validate).
var nodeTestOptions func(*daemon.Options) error

func newNodeRunCmd() *cobra.Command {
	var (
		configPath string
		drain      time.Duration
		logLevel   string
	)
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Start a signer node from its config and run until SIGTERM or SIGINT",
		Long: `Start one signer node (docs/node.md): check the genesis file against the hash
the config pins, open the HSM token and its key-encryption key, claim the data
dir, start the ledger (a new cluster bootstraps from the genesis node set), the
tss engine and transport, the sealed shares, the watermark, the member's checks,
the leader's orchestration, the node RPC, the backend API and, with
listen.metrics, /metrics, /healthz and /readyz. Logs go to stderr as JSON
lines (log.format: text for slog's key=value lines) at log.level (info);
--log-level overrides the config's level.

SIGTERM or SIGINT drains: no new signing sessions start, the running ones get
--drain to finish, then the node stops and exits 0. A second signal aborts at
once (exit 1). A node that cannot start prints one line saying why and exits 1.

The HSM PIN is read from the file hsm.pin_file names; it is never an argument.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config is required")
			}
			if logLevel != "" {
				if _, err := (daemon.Log{Level: logLevel}).SlogLevel(); err != nil {
					return fmt.Errorf("--log-level: %w", err)
				}
			}
			cfg, err := daemon.LoadConfig(configPath)
			if err != nil {
				return err
			}
			if logLevel != "" {
				cfg.Log.Level = logLevel
			}
			level, err := cfg.Log.SlogLevel()
			if err != nil {
				return fmt.Errorf("log.level: %w", err)
			}
			if cfg.HSM.Module == "" {
				if cfg.HSM.Module, err = softhsm.FindModule(); err != nil {
					return fmt.Errorf("hsm.module is not set and SoftHSM2 was not found (%v): set hsm.module to your PKCS#11 library", err)
				}
			}
			logger, err := daemon.NewLogger(cmd.ErrOrStderr(), cfg.Log.Format, level)
			if err != nil {
				return err
			}
			opts := daemon.Options{Logger: logger}
			if nodeTestOptions != nil {
				if err := nodeTestOptions(&opts); err != nil {
					return err
				}
			}
			// Signals are caught before the node starts: a SIGTERM during
			// the start is a drain right after it, never a kill.
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)
			n, err := daemon.Start(cfg, opts)
			if err != nil {
				return err
			}
			var fatal error
			select {
			case sig := <-sigs:
				logger.Info("signal: draining", "signal", sig.String(), "deadline", drain.String())
			case fatal = <-n.Fatal():
			}
			ctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			if fatal != nil {
				_ = n.Shutdown(ctx)
				return fatal
			}
			done := make(chan error, 1)
			go func() { done <- n.Shutdown(ctx) }()
			select {
			case err := <-done:
				return err
			case sig := <-sigs:
				cancel()
				<-done
				return fmt.Errorf("second signal (%s): running sessions aborted", sig)
			}
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the node's config file (docs/config.md)")
	cmd.Flags().DurationVar(&drain, "drain", 2*time.Minute, "how long running sessions get to finish after SIGTERM")
	cmd.Flags().StringVar(&logLevel, "log-level", "", "debug, info, warn or error (overrides the config's log.level, default info)")
	return cmd
}
