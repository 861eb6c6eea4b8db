package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/quorum"
)

// operatorPassphraseEnv holds the passphrase of a sealed operator key file.
// Passphrases, like PINs, are never taken from flags, which end up in argv
// and shell history.
const operatorPassphraseEnv = "CUSTODY_OPERATOR_PASSPHRASE"

func newOperatorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Operator device keys and approvals; enroll, suspend, reactivate operators",
		Long: `Create operator device keys, and build, sign and verify approval digests.

A device is either an Ed25519 key in a key file (sealed with a passphrase from
$` + operatorPassphraseEnv + `, or unsealed and protected by file permissions
only) or an EC P-256 key on the operator's own PKCS#11 token (chosen with
the same token flags as "custody hsm"; PIN from --pin-file, $` + hsmPINFileEnv + `
or $` + hsmPINEnv + `).

An approval signs SHA-256 of the canonical statement (cluster ID, request ID,
payload hash, decision, expiry); see docs/policy.md for the byte layout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newOperatorKeygenCmd(), newOperatorShowCmd(), newOperatorDigestCmd(), newOperatorSignCmd(), newOperatorVerifyCmd())
	cmd.AddCommand(operatorAdminCmds()...)
	return cmd
}

// operatorDevice is what an admin needs to enroll a device.
type operatorDevice struct {
	DeviceID  string            `json:"device_id"`
	Kind      quorum.DeviceKind `json:"kind"`
	PublicKey string            `json:"public_key"`
	KeyFile   string            `json:"key_file,omitempty"`
	Sealed    *bool             `json:"sealed,omitempty"`
	KeyLabel  string            `json:"key_label,omitempty"`
}

func operatorPrintDevice(cmd *cobra.Command, d operatorDevice) error {
	return report(cmd, d, func(w io.Writer) error {
		fmt.Fprintf(w, "device id:  %s\nkind:       %s\npublic key: %s\n", d.DeviceID, d.Kind, d.PublicKey)
		if d.KeyFile != "" {
			fmt.Fprintf(w, "key file:   %s\n", d.KeyFile)
		}
		if d.KeyLabel != "" {
			fmt.Fprintf(w, "token key:  %s\n", d.KeyLabel)
		}
		return nil
	})
}

// operatorKeyFlags choose a device key on the operator's own PKCS#11 token
// instead of a key file.
type operatorKeyFlags struct {
	pkcs11   bool
	keyLabel string
	token    *tokenFlags
}

func addOperatorKeyFlags(cmd *cobra.Command) *operatorKeyFlags {
	o := &operatorKeyFlags{}
	cmd.Flags().BoolVar(&o.pkcs11, "pkcs11", false, "use an EC P-256 key on a PKCS#11 token instead of a key file")
	cmd.Flags().StringVar(&o.keyLabel, "key-label", "custody-operator", "label of the P-256 key on the token")
	o.token = addTokenFlags(cmd.Flags())
	return o
}

// openKey opens the token and finds the device key on it; close the Token
// when done.
func (o *operatorKeyFlags) openKey() (*hsm.Token, *hsm.ECKey, error) {
	t, err := o.token.open()
	if err != nil {
		return nil, nil, err
	}
	k, err := t.ECKey(o.keyLabel)
	if err != nil {
		t.Close()
		return nil, nil, err
	}
	return t, k, nil
}

// operatorTokenDevice describes a device key on a token for enrollment.
func operatorTokenDevice(k *hsm.ECKey) operatorDevice {
	return operatorDevice{DeviceID: quorum.DeviceID(quorum.DeviceP256, k.PublicKeyBytes()),
		Kind: quorum.DeviceP256, PublicKey: hex.EncodeToString(k.PublicKeyBytes()), KeyLabel: k.Label()}
}

func newOperatorKeygenCmd() *cobra.Command {
	var out string
	var seal bool
	var tok *operatorKeyFlags
	cmd := &cobra.Command{
		Use:   "keygen (--out FILE [--seal] | --pkcs11 --token-label T [--key-label L])",
		Short: "Create an operator device key and print what to enroll",
		Long: `Create a device key and print its device ID and public key for enrollment.

With --out, an Ed25519 key is written to a new file (mode 0600, never
overwritten). With --seal the key is encrypted under the passphrase in
$` + operatorPassphraseEnv + ` (PBKDF2-HMAC-SHA256, AES-256-GCM). Without
--seal the file is NOT passphrase-protected: anyone who can read it can
approve as you. Keep such files on an encrypted disk, or use --seal or a token.

