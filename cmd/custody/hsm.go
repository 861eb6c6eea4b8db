package main

import "github.com/spf13/cobra"

// Owned by the HSM work (issue 2): replaced with the real commands.

func newSoftHSMCmd() *cobra.Command {
	return &cobra.Command{Use: "softhsm", Short: "Provision isolated SoftHSM2 tokens for tests and devnets"}
}

func newHSMCmd() *cobra.Command {
	return &cobra.Command{Use: "hsm", Short: "Inspect PKCS#11 tokens and manage the key-encryption key"}
}
