package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	btcecdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm"
)

// Environment variables the HSM commands read. PINs are only ever read from
// these or from files: never from flags, which end up in argv.
const (
	hsmPINEnv     = "CUSTODY_HSM_PIN"
	hsmSOPINEnv   = "CUSTODY_HSM_SO_PIN"
	hsmPINFileEnv = "CUSTODY_HSM_PIN_FILE"
	hsmDefaultKEK = "custody-kek"
)

// ---------------------------------------------------------------- softhsm

func newSoftHSMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "softhsm",
		Short: "Provision isolated SoftHSM2 tokens for tests and devnets",
		Long: `Provision SoftHSM2 (software PKCS#11) tokens in a directory of their own, with
their own softhsm2.conf. Nothing under /etc/softhsm or the global token
directory is read or written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSoftHSMInitCmd())
	return cmd
}

type softhsmInitReport struct {
	Dir       string              `json:"dir"`
	Conf      string              `json:"conf"`
	Module    string              `json:"module"`
	Tokens    []softhsmTokenEntry `json:"tokens"`
	PINFile   string              `json:"pin_file,omitempty"`
	SOPINFile string              `json:"so_pin_file,omitempty"`
	Env       map[string]string   `json:"env"`
}

type softhsmTokenEntry struct {
	Label  string `json:"label"`
	Serial string `json:"serial"`
}

func newSoftHSMInitCmd() *cobra.Command {
	var dir, tokens, pinFile, soPINFile string
	cmd := &cobra.Command{
		Use:   "init --dir DIR --tokens a,b,c",
		Short: "Create an isolated SoftHSM2 config in DIR and initialise the named tokens",
		Long: `Create DIR/softhsm2.conf and DIR/tokens, initialise one token per label, and
print the environment to export to use them.

PINs (the same user PIN and SO PIN for every token) come from, in order:
  --pin-file / --so-pin-file, or $CUSTODY_HSM_PIN / $CUSTODY_HSM_SO_PIN,
  or are generated and written to DIR/user.pin and DIR/so.pin (mode 0600).
PINs are never printed; the output names the files that hold them.

