package main

// The air-gapped side of cold wallets (docs/cold.md, deploy/CEREMONY.md):
// `custody ceremony keygen` and `custody cold verify|sign` run on the
// offline machine and import nothing of the network side (package cold).
// PINs come from the terminal without echo or from files, never argv.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/cold"
	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/softhsm"
)

// coldKeygenOptions is the zero value in the custody binary (fresh
// tss-lib pre-params); this package's tests hand committed fixtures.
var coldKeygenOptions cold.KeygenOptions

// coldInterfaces lists the machine's network interfaces (tests inject an
// interface that is up).
var coldInterfaces = net.Interfaces

// errNetworkUp: `cold sign` refuses to run with a non-loopback interface
// up, unless --allow-network.
var errNetworkUp = errors.New("a non-loopback network interface is up: the signing machine must be offline")

// checkOffline refuses unless every interface that is up is a loopback.
func checkOffline() error {
	ifs, err := coldInterfaces()
	if err != nil {
		return fmt.Errorf("list network interfaces: %w", err)
	}
	var up []string
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			up = append(up, i.Name)
		}
	}
	if len(up) > 0 {
		return fmt.Errorf("%w (%s); take it down, or pass --allow-network (tests only)", errNetworkUp, strings.Join(up, ", "))
	}
	return nil
}

// pinFlags are --pin-file NAME=FILE (repeatable); a custodian without one
// types the PIN on the terminal.
type pinFlags struct{ files []string }

func addPINFlags(cmd *cobra.Command) *pinFlags {
	f := &pinFlags{}
	cmd.Flags().StringArrayVar(&f.files, "pin-file", nil, "CUSTODIAN=FILE: the file holding that custodian's token PIN (repeatable; default: asked on the terminal, without echo)")
	return f
}

// source is the PIN source: a custodian's file, else the terminal
// (stdin must be one), the prompt on stderr.
func (f *pinFlags) source(cmd *cobra.Command) (cold.PINSource, error) {
	files := map[string]string{}
	for _, kv := range f.files {
		name, path, ok := strings.Cut(kv, "=")
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("--pin-file %q: want CUSTODIAN=FILE", kv)
		}
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("--pin-file: custodian %s named twice", name)
		}
		files[name] = path
	}
	return func(custodian string) (string, error) {
		if path, ok := files[custodian]; ok {
			return hsm.LoadPIN("", path)
		}
		in, ok := cmd.InOrStdin().(*os.File)
		if !ok || !term.IsTerminal(int(in.Fd())) {
			return "", fmt.Errorf("no PIN for custodian %s: give --pin-file %s=FILE or run on a terminal", custodian, custodian)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "PIN of custodian %s (token held by %s): ", custodian, custodian)
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", fmt.Errorf("read the PIN of %s: %w", custodian, err)
		}
		if len(b) == 0 {
			return "", fmt.Errorf("%w: custodian %s typed no PIN", hsm.ErrNoPIN, custodian)
		}
		pin := string(b)
		clear(b)
		return pin, nil
	}, nil
}

func newCeremonyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ceremony",
		Short: "Offline ceremonies of cold wallets (air-gapped machine)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var config, out string
	keygen := &cobra.Command{
		Use:   "keygen --config ceremony.yaml --out DIR",
		Short: "Generate a cold wallet's key among the custodians' tokens, sealing one share in each",
		Long: `Run the keygen ceremony of docs/cold.md offline: open every custodian's token
(PIN on the terminal, or --pin-file NAME=FILE), create the wallet's key-encryption
key in each, run the distributed keygen among the custodians, test-sign with two
different t+1 subsets, seal each share in its custodian's token and write into
--out, never overwriting (nothing is written when any output exists):
wallet.json (the public key, address and registration spec), one
share-NAME.sealed per custodian, and transcript.json (the SHA-256 of every
input and output) for the custodians to sign off. Register the wallet online
with: custody wallet register --wallet-file wallet.json --transcript transcript.json`,
		Args: cobra.NoArgs,
	}
	pins := addPINFlags(keygen)
	keygen.RunE = func(cmd *cobra.Command, _ []string) error {
		if out == "" {
			return errors.New("ceremony keygen: --out DIR is required")
		}
		b, err := readInputFile(config)
		if err != nil {
			return fmt.Errorf("ceremony keygen: --config: %w", err)
		}
		c, err := cold.ParseCeremony(b)
		if err != nil {
			return err
		}
		names := []string{"wallet.json", "transcript.json"}
		for _, cu := range c.Custodians {
			names = append(names, cold.ShareFileName(cu.Name))
		}
		for _, n := range names {
			if err := checkNew(filepath.Join(out, n)); err != nil {
				return fmt.Errorf("ceremony keygen: %w: nothing written", err)
			}
		}
		src, err := pins.source(cmd)
		if err != nil {
			return err
		}
		o, err := cold.Keygen(context.Background(), b, src, coldKeygenOptions)
		if err != nil {
			return err
		}
		if err := o.Write(out); err != nil {
			return err
		}
		return report(cmd, o.Transcript, func(w io.Writer) error {
			fmt.Fprintf(w, "wallet %s: key %s, address %s\n", o.Transcript.Wallet, o.Transcript.PubKey, o.Transcript.Address)
			fmt.Fprintf(w, "test-signed by %v\n", o.Transcript.TestSigned)
			for _, f := range o.Transcript.Outputs {
				fmt.Fprintf(w, "wrote %s  sha256 %s\n", filepath.Join(out, f.Name), f.Hash)
			}
			fmt.Fprintf(w, "wrote %s\n", filepath.Join(out, "transcript.json"))
			return nil
		})
	}
	keygen.Flags().StringVar(&config, "config", "", "the ceremony file (strict YAML, docs/cold.md)")
	keygen.Flags().StringVar(&out, "out", "", "the output directory")
	cmd.AddCommand(keygen)
	return cmd
}

// pinnedGenesis is --genesis-hash, or the hash the custodians type.
func pinnedGenesis(cmd *cobra.Command, flag string) (string, error) {
	if flag == "" {
		fmt.Fprint(cmd.ErrOrStderr(), "Genesis hash of the cluster (as the custodians hold it): ")
		line, err := readLine(cmd.InOrStdin())
		if err != nil && line == "" {
			return "", errors.New("no genesis hash: give --genesis-hash or type it")
		}
		flag = line
	}
	flag = strings.ToLower(strings.TrimSpace(flag))
	if len(flag) != 64 || strings.Trim(flag, "0123456789abcdef") != "" {
		return "", fmt.Errorf("genesis hash %q: want 64 hex digits", flag)
	}
	return flag, nil
}

// encodeIndented is v as indented JSON with a final newline.
func encodeIndented(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic("custody: " + err.Error())
	}
	return append(b, '\n')
}

// coldRegistration is the wallet.register spec of a ceremony's outputs
// (without change ID): wallet.json's spec with the SHA-256 of the
// transcript, which must record wallet.json's hash, wallet and key.
func coldRegistration(walletFile, transcriptFile string) (ledger.ColdWalletSpec, error) {
	wb, err := readInputFile(walletFile)
	if err != nil {
		return ledger.ColdWalletSpec{}, fmt.Errorf("--wallet-file: %w", err)
	}
	tb, err := readInputFile(transcriptFile)
	if err != nil {
		return ledger.ColdWalletSpec{}, fmt.Errorf("--transcript: %w", err)
	}
	var pw cold.PublicWallet
	var tr cold.Transcript
	if err := decodeStrictJSON(wb, &pw); err != nil || pw.Version != "custody/cold-wallet/v1" {
		return ledger.ColdWalletSpec{}, fmt.Errorf("%s: not a ceremony's wallet.json (%v)", walletFile, err)
	}
	if err := decodeStrictJSON(tb, &tr); err != nil || tr.Version != "custody/cold-ceremony/v1" {
		return ledger.ColdWalletSpec{}, fmt.Errorf("%s: not a ceremony's transcript.json (%v)", transcriptFile, err)
	}
	wsum, tsum := sha256.Sum256(wb), sha256.Sum256(tb)
	if !slices.Contains(tr.Outputs, cold.FileHash{Name: "wallet.json", Hash: hex.EncodeToString(wsum[:])}) ||
		tr.Wallet != pw.Spec.Wallet || tr.PubKey != hex.EncodeToString(pw.Spec.PubKey) {
		return ledger.ColdWalletSpec{}, fmt.Errorf("%s is not the wallet.json the transcript %s records", walletFile, transcriptFile)
	}
	spec := ledger.ColdWalletSpec(pw.Spec)
	spec.Transcript = hex.EncodeToString(tsum[:])
	return spec, nil
}

func decodeStrictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// readBundle reads and parses a bundle file.
func readBundle(path string) (*cold.Bundle, error) {
	if path == "" {
		return nil, errors.New("--bundle FILE is required")
	}
	b, err := readInputFile(path)
	if err != nil {
		return nil, err
	}
	return cold.ParseBundle(b)
}

// coldSignTranscript is what `cold sign` writes beside the signed bundle.
type coldSignTranscript struct {
	Version     string    `json:"version"`
	GenesisHash string    `json:"genesis_hash"`
	BundleHash  string    `json:"bundle_hash"`
	RequestID   string    `json:"request_id"`
	Wallet      string    `json:"wallet"`
	Description string    `json:"description"`
	TxHash      string    `json:"tx_hash"`
	Custodians  []string  `json:"custodians"`
	SignedAt    time.Time `json:"signed_at"`
}

func describeChecked(w io.Writer, c *cold.Checked) {
	r := c.Bundle.Request
	fmt.Fprintf(w, "request %s from cold wallet %s (%s/%s)\n  %s\n", r.ID, r.Wallet, r.Chain, r.Network, c.Description)
	fmt.Fprintf(w, "  policy: %s by rule %s; %d approvals verified; expires %s\n", c.Decision.Route, c.Decision.Rule, len(r.Approvals), r.ExpiresAt.Format(time.RFC3339))
	fmt.Fprintf(w, "  governance: %d changes from the pinned genesis to head %s\n", len(c.Bundle.Governance), c.Bundle.GovernanceHead)
}

func newColdCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cold",
		Short: "Cold requests: export a bundle, verify and sign it offline, import the result",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var bundlePath, genesisHash string
	verify := &cobra.Command{
		Use:   "verify --bundle FILE [--genesis-hash HEX]",
		Short: "Verify a bundle offline from the genesis hash you pin, and describe it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := readBundle(bundlePath)
			if err != nil {
				return err
			}
			pinned, err := pinnedGenesis(cmd, genesisHash)
			if err != nil {
				return err
			}
			verifyFn := cold.Verify
			if b.Signed != nil {
				verifyFn = cold.VerifySigned
			}
			c, err := verifyFn(b, pinned, time.Now())
			if err != nil {
				return err
			}
			return report(cmd, map[string]any{"bundle_hash": b.Hash(), "request": b.Request.ID, "description": c.Description, "signed": b.Signed != nil},
				func(w io.Writer) error {
					describeChecked(w, c)
					fmt.Fprintf(w, "bundle %s verifies\n", b.Hash())
					return nil
				})
		},
	}
	verify.Flags().StringVar(&bundlePath, "bundle", "", "the bundle file")
	verify.Flags().StringVar(&genesisHash, "genesis-hash", "", "the cluster's genesis hash (default: asked)")

	var (
		sBundle, sGenesis, sOut, sTranscript, sModule string
		shares                                        []string
		allowNetwork, yes                             bool
	)
	sign := &cobra.Command{
		Use:   "sign --bundle FILE --share FILE --share FILE ... --out FILE",
		Short: "Verify a bundle from the pinned genesis and sign it with t+1 custodians' tokens (offline)",
		Long: `On the air-gapped machine: refuse while any non-loopback network interface is
up (--allow-network overrides, for tests); verify everything in the bundle from
the genesis hash the custodians type (or --genesis-hash), never the bundle's:
approvals and quorum under the registry folded from the genesis, rules,
allowlist and cooling-off, locks, fee cap, the transaction against the approved
payload; show the transaction; ask each present custodian's PIN (terminal,
without echo, or --pin-file NAME=FILE); unseal every share before signing
anything; sign; verify the result (txscript for every Bitcoin input); write the
signed bundle to --out and a transcript to --transcript (default
OUT.transcript.json), never overwriting.`,
		Args: cobra.NoArgs,
	}
	pins := addPINFlags(sign)
	sign.RunE = func(cmd *cobra.Command, _ []string) error {
		if sOut == "" {
			return errors.New("cold sign: --out FILE is required")
		}
		if sTranscript == "" {
			sTranscript = sOut + ".transcript.json"
		}
		for _, p := range []string{sOut, sTranscript} {
			if err := checkNew(p); err != nil {
				return fmt.Errorf("cold sign: %w: nothing signed", err)
			}
		}
		if !allowNetwork {
			if err := checkOffline(); err != nil {
				return fmt.Errorf("cold sign: %w: nothing signed", err)
			}
		}
		b, err := readBundle(sBundle)
		if err != nil {
			return err
		}
		if b.Signed != nil {
			return errors.New("cold sign: the bundle is signed already")
		}
		pinned, err := pinnedGenesis(cmd, sGenesis)
		if err != nil {
			return err
		}
		c, err := cold.Verify(b, pinned, time.Now())
		if err != nil {
			return fmt.Errorf("%w: nothing signed", err)
		}
		var present []*cold.SealedShare
		for _, p := range shares {
			sb, err := readInputFile(p)
			if err != nil {
				return fmt.Errorf("cold sign: --share: %w", err)
			}
			s, err := cold.ParseSealedShare(sb)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			present = append(present, s)
		}
		var desc strings.Builder
		describeChecked(&desc, c)
		names := make([]string, len(present))
		for i, s := range present {
			names[i] = s.Custodian
		}
		if err := confirm(cmd, yes, strings.TrimRight(desc.String(), "\n"), fmt.Sprintf("Sign with custodians %s?", strings.Join(names, ", "))); err != nil {
			return err
		}
		src, err := pins.source(cmd)
		if err != nil {
			return err
		}
		mod := sModule
		if mod == "" {
			if mod, err = softhsm.FindModule(); err != nil {
				return err
			}
		}
		signed, err := cold.Sign(context.Background(), c, mod, present, src, time.Now())
		if err != nil {
			return fmt.Errorf("%w: nothing signed", err)
		}
		tr := coldSignTranscript{Version: "custody/cold-sign/v1", GenesisHash: pinned, BundleHash: signed.Hash(), RequestID: b.Request.ID,
			Wallet: b.Request.Wallet, Description: c.Description, TxHash: signed.Signed.TxHash, Custodians: slices.Clone(signed.Signed.Custodians),
			SignedAt: signed.Signed.SignedAt}
		if err := writeNew(sOut, 0o644, signed.Encode()); err != nil {
			return err
		}
		if err := writeNew(sTranscript, 0o644, encodeIndented(tr)); err != nil {
			return err
		}
		return report(cmd, tr, func(w io.Writer) error {
			fmt.Fprintf(w, "signed request %s: transaction %s by %s\nwrote %s and %s\n", tr.RequestID, tr.TxHash, strings.Join(tr.Custodians, ", "), sOut, sTranscript)
			return nil
		})
	}
	sign.Flags().StringVar(&sBundle, "bundle", "", "the bundle `cold export` wrote")
	sign.Flags().StringVar(&sGenesis, "genesis-hash", "", "the cluster's genesis hash as the custodians hold it (default: asked)")
	sign.Flags().StringVar(&sOut, "out", "", "the signed bundle to write")
	sign.Flags().StringVar(&sTranscript, "transcript", "", "the signing transcript to write (default OUT.transcript.json)")
	sign.Flags().StringVar(&sModule, "module", "", "PKCS#11 module of the custodians' tokens (default: $"+softhsm.ModuleEnv+" or libsofthsm2.so)")
	sign.Flags().StringArrayVar(&shares, "share", nil, "a present custodian's sealed share file (repeatable; t+1 needed)")
	sign.Flags().BoolVar(&allowNetwork, "allow-network", false, "sign although a non-loopback interface is up (tests only)")
	sign.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.AddCommand(verify, sign)
	addColdOnlineCmds(cmd)
	return cmd
}

// addColdOnlineCmds adds `cold export` and `cold import`, which talk to a
// node with the operator's profile (--server, --profile).
// coldAuthorizationValidity is how long the authorization cold export and
// cold import sign stays valid: it is used at once.
const coldAuthorizationValidity = 10 * time.Minute

func addColdOnlineCmds(cmd *cobra.Command) {
	var exportOut string
	export := &cobra.Command{
		Use:   "export ID --out FILE",
		Short: "Export an approved cold request as a signing bundle, authorized by your device (after this a rejection no longer cancels it)",
		Args:  cobra.ExactArgs(1),
	}
	esf := addServerFlags(export)
	export.RunE = func(cmd *cobra.Command, args []string) error {
		if exportOut == "" {
			return errors.New("cold export: --out FILE is required")
		}
		if err := checkNew(exportOut); err != nil {
			return fmt.Errorf("cold export: %w: nothing exported", err)
		}
		c, err := esf.client()
		if err != nil {
			return err
		}
		r, err := getRequest(c, args[0])
		if err != nil {
			return err
		}
		ph, err := quorum.ParseHash(r.Withdrawal.PayloadHash)
		if err != nil {
			return fmt.Errorf("cold export: request %s: payload hash: %w", args[0], err)
		}
		// The authorization is signed here, with this operator's device: no
		// node can end the window in which a rejection cancels on its own.
		auth, err := c.sign(quorum.Statement{ClusterID: r.ClusterID, RequestID: args[0], PayloadHash: ledger.ColdExportHash(args[0], ph),
			Decision: quorum.Approve, Expiry: time.Now().Add(coldAuthorizationValidity).Truncate(time.Second)})
		if err != nil {
			return fmt.Errorf("cold export: sign the authorization: %w", err)
		}
		var v rest.ExportView
		if err := c.do(context.Background(), "POST", rest.PathRequests+"/"+url.PathEscape(args[0])+"/export", map[string]any{"authorization": auth}, &v); err != nil {
			return err
		}
		if v.Bundle == nil || v.Bundle.Hash() != v.BundleHash {
			return fmt.Errorf("cold export: the node recorded bundle %s but sent another bundle", v.BundleHash)
		}
		if err := writeNew(exportOut, 0o644, v.Bundle.Encode()); err != nil {
			return err
		}
		return report(cmd, map[string]string{"request": args[0], "bundle_hash": v.BundleHash, "file": exportOut}, func(w io.Writer) error {
			fmt.Fprintf(w, "exported request %s: bundle %s written to %s\ncarry it to the signing machine: custody cold sign --bundle %s ...\n", args[0], v.BundleHash, exportOut, exportOut)
			return nil
		})
	}
	export.Flags().StringVar(&exportOut, "out", "", "the bundle file to write")

	var importBundle string
	imp := &cobra.Command{
		Use:   "import --bundle FILE",
		Short: "Import a bundle signed by cold sign, authorized by your device: the node checks the transaction and records it; the leader broadcasts it",
		Args:  cobra.NoArgs,
	}
	isf := addServerFlags(imp)
	imp.RunE = func(cmd *cobra.Command, _ []string) error {
		b, err := readBundle(importBundle)
		if err != nil {
			return err
		}
		if b.Signed == nil {
			return errors.New("cold import: the bundle is not signed (run custody cold sign first)")
		}
		c, err := isf.client()
		if err != nil {
			return err
		}
		g, err := genesis.Parse(b.Genesis)
		if err != nil {
			return fmt.Errorf("cold import: the bundle's genesis: %w", err)
		}
		auth, err := c.sign(quorum.Statement{ClusterID: g.ClusterID, RequestID: b.Request.ID, PayloadHash: ledger.ColdImportHash(b.Request.ID, b.Hash(), b.Signed.Tx),
			Decision: quorum.Approve, Expiry: time.Now().Add(coldAuthorizationValidity).Truncate(time.Second)})
		if err != nil {
			return fmt.Errorf("cold import: sign the authorization: %w", err)
		}
		var v rest.RequestView
		if err := c.do(context.Background(), "POST", rest.PathRequests+"/"+url.PathEscape(b.Request.ID)+"/import",
			map[string]any{"bundle_hash": b.Hash(), "signed": b.Signed, "authorization": auth}, &v); err != nil {
			return err
		}
		return report(cmd, v, func(w io.Writer) error {
			fmt.Fprintf(w, "imported request %s: transaction %s, status %s\n", b.Request.ID, b.Signed.TxHash, v.Withdrawal.Status)
			return nil
		})
	}
	imp.Flags().StringVar(&importBundle, "bundle", "", "the signed bundle")
	cmd.AddCommand(export, imp)
}
