package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/ledger"
)

// newAuditCmd groups the offline audit-chain tools. They read a stopped
// node's data dir (snapshot + log, replayed by the ledger's own FSM) or, for
// verify, a JSON-lines export; heads writes the signed audit heads verify
// checks a chain against.
func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the hash-chained audit log",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditExportCmd(), newAuditHeadsCmd())
	return cmd
}

// auditSummary is what verify reports.
type auditSummary struct {
	Source        string `json:"source"`
	Records       int    `json:"records"`
	Head          string `json:"head"`
	SnapshotIndex uint64 `json:"snapshot_index,omitempty"`
	LastIndex     uint64 `json:"last_index,omitempty"`
	// Heads is how many signed heads the chain was checked against and
	// SignedSeq the highest audit seq they sign; TruncationChecked is false
	// without --heads (a chain cut after any record then verifies).
	Heads             int    `json:"heads"`
	SignedSeq         uint64 `json:"signed_seq,omitempty"`
	TruncationChecked bool   `json:"truncation_checked"`
	OK                bool   `json:"ok"`
}

func newAuditVerifyCmd() *cobra.Command {
	var dataDir, file, headsFile, genesisFile, genesisHash string
	cmd := &cobra.Command{
		Use:   "verify (--data-dir DIR | --file EXPORT.jsonl) [--heads HEADS.json --genesis GENESIS.json [--genesis-hash HEX]]",
		Short: "Check the audit hash chain (and its signed heads) and name the first bad record",
		Long: `verify recomputes every audit record's hash and link. With --data-dir it
reads a stopped node's snapshot and log; with --file an export written by
"custody audit export". The first bad record is named and the exit code is 1.

The hash chain alone detects an edited record, not a chain cut after any
record. With --heads (written by "custody audit heads": checkpoints a
checkpoint quorum of the node set signed, each binding the chain's head) and
--genesis (the node set, cluster and genesis the heads must verify against;
--genesis-hash pins the file), the chain must also contain every signed
head: a chain ending before a signed seq is reported as truncated, another
hash at a signed seq as edited or forked.`,
		Example: `  custody audit verify --file audit.jsonl --heads heads.json --genesis genesis.json --genesis-hash 3f1c...`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (dataDir == "") == (file == "") {
				return errors.New("audit verify: give exactly one of --data-dir or --file")
			}
			var hv *ledger.HeadVerifier
			if headsFile != "" || genesisFile != "" || genesisHash != "" {
				var err error
				if hv, err = auditHeadVerifier(headsFile, genesisFile, genesisHash); err != nil {
					return fmt.Errorf("audit verify: %w", err)
				}
			}
			var sum auditSummary
			var events []ledger.AuditEvent // --data-dir only
			if file != "" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("audit verify: %w", err)
				}
				defer f.Close()
				n, head, err := ledger.VerifyAuditJSONLHeads(f, hv)
				if err != nil {
					return fmt.Errorf("audit verify %s: %w", file, err)
				}
				sum = auditSummary{Source: file, Records: n, Head: head}
			} else {
				st, rep, err := ledger.ReadDataDir(dataDir)
				if err != nil {
					return fmt.Errorf("audit verify %s: %w", dataDir, err)
				}
				if err := ledger.VerifyChain(st.Audit); err != nil {
					return fmt.Errorf("audit verify %s: %w", dataDir, err)
				}
				events = st.Audit
				sum = auditSummary{Source: dataDir, Records: len(st.Audit), Head: auditHead(st.Audit),
					SnapshotIndex: rep.SnapshotIndex, LastIndex: rep.LastIndex}
			}
			if hv != nil {
				var err error
				if file != "" {
					sum.Heads, sum.SignedSeq, err = hv.End()
				} else {
					sum.Heads, sum.SignedSeq, err = hv.Verify(events)
				}
				if err != nil {
					return fmt.Errorf("audit verify %s: %w", sum.Source, err)
				}
				sum.TruncationChecked = true
			}
			sum.OK = true
			return report(cmd, sum, func(w io.Writer) error {
				if _, err := fmt.Fprintf(w, "audit chain OK: %d records, head %s\n", sum.Records, sum.Head); err != nil {
					return err
				}
				var err error
				if sum.TruncationChecked {
					_, err = fmt.Fprintf(w, "signed heads OK: %d heads certified by the genesis's node set, the chain reaches the latest (seq %d)\n", sum.Heads, sum.SignedSeq)
				} else {
					_, err = fmt.Fprintln(w, "truncation NOT checked: without signed heads (--heads, --genesis) a chain cut after any record verifies")
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "a stopped node's ledger data directory")
	cmd.Flags().StringVar(&file, "file", "", "a JSON-lines export to verify")
	cmd.Flags().StringVar(&headsFile, "heads", "", `signed audit heads ("custody audit heads"); needs --genesis`)
	cmd.Flags().StringVar(&genesisFile, "genesis", "", "the cluster's genesis file: the node set the heads must verify against")
	cmd.Flags().StringVar(&genesisHash, "genesis-hash", "", "the genesis hash --genesis must have (64 hex digits; optional)")
	return cmd
}

// auditHeadVerifier reads the signed heads and verifies them against the
// node set, cluster and genesis hash of the auditor's genesis file (never
// anything from the data being checked).
func auditHeadVerifier(headsFile, genesisFile, genesisHash string) (*ledger.HeadVerifier, error) {
	if headsFile == "" || genesisFile == "" {
		return nil, errors.New("--heads and --genesis go together: the signed heads are verified against the genesis's node set")
	}
	g, err := genesisLoad(genesisFile)
	if err != nil {
		return nil, err
	}
	if genesisHash != "" {
		pinned, err := genesisParseHash(genesisHash)
		if err != nil {
			return nil, errors.New("--genesis-hash must be 64 hex digits")
		}
		if got := g.Hash(); got != pinned {
			return nil, fmt.Errorf("%w: %s hashes to %s, not %s", genesis.ErrHashMismatch, genesisFile, got, pinned)
		}
	}
	b, err := readInputFile(headsFile)
	if err != nil {
		return nil, fmt.Errorf("--heads: %w", err)
	}
	heads, err := ledger.ReadHeads(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", headsFile, err)
	}
	hv, err := ledger.NewHeadVerifier(heads, ledger.AnchorOf(ledger.GenesisCommand(g)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", headsFile, err)
	}
	return hv, nil
}

// auditHead is the hash of the chain's last event (GenesisHash when empty).
func auditHead(events []ledger.AuditEvent) string {
	if n := len(events); n > 0 {
		return events[n-1].Hash
	}
	return ledger.GenesisHash
}

// auditHeadsSummary is what heads reports.
type auditHeadsSummary struct {
	Source    string `json:"source"`
	File      string `json:"file"`
	Heads     int    `json:"heads"`
	LastIndex uint64 `json:"last_index"`
	AuditSeq  uint64 `json:"audit_seq"`
	AuditHead string `json:"audit_head"`
}

func newAuditHeadsCmd() *cobra.Command {
	var dataDir, out string
	cmd := &cobra.Command{
		Use:   "heads --data-dir DIR --out FILE",
		Short: "Write the signed audit heads of a stopped node (never overwrites)",
		Long: `heads writes the certified checkpoints of a stopped node's data dir as a JSON
array: each binds the audit chain's head (seq and hash) under the signatures
of a checkpoint quorum of the node set. Heads are public (mode 0644). Keep them apart
from the audit log: "custody audit verify --heads FILE --genesis GENESIS"
then detects a log truncated or rewritten before the latest head. The heads
are not trusted from the data dir: verify checks them against the genesis.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || out == "" {
				return errors.New("audit heads: --data-dir and --out are required")
			}
			if err := checkNew(out); err != nil {
				return fmt.Errorf("audit heads: %w", err)
			}
			st, _, err := ledger.ReadDataDir(dataDir)
			if err != nil {
				return fmt.Errorf("audit heads %s: %w", dataDir, err)
			}
			last := st.LastCheckpoint()
			if last == nil {
				return fmt.Errorf("audit heads %s: no certified checkpoint yet: no signed heads to write", dataDir)
			}
			if err := createNew(out, 0o644, func(w io.Writer) error { return ledger.WriteHeads(w, st.Checkpoints) }); err != nil {
				return fmt.Errorf("audit heads: %w", err)
			}
			sum := auditHeadsSummary{Source: dataDir, File: out, Heads: len(st.Checkpoints),
				LastIndex: last.Index, AuditSeq: last.AuditSeq, AuditHead: last.AuditHead}
			return report(cmd, sum, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "wrote %d signed heads to %s (latest: checkpoint %d, audit seq %d, head %s)\n",
					sum.Heads, out, sum.LastIndex, sum.AuditSeq, sum.AuditHead)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "a stopped node's ledger data directory")
	cmd.Flags().StringVar(&out, "out", "", "output file (must not exist)")
	return cmd
}

func newAuditExportCmd() *cobra.Command {
	var dataDir, out, headsOut string
	var sf *serverFlags
	cmd := &cobra.Command{
		Use:   "export (--data-dir DIR | [--server URL] [--profile P] [--heads HEADS.json]) --out FILE",
		Short: "Write the verified audit chain as JSON lines (never overwrites)",
		Long: `Write the audit chain as JSON lines, verified record by record first: from a
stopped node's data dir (--data-dir), or online from a node's operator API
(the profile custody login wrote, or --server), page by page; online,
--heads also writes the signed audit heads for custody audit verify --heads.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("audit export: --out is required")
			}
			if err := checkNew(out); err != nil {
				return fmt.Errorf("audit export: %w", err)
			}
			var events []ledger.AuditEvent
			var heads []ledger.Checkpoint
			source := dataDir
			if dataDir != "" {
				if headsOut != "" {
					return errors.New("audit export: --heads is online only (offline: custody audit heads)")
				}
				st, _, err := ledger.ReadDataDir(dataDir)
				if err != nil {
					return fmt.Errorf("audit export %s: %w", dataDir, err)
				}
				events = st.Audit
			} else {
				var err error
				if source, events, heads, err = exportOnline(sf, headsOut != ""); err != nil {
					return fmt.Errorf("audit export: %w", err)
				}
			}
			if err := ledger.VerifyChain(events); err != nil {
				return fmt.Errorf("audit export %s: %w", source, err)
			}
			if headsOut != "" {
				if err := createNew(headsOut, 0o644, func(w io.Writer) error { return ledger.WriteHeads(w, heads) }); err != nil {
					return fmt.Errorf("audit export: %w", err)
				}
			}
			write := func(w io.Writer) error { return ledger.WriteAuditJSONL(w, events) }
			if err := createNew(out, 0o640, write); err != nil {
				return fmt.Errorf("audit export: %w", err)
			}
			sum := auditSummary{Source: source, Records: len(events), Head: auditHead(events), Heads: len(heads), OK: true}
			return report(cmd, sum, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "wrote %d audit records to %s (head %s)\n", sum.Records, out, sum.Head)
				return err
			})
		},
	}
	sf = addServerFlags(cmd)
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "a stopped node's ledger data directory (else: online, from the profile's node)")
	cmd.Flags().StringVar(&out, "out", "", "output file (must not exist)")
	cmd.Flags().StringVar(&headsOut, "heads", "", "online: also write the signed audit heads to this file (must not exist)")
	return cmd
}

// exportOnline pages the audit log (and the heads) from the profile's node.
func exportOnline(sf *serverFlags, withHeads bool) (string, []ledger.AuditEvent, []ledger.Checkpoint, error) {
	c, err := sf.client()
	if err != nil {
		return "", nil, nil, err
	}
	var events []ledger.AuditEvent
	after := uint64(0)
	for {
		var page rest.AuditPage
		path := fmt.Sprintf("%s?after=%d&limit=%d", rest.PathAudit, after, rest.MaxAuditLimit)
		if err := c.do(context.Background(), "GET", path, nil, &page); err != nil {
			return "", nil, nil, err
		}
		events = append(events, page.Events...)
		if page.NextAfter == nil || *page.NextAfter <= after {
			break
		}
		after = *page.NextAfter
	}
	var heads struct {
		Heads []ledger.Checkpoint `json:"heads"`
	}
	if withHeads {
		if err := c.do(context.Background(), "GET", rest.PathAudit+"/heads", nil, &heads); err != nil {
			return "", nil, nil, err
		}
		if len(heads.Heads) == 0 {
			return "", nil, nil, errors.New("the node has no certified checkpoint yet: no signed heads")
		}
	}
	return c.base, events, heads.Heads, nil
}
