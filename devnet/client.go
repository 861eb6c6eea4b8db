package devnet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/custody-dev/custody/pki"
)

// Client talks to the devnet's HTTPS API as one principal (its mTLS
// certificate from the cluster files), the way the exchange's backend or
// an operator's tools do.
type Client struct {
	n    *Net
	name string
	http *http.Client
}

// APIError is an answer other than 2xx: the status and the API's error
// body.
type APIError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// ClientFor returns a client with principal name's certificate (kind
// "backend" or "operators").
func (n *Net) ClientFor(kind, name string) (*Client, error) {
	cr := n.credentials(kind, name)
	cert, err := tls.LoadX509KeyPair(cr.Cert, cr.Key)
	if err != nil {
		return nil, fmt.Errorf("devnet: %s's certificate: %w", name, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(n.ClusterDir, "ca", "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("devnet: the cluster CA does not parse")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}}}
	return &Client{n: n, name: name, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// Do sends one request to node id's API (the first node when id is "")
// and decodes a 2xx answer into out. Another answer is an *APIError.
func (c *Client) Do(ctx context.Context, id pki.NodeID, method, path string, in, out any) (int, error) {
	if id == "" {
		id = c.n.Nodes[0]
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+c.n.APIs[id]+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error APIError `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		e.Error.Status = resp.StatusCode
		return resp.StatusCode, &e.Error
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("devnet: %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Close releases the client's connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }
