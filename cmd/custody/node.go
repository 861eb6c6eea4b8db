package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/softhsm"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a signer node",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newNodeRunCmd())
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
the leader's orchestration and the node RPC. Logs are JSON lines on stderr.

SIGTERM or SIGINT drains: no new signing sessions start, the running ones get
--drain to finish, then the node stops and exits 0. A second signal aborts at
once (exit 1). A node that cannot start prints one line saying why and exits 1.

The HSM PIN is read from the file hsm.pin_file names; it is never an argument.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config is required")
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			cfg, err := daemon.LoadConfig(configPath)
			if err != nil {
				return err
			}
			if cfg.HSM.Module == "" {
				if cfg.HSM.Module, err = softhsm.FindModule(); err != nil {
					return fmt.Errorf("hsm.module is not set and SoftHSM2 was not found (%v): set hsm.module to your PKCS#11 library", err)
				}
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			opts := daemon.Options{Logger: logger}
			if nodeTestOptions != nil {
				if err := nodeTestOptions(&opts); err != nil {
					return err
				}
			}
			n, err := daemon.Start(cfg, opts)
			if err != nil {
				return err
			}
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)
			sig := <-sigs
			logger.Info("signal: draining", "signal", sig.String(), "deadline", drain.String())
			ctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
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
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
