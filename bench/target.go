// Package bench measures a running custody cluster through its real APIs
// (what `custody bench withdraw` runs): withdrawals from the final
// approval's acknowledgement to the signed transaction, request creation
// under concurrency, and, for comparison on the same machine, plain
// in-process tss-lib 2-of-3 signing.
//
// It drives a devnet as the exchange and its operators would: creates
// through the backend API with the backend's device signing each intent,
// approvals through the operator API with each operator's device signing
// the statement in this process (the operator CLI per approval would
// measure process start-up, not custody). It is development tooling, only
// the CLI imports it.
package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/devnet"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// Target is a running devnet reached through its API: the nodes' base
// URLs, and the backend's and operators' certificates and device keys
// (the files devnet.json names).
type Target struct {
	ClusterID string
	// APIs are the nodes' HTTPS base URLs, in node order.
	APIs    []string
	backend *principal
	ops     map[string]*principal
}

// principal is one certificate's HTTPS client and its device key.
type principal struct {
	name   string
	http   *http.Client
	key    ed25519.PrivateKey
	device string
}

// APIError is an answer other than 2xx.
type APIError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message) }

// Open reaches the devnet info describes, with the backend's credentials
// and those of the operators named in approvers (each must have an
// Ed25519 device key file: the devnet's unsealed ones).
func Open(info devnet.Info, approvers []string) (*Target, error) {
	if len(info.APIs) == 0 {
		return nil, errors.New("bench: the devnet names no node API")
	}
	caPEM, err := os.ReadFile(info.CA)
	if err != nil {
		return nil, fmt.Errorf("bench: the cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("bench: %s holds no PEM certificate", info.CA)
	}
	t := &Target{ClusterID: info.ClusterID, ops: map[string]*principal{}}
	var ids []pki.NodeID
	for id := range info.APIs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		t.APIs = append(t.APIs, info.APIs[id])
	}
	if t.backend, err = openPrincipal(info.Backend, pool); err != nil {
		return nil, err
	}
	for _, name := range approvers {
		cr, ok := info.Operators[name]
		if !ok {
			return nil, fmt.Errorf("bench: the devnet has no operator %q", name)
		}
		if t.ops[name], err = openPrincipal(cr, pool); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func openPrincipal(cr devnet.Credentials, pool *x509.CertPool) (*principal, error) {
	cert, err := tls.LoadX509KeyPair(cr.Cert, cr.Key)
	if err != nil {
		return nil, fmt.Errorf("bench: %s's certificate: %w", cr.Name, err)
	}
	b, err := os.ReadFile(cr.DeviceKey)
	if err != nil {
		return nil, fmt.Errorf("bench: %s's device key: %w", cr.Name, err)
	}
	kf, err := quorum.ParseKeyFile(b)
	if err != nil {
		return nil, fmt.Errorf("bench: %s's device key: %w", cr.Name, err)
	}
	k, err := kf.Open(nil)
	if err != nil {
		return nil, fmt.Errorf("bench: %s's device key (the devnet's are unsealed): %w", cr.Name, err)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}},
		// Keep a connection per worker and node: a TLS handshake per
		// request would be measured instead of custody.
		MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
	}
	return &principal{name: cr.Name, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}, key: k,
		device: quorum.DeviceID(quorum.DeviceEd25519, k.Public().(ed25519.PublicKey))}, nil
}

// Close releases the clients' connections.
func (t *Target) Close() {
	t.backend.http.CloseIdleConnections()
	for _, p := range t.ops {
		p.http.CloseIdleConnections()
	}
}

// sign has p's device sign a statement about subject.
func (t *Target) sign(p *principal, subject string, payload quorum.Hash, dec quorum.Decision, expiry time.Time) (quorum.Approval, error) {
	return quorum.Sign(quorum.Statement{ClusterID: t.ClusterID, RequestID: subject, PayloadHash: payload, Decision: dec,
		Expiry: expiry.UTC().Truncate(time.Second)}, p.device, p.key, nil)
}

// do sends one request to base (a node's API URL) as p and decodes a 2xx
// answer into out; another answer is an *APIError.
func (p *principal) do(ctx context.Context, base, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error APIError `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		e.Error.Status = resp.StatusCode
		return &e.Error
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// Destination is what withdrawals pay: the wallet, its address, and an
// allowlisted, active destination on its chain.
type Destination struct {
	Wallet  string `json:"wallet"`
	From    string `json:"from"`
	To      string `json:"to"`
	Balance string `json:"balance_wei,omitempty"`
}

// Discover finds wallet (an active ETH wallet) and an active allowlist
// entry it may pay, through the APIs (GET /v1/wallets as the backend, GET
// /v1/allowlist as the first approver).
func (t *Target) Discover(ctx context.Context, wallet string) (Destination, error) {
	var ws struct {
		Wallets []rest.WalletView `json:"wallets"`
	}
	if err := t.backend.do(ctx, t.APIs[0], "GET", rest.PathWallets, nil, &ws); err != nil {
		return Destination{}, fmt.Errorf("bench: GET %s: %w", rest.PathWallets, err)
	}
	d := Destination{Wallet: wallet}
	var network string
	for _, w := range ws.Wallets {
		if w.ID != wallet {
			continue
		}
		if w.Chain != "eth" || w.Status != "active" || w.Address == "" {
			return d, fmt.Errorf("bench: wallet %s is %s %s, want an active eth wallet", wallet, w.Status, w.Chain)
		}
		d.From, network = w.Address, w.Network
		for _, b := range w.Balances {
			if b.Asset == "ETH" {
				d.Balance = b.AmountBase
			}
		}
	}
	if d.From == "" {
		return d, fmt.Errorf("bench: the devnet has no wallet %s (run the devnet story, or bench without --dir)", wallet)
	}
	var al struct {
		Allowlist []rest.AllowlistView `json:"allowlist"`
	}
	var op *principal
	for _, p := range t.ops {
		op = p
		break
	}
	if op == nil {
		return d, errors.New("bench: no operator to read the allowlist as")
	}
	if err := op.do(ctx, t.APIs[0], "GET", rest.PathAllowlist, nil, &al); err != nil {
		return d, fmt.Errorf("bench: GET %s: %w", rest.PathAllowlist, err)
	}
	for _, e := range al.Allowlist {
		if e.Active && e.Chain == "eth" && e.Network == network && (e.Wallet == "" || e.Wallet == wallet) {
			d.To = e.Address
			return d, nil
		}
	}
	return d, fmt.Errorf("bench: no active allowlisted eth/%s destination for %s", network, wallet)
}
