package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/hsm"
)

// hsmDefaultKEK is the label of the key-encryption key the hsm commands use
// unless --kek-label says otherwise.
const hsmDefaultKEK = "custody-kek"

func newHSMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Inspect PKCS#11 tokens and manage the key-encryption key",
		Long: `Inspect PKCS#11 tokens, create the key-encryption key (KEK) that seals key
shares, and seal, open, generate keys and sign inside a token.

The token is chosen with --token-label or --token-serial (two tokens with one
label is an error). The user PIN comes from --pin-file, $CUSTODY_HSM_PIN_FILE
or $CUSTODY_HSM_PIN; there is no flag that takes a PIN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f := addTokenFlags(cmd.PersistentFlags())
	cmd.AddCommand(newHSMInfoCmd(f), newHSMInitKEKCmd(f), newHSMSealCmd(f, true), newHSMSealCmd(f, false),
		newHSMKeygenCmd(f), newHSMSignCmd(f), newHSMVerifyCmd())
	return cmd
}

type hsmInfoReport struct {
	Module     string             `json:"module"`
	Slots      []hsm.SlotReport   `json:"slots"`
	Token      *hsm.TokenInfo     `json:"token,omitempty"`
	Mechanisms []string           `json:"mechanisms,omitempty"`
	KEKLabel   string             `json:"kek_label,omitempty"`
	KEKPresent bool               `json:"kek_present"`
	KEK        *hsm.KeyAttributes `json:"kek,omitempty"`
	KEKError   string             `json:"kek_error,omitempty"`
}

func newHSMInfoCmd(f *tokenFlags) *cobra.Command {
	var kekLabel string
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show slots, tokens and mechanisms, and the selected token's KEK and its attributes",
		Long: `Show every slot of the module and its token. With a token selected
