package main

import (
	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/policy"
)

// newRootCmd builds the whole command tree. Each area registers one constructor;
// no globals, so tests can build a fresh tree per run.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "custody",
		Short: "Threshold-ECDSA custody signer backed by PKCS#11 HSMs",
		Long: `custody signs exchange withdrawals with threshold ECDSA key shares sealed by
PKCS#11 HSMs, only after policy passed and a quorum of operators approved
exactly that transaction.

Secrets are never taken from the command line: PINs come from an environment
variable (default CUSTODY_HSM_PIN) or a file (--pin-file).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// A bare "custody" prints help rather than silently succeeding.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.PersistentFlags().StringP("output", "o", "text", `output format: "text" or "json"`)
	root.AddCommand(
		newVersionCmd(),
		newSoftHSMCmd(),
		newHSMCmd(),
		newPolicyCmd(),
		newOperatorCmd(),
		newAuditCmd(),
		newGenesisCmd(),
		newLedgerCmd(),
		newClusterCmd(),
		newNodeCmd(),
		newDevnetCmd(),
		newBenchCmd(),
		newInitiateCmd(),
		newLoginCmd(),
		newRequestsCmd(),
		newApproveCmd(),
		newRejectCmd(),
		newAllowlistCmd(),
		newLockCmd(policy.ChangeLock),
		newLockCmd(policy.ChangeUnlock),
		newChangesCmd(),
		newWalletCmd(),
		newDeviceCmd(),
		newCeremonyCmd(),
		newColdCmd(),
	)
	return root
}
