// Command custody is the custody signer service: node daemon, operator commands,
// HSM tooling, policy tools and air-gapped ceremonies.
//
// Every command prints a one-line error and exits non-zero on failure. Secrets
// (PINs, passphrases) are read from environment variables or files, never argv.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the CLI with the given arguments and streams and returns the exit
// code. It exists so tests and testscript can run the CLI in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintf(stderr, "custody: %v\n", err)
		return 1
	}
	return 0
}