(--token-label/--token-serial, and a PIN), also log in and show its mechanisms
and whether the KEK exists, with its security attributes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mod, err := f.modulePath()
			if err != nil {
				return err
			}
			rep := hsmInfoReport{Module: mod}
			if rep.Slots, err = hsm.ListSlots(mod); err != nil {
				return err
			}
			if f.selected() {
				tok, err := f.open()
				if err != nil {
					return err
				}
				defer tok.Close()
				info := tok.Info()
				rep.Token = &info
				if rep.Mechanisms, err = tok.Mechanisms(); err != nil {
					return err
				}
				rep.KEKLabel = kekLabel
				s, err := tok.KEK(kekLabel)
				switch {
				case err == nil:
					a, err := s.Attributes()
					if err != nil {
						return err
					}
					rep.KEKPresent, rep.KEK = true, &a
				case errors.Is(err, hsm.ErrKeyNotFound):
				case errors.Is(err, hsm.ErrUnsafeKey):
					rep.KEKPresent, rep.KEKError = true, err.Error()
				default:
					return err
				}
			}
			return report(cmd, rep, func(w io.Writer) error {
				fmt.Fprintf(w, "module: %s\n", rep.Module)
				for _, s := range rep.Slots {
					state := "no token"
					if s.HasToken {
						state = "uninitialised token"
						if s.Initialized {
							state = fmt.Sprintf("token %q serial %s", s.Label, s.Serial)
						}
					}
					fmt.Fprintf(w, "slot %d: %s\n", s.Slot, state)
				}
				if rep.Token == nil {
					fmt.Fprintln(w, "(select a token with --token-label or --token-serial to see its keys)")
					return nil
				}
				fmt.Fprintf(w, "selected token: %q serial %s (%s %s)\n", rep.Token.Label, rep.Token.Serial, rep.Token.Manufacturer, rep.Token.Model)
				have := map[string]bool{}
				for _, m := range rep.Mechanisms {
					have[m] = true
				}
				fmt.Fprintf(w, "mechanisms: %d supported (full list with --output json); custody needs:", len(rep.Mechanisms))
				for _, m := range []string{"CKM_AES_KEY_GEN", "CKM_AES_GCM", "CKM_EC_KEY_PAIR_GEN", "CKM_ECDSA"} {
					mark := "yes"
					if !have[m] {
						mark = "MISSING"
					}
					fmt.Fprintf(w, " %s=%s", m, mark)
				}
				fmt.Fprintln(w)
				switch {
				case rep.KEK != nil:
					a := rep.KEK
					fmt.Fprintf(w, "KEK %q: present, %s-%d id %s\n", rep.KEKLabel, a.KeyType, a.ValueLen*8, a.ID)
					fmt.Fprintf(w, "  token=%t private=%t sensitive=%t extractable=%t always_sensitive=%t never_extractable=%t safe=%t\n",
						a.Token, a.Private, a.Sensitive, a.Extractable, a.AlwaysSensitive, a.NeverExtractable, a.Safe())
				case rep.KEKError != "":
					fmt.Fprintf(w, "KEK %q: present but REFUSED: %s\n", rep.KEKLabel, rep.KEKError)
				default:
					fmt.Fprintf(w, "KEK %q: absent (create it with: custody hsm init-kek)\n", rep.KEKLabel)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&kekLabel, "kek-label", hsmDefaultKEK, "label of the KEK to look for")
	return cmd
}

func newHSMInitKEKCmd(f *tokenFlags) *cobra.Command {
	var kekLabel string
	cmd := &cobra.Command{
		Use:   "init-kek",
		Short: "Create the AES-256 key-encryption key inside the token",
		Long: `Generate the AES-256 KEK inside the selected token with CKA_TOKEN,
CKA_SENSITIVE=true and CKA_EXTRACTABLE=false, and show its attributes as the
token reports them. Fails if a key with the label already exists.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := f.open()
			if err != nil {
				return err
			}
			defer tok.Close()
			s, err := tok.CreateKEK(kekLabel)
			if err != nil {
				return err
			}
			a, err := s.Attributes()
			if err != nil {
				return err
			}
			return report(cmd, a, func(w io.Writer) error {
				fmt.Fprintf(w, "created KEK %q (AES-%d, id %s) in token %q\n", a.Label, a.ValueLen*8, a.ID, tok.Info().Label)
				fmt.Fprintf(w, "  sensitive=%t extractable=%t always_sensitive=%t never_extractable=%t\n",
					a.Sensitive, a.Extractable, a.AlwaysSensitive, a.NeverExtractable)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&kekLabel, "kek-label", hsmDefaultKEK, "label of the KEK to create")
	return cmd
}

type hsmSealReport struct {
	In    string `json:"in"`
	Out   string `json:"out"`
	Bytes int    `json:"bytes"`
	KEK   string `json:"kek"`
}

// newHSMSealCmd builds "seal" (seal=true) or "open".
func newHSMSealCmd(f *tokenFlags, seal bool) *cobra.Command {
	var in, out, aad, kekLabel string
	use, short, long := "seal", "Seal a file with the token's KEK (AES-256-GCM inside the token)",
		`Seal --in with the KEK inside the token and write the versioned blob to --out
(created, mode 0600; an existing file is never overwritten). --aad binds the
blob to its purpose: opening needs the same --aad.`
	if !seal {
		use, short, long = "open", "Open a sealed blob with the token's KEK",
			`Check and decrypt the blob in --in with the KEK inside the token and write the
plaintext to --out (created, mode 0600). A changed --aad, a modified blob, or
a blob of another KEK fails and writes nothing.`
	}
	cmd := &cobra.Command{
		Use:   use + " --in FILE --out FILE [--aad TEXT]",
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" {
				return fmt.Errorf("hsm %s: --in and --out are required", use)
			}
			data, err := os.ReadFile(in)
			if err != nil {
				return fmt.Errorf("hsm %s: %w", use, err)
			}
			if err := checkNew(out); err != nil {
				return fmt.Errorf("hsm %s: %w", use, err)
			}
			tok, err := f.open()
			if err != nil {
				return err
			}
			defer tok.Close()
			s, err := tok.KEK(kekLabel)
			if err != nil {
				return err
			}
			var result []byte
			if seal {
				result, err = s.Seal(data, []byte(aad))
			} else {
				result, err = s.Open(data, []byte(aad))
			}
			if err != nil {
				return err
			}
			if err := writeNew(out, 0o600, result); err != nil {
				return fmt.Errorf("hsm %s: %w", use, err)
			}
			rep := hsmSealReport{In: in, Out: out, Bytes: len(result), KEK: kekLabel}
			return report(cmd, rep, func(w io.Writer) error {
				verb := "sealed"
				if !seal {
					verb = "opened"
				}
				fmt.Fprintf(w, "%s %s -> %s (%d bytes) with KEK %q\n", verb, in, out, len(result), kekLabel)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "input file")
	cmd.Flags().StringVar(&out, "out", "", "output file (must not exist)")
	cmd.Flags().StringVar(&aad, "aad", "", "additional authenticated data (not secret), e.g. wallet=w1/party=2")
	cmd.Flags().StringVar(&kekLabel, "kek-label", hsmDefaultKEK, "label of the KEK")
	return cmd
}

type hsmKeyReport struct {
	Label      string `json:"label"`
	Curve      string `json:"curve"`
	PublicKey  string `json:"public_key"`           // uncompressed SEC1, hex
	Compressed string `json:"compressed,omitempty"` // secp256k1 only
}

func hsmKeyReportOf(k *hsm.ECKey) hsmKeyReport {
	r := hsmKeyReport{Label: k.Label(), Curve: k.Curve().String(), PublicKey: hex.EncodeToString(k.PublicKeyBytes())}
	if pk := k.BTCECPublicKey(); pk != nil {
		r.Compressed = hex.EncodeToString(pk.SerializeCompressed())
	}
	return r
}

func newHSMKeygenCmd(f *tokenFlags) *cobra.Command {
	var label, curve string
	cmd := &cobra.Command{
		Use:   "keygen --label NAME [--curve secp256k1|p256]",
		Short: "Generate an EC key pair inside the token (private key never extractable)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if label == "" {
				return errors.New("hsm keygen: --label is required")
			}
			c, err := hsm.ParseCurve(curve)
			if err != nil {
				return err
			}
			tok, err := f.open()
			if err != nil {
				return err
			}
			defer tok.Close()
			k, err := tok.GenerateECKey(label, c)
			if err != nil {
				return err
			}
			rep := hsmKeyReportOf(k)
			return report(cmd, rep, func(w io.Writer) error {
				fmt.Fprintf(w, "label: %s\ncurve: %s\npublic_key: %s\n", rep.Label, rep.Curve, rep.PublicKey)
				if rep.Compressed != "" {
					fmt.Fprintf(w, "compressed: %s\n", rep.Compressed)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&label, "label", "", "key label (required)")
	cmd.Flags().StringVar(&curve, "curve", "secp256k1", "curve: secp256k1 or p256")
	return cmd
}

type hsmSignReport struct {
	hsmKeyReport
	Digest     string `json:"digest"`
	Signature  string `json:"signature"` // ASN.1 DER, hex
	R          string `json:"r"`
	S          string `json:"s"`
	RecoveryID *byte  `json:"recovery_id,omitempty"`
	LowS       bool   `json:"low_s"`
	Verified   bool   `json:"verified"`
}

func newHSMSignCmd(f *tokenFlags) *cobra.Command {
	var label, digestHex, in string
	cmd := &cobra.Command{
		Use:   "sign --label NAME (--digest HEX | --in FILE)",
		Short: "Sign a 32-byte digest (or the SHA-256 of a file) with a key in the token",
		Long: `Sign with CKM_ECDSA inside the token. The signature is verified against the
public key (and normalised to low-S for secp256k1) before it is printed; for
secp256k1 the Ethereum recovery id is shown too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if label == "" {
				return errors.New("hsm sign: --label is required")
			}
			digest, err := hsmDigest(digestHex, in)
			if err != nil {
				return err
			}
			tok, err := f.open()
			if err != nil {
				return err
			}
			defer tok.Close()
			k, err := tok.ECKey(label)
			if err != nil {
				return err
			}
			r, s, err := k.SignRS(digest)
			if err != nil {
				return err
			}
			der, err := hsm.MarshalSignature(r, s)
			if err != nil {
				return err
			}
			// SignRS verified (r, s); this checks the encoding printed.
			if err := hsm.VerifySignature(k.Public(), digest, der); err != nil {
				return err
			}
			rep := hsmSignReport{hsmKeyReport: hsmKeyReportOf(k), Digest: hex.EncodeToString(digest),
				Signature: hex.EncodeToString(der), R: hex.EncodeToString(r.FillBytes(make([]byte, 32))),
				S: hex.EncodeToString(s.FillBytes(make([]byte, 32))), Verified: true}
			if k.Curve() == hsm.Secp256k1 {
				rep.LowS = k.Curve().IsLowS(s)
				v, err := k.RecoveryID(digest, r, s)
				if err != nil {
					return err
				}
				rep.RecoveryID = &v
			}
			return report(cmd, rep, func(w io.Writer) error {
				fmt.Fprintf(w, "label: %s\ncurve: %s\npublic_key: %s\ndigest: %s\nsignature: %s\nr: %s\ns: %s\n",
					rep.Label, rep.Curve, rep.PublicKey, rep.Digest, rep.Signature, rep.R, rep.S)
				if rep.RecoveryID != nil {
					fmt.Fprintf(w, "recovery_id: %d\nlow_s: %t\n", *rep.RecoveryID, rep.LowS)
				}
				fmt.Fprintf(w, "verified: %t\n", rep.Verified)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&label, "label", "", "key label (required)")
	cmd.Flags().StringVar(&digestHex, "digest", "", "32-byte digest in hex")
	cmd.Flags().StringVar(&in, "in", "", "file whose SHA-256 is signed")
	return cmd
}

func hsmDigest(digestHex, in string) ([]byte, error) {
	switch {
	case digestHex != "" && in != "":
		return nil, errors.New("hsm: give --digest or --in, not both")
	case digestHex != "":
		d, err := hex.DecodeString(digestHex)
		if err != nil || len(d) != 32 {
			return nil, fmt.Errorf("hsm: --digest must be 32 bytes of hex (64 hex digits)")
		}
		return d, nil
	case in != "":
		data, err := os.ReadFile(in)
		if err != nil {
			return nil, fmt.Errorf("hsm: %w", err)
		}
		d := sha256.Sum256(data)
		return d[:], nil
	}
	return nil, errors.New("hsm: --digest or --in is required")
}

func newHSMVerifyCmd() *cobra.Command {
	var pubHex, digestHex, in, sigHex, curve string
	cmd := &cobra.Command{
		Use:   "verify --pubkey HEX (--digest HEX | --in FILE) --sig HEX",
		Short: "Verify an ECDSA signature in software (no token needed)",
		Long: `Verify a DER ECDSA signature against a public key (uncompressed or, for
secp256k1, compressed SEC1 hex) with btcec or crypto/ecdsa, independently of
any token. The DER must be canonical, with nothing after it. For secp256k1
a high-S signature is rejected, as Bitcoin and Ethereum do. Exits non-zero if
the signature does not verify.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := hsm.ParseCurve(curve)
			if err != nil {
				return err
			}
			digest, err := hsmDigest(digestHex, in)
			if err != nil {
				return err
			}
			pub, err := hex.DecodeString(pubHex)
			if err != nil {
				return fmt.Errorf("hsm verify: --pubkey is not hex: %w", err)
			}
			der, err := hex.DecodeString(sigHex)
			if err != nil {
				return fmt.Errorf("hsm verify: --sig is not hex: %w", err)
			}
			pk, err := hsm.ParsePublicKey(c, pub)
			if err != nil {
				return err
			}
			if err := hsm.VerifySignature(pk, digest, der); err != nil {
				return err
			}
			return report(cmd, map[string]bool{"verified": true}, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, "verified: true")
				return err
			})
		},
	}
	cmd.Flags().StringVar(&pubHex, "pubkey", "", "public key, SEC1 hex")
	cmd.Flags().StringVar(&digestHex, "digest", "", "32-byte digest in hex")
	cmd.Flags().StringVar(&in, "in", "", "file whose SHA-256 was signed")
	cmd.Flags().StringVar(&sigHex, "sig", "", "DER signature in hex")
	cmd.Flags().StringVar(&curve, "curve", "secp256k1", "curve: secp256k1 or p256")
	return cmd
}
