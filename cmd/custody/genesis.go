package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/quorum"
)

func newGenesisCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "genesis",
		Short: "Create, verify and show the cluster genesis",
		Long: `The genesis is the cluster's root of trust: cluster ID, admin quorum, the
initial operators and their device keys, the backend principals, the node set
(node IDs and their certificates' key fingerprints), the initial policy rules
and the approval-validity ceiling. Every node pins it by its hash.

The hash is the SHA-256 of "custody/genesis/v1", a zero byte and the
canonical encoding of the file; see docs/genesis.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newGenesisCreateCmd(), newGenesisVerifyCmd(), newGenesisShowCmd())
	return cmd
}

type genesisCreateReport struct {
	GenesisHash string `json:"genesis_hash"`
	ClusterID   string `json:"cluster_id"`
	File        string `json:"file"`
}

func newGenesisCreateCmd() *cobra.Command {
	var config, out string
	cmd := &cobra.Command{
		Use:   "create --config genesis.yaml --out genesis.json",
		Short: "Build the genesis file from a ceremony config and print its hash",
		Long: `Read a genesis config (strict YAML: unknown keys are errors naming their
path), read the key files, public keys, node certificates and rules file it
names (relative names are relative to the config's directory), validate
everything, write the genesis file (never overwriting one) and print its hash.

Key files are read for their public part only; a sealed file needs no
passphrase. Prefer collecting public keys (custody operator show) over
collecting key files.`,
		Example: `  custody genesis create --config genesis.yaml --out genesis.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkNew(out); err != nil {
				return fmt.Errorf("genesis: %w", err)
			}
			b, err := readInputFile(config)
			if err != nil {
				return fmt.Errorf("genesis: --config: %w", err)
			}
			cfg, err := genesis.ParseConfig(b)
			if err != nil {
				return fmt.Errorf("%s: %w", config, err)
			}
			base := filepath.Dir(config)
			g, err := cfg.Build(func(name string) ([]byte, error) {
				if !filepath.IsAbs(name) {
					name = filepath.Join(base, name)
				}
				return readInputFile(name)
			})
			if err != nil {
				return fmt.Errorf("%s: %w", config, err)
			}
			if err := writeNew(out, 0o644, g.Encode()); err != nil {
				return fmt.Errorf("genesis: %w", err)
			}
			rep := genesisCreateReport{GenesisHash: g.Hash(), ClusterID: g.ClusterID, File: out}
			return report(cmd, rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "wrote %s (cluster %s)\ngenesis hash: %s\n", out, rep.ClusterID, rep.GenesisHash)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "genesis config (YAML)")
	cmd.Flags().StringVar(&out, "out", "", "genesis file to create (must not exist)")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// genesisLoad reads and parses the --genesis file.
func genesisLoad(path string) (*genesis.Genesis, error) {
	b, err := readInputFile(path)
	if err != nil {
		return nil, fmt.Errorf("genesis: --genesis: %w", err)
	}
	g, err := genesis.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

type genesisVerifyReport struct {
	OK          bool   `json:"ok"`
	GenesisHash string `json:"genesis_hash"`
	ClusterID   string `json:"cluster_id"`
}

func newGenesisVerifyCmd() *cobra.Command {
	var file, want string
	cmd := &cobra.Command{
		Use:   "verify --genesis FILE --hash HEX",
		Short: "Check that a genesis file is valid and has the pinned hash",
		Long: `Exit 0 only if the genesis file parses, validates and hashes to --hash
(64 hex digits); otherwise print one line saying why and exit non-zero.`,
		Example: `  custody genesis verify --genesis genesis.json --hash 3f1c...`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pinned, err := genesisParseHash(want)
			if err != nil {
				return err
			}
			g, err := genesisLoad(file)
			if err != nil {
				return err
			}
			if got := g.Hash(); got != pinned {
				return fmt.Errorf("%w: %s hashes to %s, not %s", genesis.ErrHashMismatch, file, got, pinned)
			}
			rep := genesisVerifyReport{OK: true, GenesisHash: pinned, ClusterID: g.ClusterID}
			return report(cmd, rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "ok: %s is the genesis of cluster %s, hash %s\n", file, g.ClusterID, pinned)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&file, "genesis", "", "genesis file")
	cmd.Flags().StringVar(&want, "hash", "", "the genesis hash to check against (64 hex digits)")
	_ = cmd.MarkFlagRequired("genesis")
	_ = cmd.MarkFlagRequired("hash")
	return cmd
}

// genesisParseHash reads a --hash: 64 hex digits, either case, returned in
// lowercase (the form Hash prints).
func genesisParseHash(s string) (string, error) {
	s = strings.ToLower(s)
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", errors.New("genesis: --hash must be 64 hex digits")
	}
	return s, nil
}

type genesisShowReport struct {
	GenesisHash string           `json:"genesis_hash"`
	Genesis     *genesis.Genesis `json:"genesis"`
}

func newGenesisShowCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "show --genesis FILE",
		Short: "Print a genesis file's hash and contents for people to check",
		Long: `Validate a genesis file and print its hash, the cluster, the operators with
their roles and device keys (hex, as "custody operator show" prints them),
the node set and the rules hash. With -o json, print the hash and the
document in canonical order.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g, err := genesisLoad(file)
			if err != nil {
				return err
			}
			// Print the canonical order, whatever the file's.
			rep := genesisShowReport{GenesisHash: g.Hash(), Genesis: g.Sorted()}
			return report(cmd, rep, func(w io.Writer) error { return genesisPrint(w, rep) })
		},
	}
	cmd.Flags().StringVar(&file, "genesis", "", "genesis file")
	_ = cmd.MarkFlagRequired("genesis")
	return cmd
}

func genesisPrint(w io.Writer, rep genesisShowReport) error {
	g := rep.Genesis
	fmt.Fprintf(w, "genesis hash:          %s\n", rep.GenesisHash)
	fmt.Fprintf(w, "format:                %s\n", g.Version)
	fmt.Fprintf(w, "cluster:               %s\n", g.ClusterID)
	fmt.Fprintf(w, "admin quorum:          %d\n", g.AdminQuorum)
	fmt.Fprintf(w, "max approval validity: %s\n", g.MaxApprovalValidity)
	fmt.Fprintf(w, "rules hash:            %s (%d bytes of YAML)\n", g.RulesHash, len(g.Rules))
	devices := map[string][]quorum.Device{}
	for _, d := range g.Devices {
		devices[d.OperatorID] = append(devices[d.OperatorID], d)
	}
	fmt.Fprintf(w, "\noperators (%d):\n", len(g.Operators))
	for _, o := range g.Operators {
		roles := make([]string, len(o.Roles))
		for i, r := range o.Roles {
			roles[i] = string(r)
		}
		fmt.Fprintf(w, "  %s %q, %s: %s\n", o.ID, o.Name, o.Kind, strings.Join(roles, ", "))
		for _, d := range devices[o.ID] {
			label := ""
			if d.Label != "" {
				label = fmt.Sprintf(" %q", d.Label)
			}
			fmt.Fprintf(w, "    device %s %s%s\n      public key %s\n", d.ID, d.Kind, label, hex.EncodeToString(d.PublicKey))
		}
	}
	fmt.Fprintf(w, "\nnodes (%d):\n", len(g.Nodes))
	for _, n := range g.Nodes {
		if _, err := fmt.Fprintf(w, "  %s  key %s\n", n.ID, n.KeyFingerprint); err != nil {
			return err
		}
	}
	return nil
}
