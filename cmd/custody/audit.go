package main

import "github.com/spf13/cobra"

// Owned by the ledger work (issue 6): replaced with the real commands.

func newAuditCmd() *cobra.Command {
	return &cobra.Command{Use: "audit", Short: "Verify and export the hash-chained audit log"}
}
