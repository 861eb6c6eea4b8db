package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/pki"
)

// lie rewrites one answer of GET /v1/requests/{id} (the JSON object,
// numbers kept as json.Number).
type lie func(view map[string]any)

// startLyingNode is a compromised node's operator API, as a test builds
// it: an HTTPS server holding a node certificate of the cluster (the
// node's own key, so the CLI's check that it talks to a node of its
// cluster passes) that forwards every request to a real node's API
// (upstream) under the calling operator's certificate
// (operators/NAME/cert.pem of the cluster directory) and rewrites the
// answer of GET /v1/requests/{id} for each id in lies. It returns the
// server's URL.
func startLyingNode(t *testing.T, node pki.Identity, upstream, clusterDir string, lies map[string]lie) string {
	t.Helper()
	var mu sync.Mutex
	clients := map[string]*http.Client{}
	clientFor := func(operator string) (*http.Client, error) {
		mu.Lock()
		defer mu.Unlock()
		if c := clients[operator]; c != nil {
			return c, nil
		}
		dir := filepath.Join(clusterDir, "operators", operator)
		cert, err := readInputFile(filepath.Join(dir, "cert.pem"))
		if err != nil {
			return nil, err
		}
		key, err := readInputFile(filepath.Join(dir, "cert.key"))
		if err != nil {
			return nil, err
		}
		ca, err := readInputFile(filepath.Join(clusterDir, "ca", "ca.pem"))
		if err != nil {
			return nil, err
		}
		id, err := pki.LoadIdentity(cert, key, ca)
		if err != nil {
			return nil, err
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: id.ClientTLS(pki.RoleNode, nil)}}
		clients[operator] = c
		return c, nil
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(err error) { http.Error(w, "lying node: "+err.Error(), http.StatusBadGateway) }
		peer, err := pki.VerifyPeer(*r.TLS, node.CA, pki.RoleOperator)
		if err != nil {
			fail(err)
			return
		}
		c, err := clientFor(peer.ID)
		if err != nil {
			fail(err)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			fail(err)
			return
		}
		out, err := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			fail(err)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := c.Do(out)
		if err != nil {
			fail(err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			fail(err)
			return
		}
		id, one := strings.CutPrefix(r.URL.Path, rest.PathRequests+"/")
		if l := lies[id]; l != nil && one && r.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			var view map[string]any
			if err := dec.Decode(&view); err != nil {
				fail(err)
				return
			}
			l(view)
			if b, err = json.Marshal(view); err != nil {
				fail(err)
				return
			}
		}
		for k, v := range resp.Header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
	})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = node.ServerTLS(pki.RoleOperator, nil)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}
