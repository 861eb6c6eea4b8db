package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/ledger"
)

// newLedgerCmd groups offline tools for a stopped node's ledger data dir.
func newLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Offline tools for a stopped node's ledger data dir",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newLedgerMigrateCmd())
	return cmd
}

func newLedgerMigrateCmd() *cobra.Command {
	var dataDir, to string
	cmd := &cobra.Command{
		Use:   "migrate --data-dir DIR --to wal|boltdb",
		Short: "Move a stopped node's raft log to another log store (ledger.log_store)",
		Long: `migrate copies a stopped node's raft log and its term and vote from the log
store its data dir holds (wal/ or raft.db) into the other one, reads every
entry back and compares it, renames the new store into place and keeps the
old one as NAME.pre-migrate-TIMESTAMP. Then set ledger.log_store to the new
store and start the node. Snapshots are not touched. If it is interrupted,
run it again: it finishes the job. A running node's store is locked and
migrate fails without changing anything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || to == "" {
				return errors.New("ledger migrate: --data-dir and --to are required")
			}
			kind := ledger.LogStore(to)
			if kind != ledger.LogStoreWAL && kind != ledger.LogStoreBoltDB {
				return fmt.Errorf("ledger migrate: --to %q: want %q or %q", to, ledger.LogStoreWAL, ledger.LogStoreBoltDB)
			}
			rep, err := ledger.MigrateLogStore(dataDir, kind)
			if err != nil {
				return err
			}
			return report(cmd, rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "migrated %s from %s to %s: log entries %d..%d; old store kept as %s\n",
					dataDir, rep.From, rep.To, rep.FirstIndex, rep.LastIndex, rep.Backup)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "a stopped node's ledger data directory")
	cmd.Flags().StringVar(&to, "to", "", `the target log store: "wal" or "boltdb"`)
	return cmd
}
