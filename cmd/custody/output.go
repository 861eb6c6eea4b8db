package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// outputFormat returns the validated --output value of cmd.
func outputFormat(cmd *cobra.Command) (string, error) {
	f, err := cmd.Flags().GetString("output")
	if err != nil {
		return "", err
	}
	switch f {
	case "text", "json":
		return f, nil
	default:
		return "", fmt.Errorf("unknown --output %q: want \"text\" or \"json\"", f)
	}
}

// report writes v as indented JSON under --output json, and otherwise calls text
// to render it for people. Every command that reports data goes through here so
// the two formats never drift apart.
func report(cmd *cobra.Command, v any, text func(w io.Writer) error) error {
	f, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if f == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return text(w)
}
