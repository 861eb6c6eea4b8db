package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/ledger"
)

// newAuditCmd groups the offline audit-chain tools. Both read a stopped
// node's data dir (snapshot + log, replayed by the ledger's own FSM) or, for
// verify, a JSON-lines export.
func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the hash-chained audit log",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditExportCmd())
	return cmd
}

// auditSummary is what verify reports.
type auditSummary struct {
	Source        string `json:"source"`
	Records       int    `json:"records"`
	Head          string `json:"head"`
	SnapshotIndex uint64 `json:"snapshot_index,omitempty"`
	LastIndex     uint64 `json:"last_index,omitempty"`
	OK            bool   `json:"ok"`
}

func newAuditVerifyCmd() *cobra.Command {
	var dataDir, file string
	cmd := &cobra.Command{
		Use:   "verify (--data-dir DIR | --file EXPORT.jsonl)",
		Short: "Check the audit hash chain and name the first bad record",
		Long: `verify recomputes every audit record's hash and link. With --data-dir it
reads a stopped node's snapshot and log; with --file an export written by
"custody audit export". The first bad record is named and the exit code is 1.
Compare the printed head hash across nodes to detect a node whose log was
rewritten consistently.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (dataDir == "") == (file == "") {
				return errors.New("audit verify: give exactly one of --data-dir or --file")
			}
			var sum auditSummary
			if file != "" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("audit verify: %w", err)
				}
				defer f.Close()
				n, head, err := ledger.VerifyAuditJSONL(f)
				if err != nil {
					return fmt.Errorf("audit verify %s: %w", file, err)
				}
				sum = auditSummary{Source: file, Records: n, Head: head, OK: true}
			} else {
				st, rep, err := ledger.ReadDataDir(dataDir)
				if err != nil {
					return fmt.Errorf("audit verify %s: %w", dataDir, err)
				}
				if err := ledger.VerifyChain(st.Audit); err != nil {
					return fmt.Errorf("audit verify %s: %w", dataDir, err)
				}
				head := ledger.GenesisHash
				if n := len(st.Audit); n > 0 {
					head = st.Audit[n-1].Hash
				}
				sum = auditSummary{Source: dataDir, Records: len(st.Audit), Head: head,
					SnapshotIndex: rep.SnapshotIndex, LastIndex: rep.LastIndex, OK: true}
			}
			return report(cmd, sum, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "audit chain OK: %d records, head %s\n", sum.Records, sum.Head)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "a stopped node's ledger data directory")
	cmd.Flags().StringVar(&file, "file", "", "a JSON-lines export to verify")
	return cmd
}

func newAuditExportCmd() *cobra.Command {
	var dataDir, out string
	cmd := &cobra.Command{
		Use:   "export --data-dir DIR --out FILE",
		Short: "Write the verified audit chain as JSON lines (never overwrites)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || out == "" {
				return errors.New("audit export: --data-dir and --out are required")
			}
			st, _, err := ledger.ReadDataDir(dataDir)
			if err != nil {
				return fmt.Errorf("audit export %s: %w", dataDir, err)
			}
			if err := ledger.VerifyChain(st.Audit); err != nil {
				return fmt.Errorf("audit export %s: %w", dataDir, err)
			}
			write := func(w io.Writer) error { return ledger.WriteAuditJSONL(w, st.Audit) }
			if err := createNew(out, 0o640, write); err != nil {
				return fmt.Errorf("audit export: %w", err)
			}
			sum := auditSummary{Source: dataDir, Records: len(st.Audit), OK: true}
			if n := len(st.Audit); n > 0 {
				sum.Head = st.Audit[n-1].Hash
			}
			return report(cmd, sum, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "wrote %d audit records to %s (head %s)\n", sum.Records, out, sum.Head)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "a stopped node's ledger data directory")
	cmd.Flags().StringVar(&out, "out", "", "output file (must not exist)")
	return cmd
}
