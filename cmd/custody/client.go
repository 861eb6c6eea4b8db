package main

// The operator CLI's connection to a node: a profile file (written by
// `custody login`) naming the node's API address, the cluster CA, the
// operator's certificate and key, and the operator's device (a key file or
// a key on a PKCS#11 token). A profile holds paths and names, never a
// secret: the device's passphrase comes from $CUSTODY_OPERATOR_PASSPHRASE,
// a token's PIN from its PIN file or $CUSTODY_HSM_PIN.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// Environment variables of the operator CLI.
const (
	// configDirEnv overrides where profiles live (default: the user
	// config dir's custody/).
	configDirEnv = "CUSTODY_CONFIG_DIR"
	// profileEnv names the profile to use (default "default").
	profileEnv = "CUSTODY_PROFILE"
)

// profile is what `custody login` writes: where the node is and which
// files identify the operator. Paths are absolute.
type profile struct {
	Server string        `json:"server"`
	CA     string        `json:"ca"`
	Cert   string        `json:"cert"`
	Key    string        `json:"key"`
	Device profileDevice `json:"device"`
}

// profileDevice is the operator's approval device: a key file, or a P-256
// key on a PKCS#11 token.
type profileDevice struct {
	ID          string `json:"id"`
	KeyFile     string `json:"key_file,omitempty"`
	PKCS11      bool   `json:"pkcs11,omitempty"`
	Module      string `json:"module,omitempty"`
	TokenLabel  string `json:"token_label,omitempty"`
	TokenSerial string `json:"token_serial,omitempty"`
	KeyLabel    string `json:"key_label,omitempty"`
	PINFile     string `json:"pin_file,omitempty"`
}

// serverFlags select the node and the profile of an online command.
type serverFlags struct {
	server, profile string
}

func addServerFlags(cmd *cobra.Command) *serverFlags {
	f := &serverFlags{}
	cmd.PersistentFlags().StringVar(&f.server, "server", "", "node API URL, https://HOST:PORT (default: the profile's)")
	cmd.PersistentFlags().StringVar(&f.profile, "profile", "", "profile name (default: $"+profileEnv+", else \"default\")")
	return f
}

func (f *serverFlags) profileName() string {
	switch {
	case f.profile != "":
		return f.profile
	case os.Getenv(profileEnv) != "":
		return os.Getenv(profileEnv)
	}
	return "default"
}

// profilePath is where profile name lives.
func profilePath(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("profile name %q: want a plain name", name)
	}
	dir := os.Getenv(configDirEnv)
	if dir == "" {
		d, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("no config dir (set $%s): %w", configDirEnv, err)
		}
		dir = filepath.Join(d, "custody")
	}
	return filepath.Join(dir, "profiles", name+".json"), nil
}

// load reads the profile and applies --server.
func (f *serverFlags) load() (profile, error) {
	var p profile
	path, err := profilePath(f.profileName())
	if err != nil {
		return p, err
	}
	b, err := readInputFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, fmt.Errorf("no profile %q (%s): run custody login first", f.profileName(), path)
	}
	if err != nil {
		return p, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("profile %s: %w", path, err)
	}
	if f.server != "" {
		p.Server = f.server
	}
	if p.Server == "" || p.CA == "" || p.Cert == "" || p.Key == "" {
		return p, fmt.Errorf("profile %s: server, ca, cert and key are required", path)
	}
	return p, nil
}

// client opens an API client for the profile.
func (f *serverFlags) client() (*apiClient, error) {
	p, err := f.load()
	if err != nil {
		return nil, err
	}
	return newAPIClient(p)
}

// get reads path with the query's non-empty values into out from the
// profile's node.
func (f *serverFlags) get(path string, out any, kv ...string) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return c.do(context.Background(), "GET", path, nil, out)
}

// apiClient talks to one node's API with the operator's certificate.
type apiClient struct {
	base string
	http *http.Client
	prof profile
}

func newAPIClient(p profile) (*apiClient, error) {
	u, err := url.Parse(p.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("server %q: want https://HOST:PORT", p.Server)
	}
	caPEM, err := readInputFile(p.CA)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("ca: %s holds no certificate", p.CA)
	}
	cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		return nil, fmt.Errorf("operator certificate: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// The server must be a node of this cluster: a node certificate of
		// the cluster CA (pki's one peer check), whatever host name it has.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := pki.VerifyPeer(cs, pool, pki.RoleNode)
			return err
		},
	}
	return &apiClient{base: strings.TrimSuffix(p.Server, "/"), prof: p,
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: time.Minute}}, nil
}

// apiError is an error answer of the API.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message)
	if e.Field != "" {
		s += " [field " + e.Field + "]"
	}
	return s
}

// do sends method path with in (nil: no body) and decodes a success into
// out; an error answer is an *apiError.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error apiError `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
		}
		e.Error.Status = resp.StatusCode
		return &e.Error
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: answer: %w", method, path, err)
	}
	return nil
}

// device opens the profile's approval device: its ID and signer, and a
// close for a token.
func (d profileDevice) open() (string, crypto.Signer, func(), error) {
	if d.PKCS11 {
		o := operatorKeyFlags{pkcs11: true, keyLabel: d.KeyLabel,
			token: &tokenFlags{module: d.Module, label: d.TokenLabel, serial: d.TokenSerial, pinFile: d.PINFile}}
		t, k, err := o.openKey()
		if err != nil {
			return "", nil, nil, err
		}
		return operatorTokenDevice(k).DeviceID, k, func() { _ = t.Close() }, nil
	}
	kf, err := operatorReadKeyFile(d.KeyFile)
	if err != nil {
		return "", nil, nil, err
	}
	priv, err := kf.Open([]byte(os.Getenv(operatorPassphraseEnv)))
	if err != nil {
		return "", nil, nil, fmt.Errorf("device key %s: %w", d.KeyFile, err)
	}
	return kf.DeviceID, priv, func() {}, nil
}

// sign signs the statement with the profile's device, locally.
func (c *apiClient) sign(st quorum.Statement) (quorum.Approval, error) {
	id, signer, closeDev, err := c.prof.Device.open()
	if err != nil {
		return quorum.Approval{}, err
	}
	defer closeDev()
	if c.prof.Device.ID != "" && id != c.prof.Device.ID {
		return quorum.Approval{}, fmt.Errorf("the device key is device %s, the profile names %s (run custody login again)", id, c.prof.Device.ID)
	}
	return quorum.Sign(st, id, signer, nil)
}

// expiryFlag is --expiry of a command that signs.
func addExpiryFlag(cmd *cobra.Command) *string {
	var s string
	cmd.Flags().StringVar(&s, "expiry", "1h", "how long the signed answer stays valid: a duration from now, or an RFC 3339 time")
	return &s
}

// confirm shows what is about to be signed and asks; yes skips the
// question. The prompt goes to stderr, so stdout stays the command's
// report.
func confirm(cmd *cobra.Command, yes bool, what, question string) error {
	if yes {
		return nil
	}
	w := cmd.ErrOrStderr()
	fmt.Fprintf(w, "%s\n%s [y/N] ", what, question)
	line, err := readLine(cmd.InOrStdin())
	fmt.Fprintln(w)
	if err != nil && line == "" {
		return errors.New("not confirmed (no answer on stdin; use --yes): nothing signed")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not confirmed: nothing signed")
}

// readLine reads one line without buffering past it.
func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 1024 {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b), nil
			}
			b = append(b, one[0])
		}
		if err != nil {
			return string(b), err
		}
	}
	return string(b), nil
}