With --pkcs11, an EC P-256 key is generated inside the operator's token and
never leaves it.`,
		Example: `  custody operator keygen --out ~/.custody/alice.key --seal
  custody operator keygen --pkcs11 --token-label alice --pin-file ~/.custody/pin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tok.pkcs11 {
				if out != "" || seal {
					return errors.New("operator: --pkcs11 keys stay on the token; drop --out and --seal")
				}
				t, err := tok.token.open()
				if err != nil {
					return err
				}
				defer t.Close()
				k, err := t.GenerateECKey(tok.keyLabel, hsm.P256)
				if err != nil {
					return err
				}
				return operatorPrintDevice(cmd, operatorTokenDevice(k))
			}
			if out == "" {
				return errors.New("operator: --out FILE (or --pkcs11) is required")
			}
			var pass []byte
			if seal {
				pass = []byte(os.Getenv(operatorPassphraseEnv))
				if len(pass) < 8 {
					return fmt.Errorf("operator: --seal needs a passphrase of at least 8 characters in $%s", operatorPassphraseEnv)
				}
			}
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			data, err := quorum.NewKeyFile(priv, pass, rand.Reader)
			if err != nil {
				return err
			}
			if err := writeNew(out, 0o600, data); err != nil {
				return fmt.Errorf("operator: %w", err)
			}
			if !seal {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is not passphrase-protected (use --seal)\n", out)
			}
			kf, err := quorum.ParseKeyFile(data)
			if err != nil {
				return err
			}
			return operatorPrintDevice(cmd, operatorDevice{DeviceID: kf.DeviceID, Kind: kf.Kind, PublicKey: hex.EncodeToString(kf.PublicKey), KeyFile: out, Sealed: &seal})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "key file to create (must not exist)")
	cmd.Flags().BoolVar(&seal, "seal", false, "encrypt the key under the passphrase in $"+operatorPassphraseEnv)
	tok = addOperatorKeyFlags(cmd)
	return cmd
}

func newOperatorShowCmd() *cobra.Command {
	var keyFile string
	var tok *operatorKeyFlags
	cmd := &cobra.Command{
		Use:   "show (--key FILE | --pkcs11 --token-label T)",
		Short: "Print a device's ID and public key (no passphrase needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tok.pkcs11 {
				t, k, err := tok.openKey()
				if err != nil {
					return err
				}
				defer t.Close()
				return operatorPrintDevice(cmd, operatorTokenDevice(k))
			}
			kf, err := operatorReadKeyFile(keyFile)
			if err != nil {
				return err
			}
			sealed := kf.Sealed != nil
			return operatorPrintDevice(cmd, operatorDevice{DeviceID: kf.DeviceID, Kind: kf.Kind, PublicKey: hex.EncodeToString(kf.PublicKey), KeyFile: keyFile, Sealed: &sealed})
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "key file")
	tok = addOperatorKeyFlags(cmd)
	return cmd
}

// operatorReadKeyFile reads and parses the --key file.
func operatorReadKeyFile(path string) (quorum.KeyFile, error) {
	b, err := readInputFile(path)
	if err != nil {
		return quorum.KeyFile{}, fmt.Errorf("operator: --key: %w", err)
	}
	return quorum.ParseKeyFile(b)
}

// statementFlags are the fields of an approval statement.
type statementFlags struct {
	cluster, request, payload, decision, expiry string
}

func (s *statementFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.cluster, "cluster", "", "cluster ID")
	cmd.Flags().StringVar(&s.request, "request", "", "request (or change) ID")
	cmd.Flags().StringVar(&s.payload, "payload-hash", "", "payload hash, 64 hex digits")
	cmd.Flags().StringVar(&s.decision, "decision", "approve", `"approve" or "reject"`)
	cmd.Flags().StringVar(&s.expiry, "expiry", "1h", "expiry: RFC 3339 time, Unix seconds, or a duration from now (e.g. 30m)")
	for _, f := range []string{"cluster", "request", "payload-hash"} {
		_ = cmd.MarkFlagRequired(f)
	}
}

func (s *statementFlags) statement(now time.Time) (quorum.Statement, error) {
	h, err := quorum.ParseHash(s.payload)
	if err != nil {
		return quorum.Statement{}, fmt.Errorf("--payload-hash: %w", err)
	}
	d, err := quorum.ParseDecision(s.decision)
	if err != nil {
		return quorum.Statement{}, fmt.Errorf("--decision: %w", err)
	}
	exp, err := operatorParseExpiry(s.expiry, now)
	if err != nil {
		return quorum.Statement{}, err
	}
	st := quorum.Statement{ClusterID: s.cluster, RequestID: s.request, PayloadHash: h, Decision: d, Expiry: exp}
	if _, err := st.Encode(); err != nil {
		return quorum.Statement{}, err
	}
	return st, nil
}

func operatorParseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Truncate(time.Second), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d).UTC().Truncate(time.Second), nil
	}
	var u int64
	if _, err := fmt.Sscanf(s, "%d", &u); err == nil && fmt.Sprint(u) == s && u > 0 {
		return time.Unix(u, 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("--expiry %q: want an RFC 3339 time, Unix seconds or a positive duration", s)
}

type digestReport struct {
	Statement quorum.Statement `json:"statement"`
	Encoding  string           `json:"encoding"`
	Digest    string           `json:"digest"`
}

func newOperatorDigestCmd() *cobra.Command {
	sf := &statementFlags{}
	cmd := &cobra.Command{
		Use:   "digest --cluster C --request R --payload-hash H [--decision approve|reject] [--expiry T]",
		Short: "Print the canonical approval statement bytes and the digest a device signs",
		Example: `  custody operator digest --cluster prod-1 --request wd-0001 \
      --payload-hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 --expiry 2026-11-24T12:00:00Z`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := sf.statement(time.Now())
			if err != nil {
				return err
			}
			enc, _ := st.Encode()
			dg, _ := st.Digest()
			rep := digestReport{Statement: st, Encoding: hex.EncodeToString(enc), Digest: hex.EncodeToString(dg[:])}
			return report(cmd, rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "cluster:  %s\nrequest:  %s\npayload:  %s\ndecision: %s\nexpiry:   %s\nencoding: %s\ndigest:   %s\n",
					st.ClusterID, st.RequestID, st.PayloadHash, st.Decision, st.Expiry.Format(time.RFC3339), rep.Encoding, rep.Digest)
				return err
			})
		},
	}
	sf.register(cmd)
	return cmd
}

func newOperatorSignCmd() *cobra.Command {
	sf := &statementFlags{}
	var keyFile string
	var tok *operatorKeyFlags
	cmd := &cobra.Command{
		Use:   "sign (--key FILE | --pkcs11 --token-label T) --cluster C --request R --payload-hash H",
		Short: "Sign an approval (or rejection) with a device and print it as JSON",
		Long: `Sign the approval digest with a device key and print the approval as JSON,
ready to submit. Read the request's human description before signing: the
payload hash is what you approve, exactly.

A sealed key file is opened with the passphrase in $` + operatorPassphraseEnv + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := sf.statement(time.Now())
			if err != nil {
				return err
			}
			var a quorum.Approval
			if tok.pkcs11 {
				t, k, err := tok.openKey()
				if err != nil {
					return err
				}
				defer t.Close()
				if a, err = quorum.Sign(st, operatorTokenDevice(k).DeviceID, k, nil); err != nil {
					return err
				}
			} else {
				kf, err := operatorReadKeyFile(keyFile)
				if err != nil {
					return err
				}
				priv, err := kf.Open([]byte(os.Getenv(operatorPassphraseEnv)))
				if err != nil {
					return err
				}
				if a, err = quorum.Sign(st, kf.DeviceID, priv, nil); err != nil {
					return err
				}
			}
			// Approvals are data for the ledger: JSON in both output modes.
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(a)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "Ed25519 key file")
	sf.register(cmd)
	tok = addOperatorKeyFlags(cmd)
	return cmd
}

type verifyReport struct {
	OK       bool   `json:"ok"`
	DeviceID string `json:"device_id"`
	Decision string `json:"decision"`
	Digest   string `json:"digest"`
	Expiry   string `json:"expiry"`
}

func newOperatorVerifyCmd() *cobra.Command {
	var approvalFile, pubHex, kind string
	cmd := &cobra.Command{
		Use:   "verify --approval FILE --public-key HEX [--kind ed25519|ecdsa-p256]",
		Short: "Verify an approval's signature against a device public key",
		Long: `Verify that an approval JSON was signed by the device with the given public
key, and that its device ID matches that key. Registry checks (device active,
role, quorum) happen in the ledger, not here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var a quorum.Approval
			if err := decodeInputFile(approvalFile, &a); err != nil {
				return err
			}
			pub, err := hex.DecodeString(strings.TrimPrefix(pubHex, "0x"))
			if err != nil {
				return fmt.Errorf("--public-key: %w", err)
			}
			k := quorum.DeviceKind(kind)
			if err := quorum.ValidatePublicKey(k, pub); err != nil {
				return err
			}
			dev := quorum.Device{ID: quorum.DeviceID(k, pub), Kind: k, PublicKey: pub}
			if a.DeviceID != dev.ID {
				return fmt.Errorf("operator: approval names device %s, the key is device %s", a.DeviceID, dev.ID)
			}
			dg, err := a.Statement.Digest()
			if err != nil {
				return err
			}
			if err := dev.VerifyDigest(dg, a.Signature); err != nil {
				return err
			}
			rep := verifyReport{OK: true, DeviceID: dev.ID, Decision: a.Decision.String(), Digest: hex.EncodeToString(dg[:]), Expiry: a.Expiry.Format(time.RFC3339)}
			return report(cmd, rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "ok: %s of %s by device %s, expires %s\ndigest: %s\n", rep.Decision, a.RequestID, rep.DeviceID, rep.Expiry, rep.Digest)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&approvalFile, "approval", "", "approval JSON file")
	cmd.Flags().StringVar(&pubHex, "public-key", "", "device public key, hex")
	cmd.Flags().StringVar(&kind, "kind", string(quorum.DeviceEd25519), "device kind: ed25519 or ecdsa-p256")
	_ = cmd.MarkFlagRequired("approval")
	_ = cmd.MarkFlagRequired("public-key")
	return cmd
}
