package main

import "github.com/spf13/cobra"

// Owned by the policy work (issue 3): replaced with the real commands.

func newPolicyCmd() *cobra.Command {
	return &cobra.Command{Use: "policy", Short: "Validate and dry-run withdrawal policy rules"}
}

func newOperatorCmd() *cobra.Command {
	return &cobra.Command{Use: "operator", Short: "Operator device keys and approvals"}
}