DIR must not already hold tokens.`,
		Example: `  eval "$(custody softhsm init --dir /tmp/hsm --tokens node1,node2,node3)"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("softhsm init: --dir is required")
			}
			labels, err := softhsmParseLabels(tokens)
			if err != nil {
				return err
			}
			if ents, err := os.ReadDir(filepath.Join(dir, "tokens")); err == nil && len(ents) > 0 {
				return fmt.Errorf("softhsm init: %s already holds %d token(s); use a new directory", dir, len(ents))
			}
			pin, err := softhsmPIN(pinFile, hsmPINEnv)
			if err != nil {
				return err
			}
			soPIN, err := softhsmPIN(soPINFile, hsmSOPINEnv)
			if err != nil {
				return err
			}
			env, err := softhsm.Setup(dir)
			if err != nil {
				return err
			}
			rep := softhsmInitReport{Dir: env.Dir, Conf: env.ConfPath, Module: env.Module, PINFile: pinFile, SOPINFile: soPINFile}
			if pin == "" {
				if pin, rep.PINFile, err = softhsmWritePIN(env.Dir, "user.pin"); err != nil {
					return err
				}
			}
			if soPIN == "" {
				if soPIN, rep.SOPINFile, err = softhsmWritePIN(env.Dir, "so.pin"); err != nil {
					return err
				}
			}
			for _, l := range labels {
				serial, err := env.InitToken(l, soPIN, pin)
				if err != nil {
					return fmt.Errorf("softhsm init: token %q: %w", l, err)
				}
				rep.Tokens = append(rep.Tokens, softhsmTokenEntry{Label: l, Serial: serial})
			}
			rep.Env = map[string]string{"SOFTHSM2_CONF": env.ConfPath, softhsm.ModuleEnv: env.Module}
			if rep.PINFile != "" {
				rep.Env[hsmPINFileEnv] = rep.PINFile
			}
			return report(cmd, rep, func(w io.Writer) error {
				fmt.Fprintf(w, "# SoftHSM2 environment in %s\n", rep.Dir)
				for _, t := range rep.Tokens {
					fmt.Fprintf(w, "#   token %-20s serial %s\n", t.Label, t.Serial)
				}
				if rep.PINFile != "" {
					fmt.Fprintf(w, "# user PIN in %s, SO PIN in %s (keep them private)\n", rep.PINFile, rep.SOPINFile)
				}
				fmt.Fprintf(w, "export SOFTHSM2_CONF=%s\n", hsmShellQuote(env.ConfPath))
				fmt.Fprintf(w, "export %s=%s\n", softhsm.ModuleEnv, hsmShellQuote(env.Module))
				if rep.PINFile != "" {
					fmt.Fprintf(w, "export %s=%s\n", hsmPINFileEnv, hsmShellQuote(rep.PINFile))
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for softhsm2.conf and the token store (required)")
	cmd.Flags().StringVar(&tokens, "tokens", "", "comma-separated token labels to initialise (required)")
	cmd.Flags().StringVar(&pinFile, "pin-file", "", "file holding the user PIN (default: $"+hsmPINEnv+" or generated)")
	cmd.Flags().StringVar(&soPINFile, "so-pin-file", "", "file holding the SO PIN (default: $"+hsmSOPINEnv+" or generated)")
	return cmd
}

func softhsmParseLabels(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("softhsm init: --tokens is required (e.g. --tokens node1,node2)")
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(s, ",") {
		l = strings.TrimSpace(l)
		if !softhsm.ValidLabel(l) {
			return nil, fmt.Errorf("softhsm init: invalid token label %q (1..32 printable characters, no spaces)", l)
		}
		if seen[l] {
			return nil, fmt.Errorf("softhsm init: token label %q given twice", l)
		}
		seen[l] = true
		out = append(out, l)
	}
	return out, nil
}

// softhsmPIN reads a PIN from file, or env; "" means "generate one".
func softhsmPIN(file, env string) (string, error) {
	if file == "" && os.Getenv(env) == "" {
		return "", nil
	}
	pin, err := hsm.LoadPIN(env, file)
	if err != nil {
		return "", err
	}
	if len(pin) < 4 || len(pin) > 255 {
		return "", fmt.Errorf("softhsm init: PIN must be 4..255 characters")
	}
	return pin, nil
}

// softhsmWritePIN generates a PIN into dir/name, mode 0600, never
// overwriting a file.
func softhsmWritePIN(dir, name string) (pin, path string, err error) {
	pin, err = softhsm.RandomPIN()
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("softhsm init: %w", err)
	}
	if _, err := f.WriteString(pin + "\n"); err != nil {
		f.Close()
		return "", "", fmt.Errorf("softhsm init: %w", err)
	}
	return pin, path, f.Close()
}

func hsmShellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ---------------------------------------------------------------- hsm

// hsmFlags are the token-selection flags shared by every hsm command.
type hsmFlags struct {
	module, label, serial, pinFile string
}

func (f *hsmFlags) register(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.StringVar(&f.module, "module", "", "PKCS#11 module path (default: $"+softhsm.ModuleEnv+" or libsofthsm2.so found on this system)")
	p.StringVar(&f.label, "token-label", "", "select the token by label")
	p.StringVar(&f.serial, "token-serial", "", "select the token by serial number")
	p.StringVar(&f.pinFile, "pin-file", "", "file holding the user PIN (default: $"+hsmPINFileEnv+", else the PIN in $"+hsmPINEnv+")")
}

func (f *hsmFlags) modulePath() (string, error) {
	if f.module != "" {
		return f.module, nil
	}
	return softhsm.FindModule()
}

// open selects and logs in to the token the flags name.
func (f *hsmFlags) open() (*hsm.Token, error) {
	mod, err := f.modulePath()
	if err != nil {
		return nil, err
	}
	if f.label == "" && f.serial == "" {
		return nil, errors.New("hsm: select a token with --token-label or --token-serial")
	}
	pinFile := f.pinFile
	if pinFile == "" {
		pinFile = os.Getenv(hsmPINFileEnv)
	}
	pin, err := hsm.LoadPIN(hsmPINEnv, pinFile)
	if err != nil {
		return nil, err
	}
	return hsm.Open(hsm.Config{Module: mod, TokenLabel: f.label, TokenSerial: f.serial, PIN: pin})
}

func newHSMCmd() *cobra.Command {
	f := &hsmFlags{}
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
	f.register(cmd)
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

func newHSMInfoCmd(f *hsmFlags) *cobra.Command {
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
			if f.label != "" || f.serial != "" {
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

func newHSMInitKEKCmd(f *hsmFlags) *cobra.Command {
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
func newHSMSealCmd(f *hsmFlags, seal bool) *cobra.Command {
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
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("hsm %s: %s exists; refusing to overwrite", use, out)
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
			if err := hsmWriteNew(out, result); err != nil {
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

// hsmWriteNew writes data to a new file, mode 0600.
func hsmWriteNew(path string, data []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		os.Remove(path)
		return err
	}
	return fh.Close()
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

func newHSMKeygenCmd(f *hsmFlags) *cobra.Command {
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

func newHSMSignCmd(f *hsmFlags) *cobra.Command {
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
			der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
			if err != nil {
				return err
			}
			rep := hsmSignReport{hsmKeyReport: hsmKeyReportOf(k), Digest: hex.EncodeToString(digest),
				Signature: hex.EncodeToString(der), R: hex.EncodeToString(r.FillBytes(make([]byte, 32))),
				S: hex.EncodeToString(s.FillBytes(make([]byte, 32))), Verified: true}
			if k.Curve() == hsm.Secp256k1 {
				rep.LowS = s.Cmp(new(big.Int).Rsh(btcec.S256().N, 1)) <= 0
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
any token. For secp256k1 a high-S signature is rejected, as Bitcoin and
Ethereum do. Exits non-zero if the signature does not verify.`,
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
			ok := false
			switch c {
			case hsm.Secp256k1:
				pk, err := btcec.ParsePubKey(pub)
				if err != nil {
					return fmt.Errorf("hsm verify: public key: %w", err)
				}
				sig, err := btcecdsa.ParseDERSignature(der)
				if err != nil {
					return fmt.Errorf("hsm verify: signature: %w", err)
				}
				var rs struct{ R, S *big.Int }
				if _, err := asn1.Unmarshal(der, &rs); err != nil {
					return fmt.Errorf("hsm verify: signature: %w", err)
				}
				if rs.S.Cmp(new(big.Int).Rsh(btcec.S256().N, 1)) > 0 {
					return errors.New("hsm verify: signature is high-S")
				}
				ok = sig.Verify(digest, pk)
			case hsm.P256:
				pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub)
				if err != nil {
					return fmt.Errorf("hsm verify: public key: %w", err)
				}
				ok = ecdsa.VerifyASN1(pk, digest, der)
			}
			if !ok {
				return errors.New("hsm verify: signature does NOT verify")
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
