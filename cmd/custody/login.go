package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/api/rest"
)

type loginReport struct {
	Profile   string   `json:"profile"`
	Path      string   `json:"path"`
	Server    string   `json:"server"`
	ClusterID string   `json:"cluster_id"`
	Operator  string   `json:"operator"`
	Roles     []string `json:"roles"`
	DeviceID  string   `json:"device_id"`
}

func newLoginCmd() *cobra.Command {
	var p profile
	var tok *operatorKeyFlags
	var sf *serverFlags
	cmd := &cobra.Command{
		Use:   "login --server URL --ca FILE --cert FILE --key FILE (--device-key FILE | --pkcs11 --token-label T)",
		Short: "Check your credentials against a node and write a profile",
		Long: `Connect to a node's API with your operator certificate, check that the
device you approve with is one of your enrolled, active devices, and write a
profile (mode 0600) that the other operator commands read: in
$` + configDirEnv + `/profiles/NAME.json, else the user config dir's
custody/profiles/NAME.json.

The profile holds the server URL and the paths of the cluster CA, your
certificate and key and your device (a key file, or a token and key label):
never a passphrase or PIN. Those stay in $` + operatorPassphraseEnv + ` and your PIN
file or $` + hsmPINEnv + ` when a command signs.`,
		Example: `  custody login --server https://127.0.0.1:7103 --ca cluster/ca/ca.pem \
      --cert cluster/operators/alice/cert.pem --key cluster/operators/alice/cert.key \
      --device-key cluster/operators/alice/device.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p.Server = sf.server
			if p.Server == "" || p.CA == "" || p.Cert == "" || p.Key == "" {
				return errors.New("login: --server, --ca, --cert and --key are required")
			}
			if tok.pkcs11 == (p.Device.KeyFile != "") {
				return errors.New("login: name your device: --device-key FILE or --pkcs11 with the token flags")
			}
			for _, f := range []*string{&p.CA, &p.Cert, &p.Key, &p.Device.KeyFile, &tok.token.pinFile} {
				if *f != "" {
					abs, err := filepath.Abs(*f)
					if err != nil {
						return err
					}
					*f = abs
				}
			}
			if tok.pkcs11 {
				p.Device = profileDevice{PKCS11: true, Module: tok.token.module, TokenLabel: tok.token.label, TokenSerial: tok.token.serial,
					KeyLabel: tok.keyLabel, PINFile: tok.token.pinFile}
				t, k, err := tok.openKey()
				if err != nil {
					return err
				}
				p.Device.ID = operatorTokenDevice(k).DeviceID
				t.Close()
			} else {
				kf, err := operatorReadKeyFile(p.Device.KeyFile)
				if err != nil {
					return err
				}
				p.Device.ID = kf.DeviceID
			}
			c, err := newAPIClient(p)
			if err != nil {
				return err
			}
			var who rest.IdentityView
			if err := c.do(context.Background(), "GET", rest.PathWhoami, nil, &who); err != nil {
				return fmt.Errorf("login: %w", err)
			}
			if who.Role != "operator" || who.Operator == nil {
				return fmt.Errorf("login: the certificate is %s %q, not an enrolled operator", who.Role, who.Principal)
			}
			if !slices.ContainsFunc(who.Devices, func(d rest.DeviceView) bool { return d.ID == p.Device.ID && d.Status == "active" }) {
				return fmt.Errorf("login: device %s is not an active device of operator %q", p.Device.ID, who.Principal)
			}
			name := sf.profileName()
			path, err := profilePath(name)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				return err
			}
			if err := writeProfile(path, append(b, '\n')); err != nil {
				return fmt.Errorf("login: %w", err)
			}
			rep := loginReport{Profile: name, Path: path, Server: p.Server, ClusterID: who.ClusterID, Operator: who.Principal, DeviceID: p.Device.ID}
			for _, r := range who.Operator.Roles {
				rep.Roles = append(rep.Roles, string(r))
			}
			return report(cmd, rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "logged in as %s (roles %v) to cluster %s at %s\ndevice %s\nprofile %q written to %s\n",
					rep.Operator, rep.Roles, rep.ClusterID, rep.Server, rep.DeviceID, name, path)
				return err
			})
		},
	}
	sf = addServerFlags(cmd)
	cmd.Flags().StringVar(&p.CA, "ca", "", "the cluster CA certificate (PEM)")
	cmd.Flags().StringVar(&p.Cert, "cert", "", "your operator certificate (PEM)")
	cmd.Flags().StringVar(&p.Key, "key", "", "your operator certificate's key (PEM)")
	cmd.Flags().StringVar(&p.Device.KeyFile, "device-key", "", "your Ed25519 device key file (custody operator keygen)")
	tok = addOperatorKeyFlags(cmd)
	return cmd
}

// writeProfile replaces path with b (mode 0600, its directory 0700),
// atomically.
func writeProfile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := writeNew(tmp, 0o600, b); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
