package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runCLI runs the CLI in-process and returns exit code, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// oneLineErr checks the failure convention: exit 1 and exactly one line on
// stderr that mentions want.
func oneLineErr(t *testing.T, code int, stderr, want string) {
	t.Helper()
	if code != 1 {
		t.Fatalf("exit %d, want 1 (stderr %q)", code, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "custody: ") || !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q, want one line mentioning %q", stderr, want)
	}
}

// writeTemp writes content to a new file name in a fresh temporary
// directory and returns its path.
func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEveryCommandHasHelp: each command of the tree answers --help with
// exit 0 and its own usage line, and rejects an unknown flag with one line.
func TestEveryCommandHasHelp(t *testing.T) {
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		code, out, errOut := runCLI(append(append([]string{}, path...), "--help")...)
		if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
			t.Errorf("%v --help: exit %d, stderr %q", path, code, errOut)
		}
		code, _, errOut = runCLI(append(append([]string{}, path...), "--no-such-flag")...)
		if code != 1 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v --no-such-flag: exit %d, stderr %q", path, code, errOut)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	walk(newRootCmd(), nil)
}
