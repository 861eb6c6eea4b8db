package raftnet

import (
	"crypto/x509"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func mustCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func nodeConfig(t *testing.T, ca *CA, id string, usage []x509.ExtKeyUsage) Config {
	t.Helper()
	c, k, err := ca.issue(id, time.Now(), time.Hour, usage)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(c, k, ca.PEM())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var nodeUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// serve accepts connections and echoes the peer ID it authenticated.
func serve(t *testing.T, l *Layer, ca *x509.CertPool) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			id, err := PeerID(c, ca)
			if err == nil {
				_, _ = io.WriteString(c, id)
			}
			_ = c.Close()
		}
	}()
}

func TestMutualTLSIdentifiesPeer(t *testing.T) {
	ca := mustCA(t, "cluster")
	srv, err := Listen("127.0.0.1:0", nodeConfig(t, ca, "n1", nodeUsage))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	serve(t, srv, ca.Pool())
	cli, err := Listen("127.0.0.1:0", nodeConfig(t, ca, "n2", nodeUsage))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	c, err := cli.Dial(srvAddr(srv), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if id, err := PeerID(c, ca.Pool()); err != nil || id != "n1" {
		t.Fatalf("client sees server as %q, %v; want n1", id, err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "n2" {
		t.Fatalf("server saw client as %q, want n2", got)
	}
}

func srvAddr(l *Layer) raft.ServerAddress { return raft.ServerAddress(l.Addr().String()) }

func TestRejectsForeignCAAndWrongUsage(t *testing.T) {
	ca := mustCA(t, "cluster")
	other := mustCA(t, "attacker")
	srv, err := Listen("127.0.0.1:0", nodeConfig(t, ca, "n1", nodeUsage))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	serve(t, srv, ca.Pool())

	cases := map[string]Config{
		"foreign CA":      nodeConfig(t, other, "n2", nodeUsage),
		"client-only":     nodeConfig(t, ca, "n2", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}),
		"empty node name": nodeConfig(t, ca, "", nodeUsage),
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			// The dialer trusts the real cluster CA so that only the server's
			// verification of the client is under test.
			cfg.CA = ca.Pool()
			cli, err := Listen("127.0.0.1:0", cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			c, err := cli.Dial(srvAddr(srv), 5*time.Second)
			if err != nil {
				return // refused during the handshake: good
			}
			defer c.Close()
			b, _ := io.ReadAll(c)
			if len(b) != 0 {
				t.Fatalf("server accepted %s peer as %q", name, b)
			}
		})
	}
}

func TestAuthorizerRefuses(t *testing.T) {
	ca := mustCA(t, "cluster")
	cfg := nodeConfig(t, ca, "n1", nodeUsage)
	denied := errors.New("not a member")
	cfg.Authorize = func(id string) error {
		if id == "n3" {
			return denied
		}
		return nil
	}
	srv, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	serve(t, srv, ca.Pool())
	cli, err := Listen("127.0.0.1:0", nodeConfig(t, ca, "n3", nodeUsage))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	c, err := cli.Dial(srvAddr(srv), 5*time.Second)
	if err == nil {
		b, _ := io.ReadAll(c)
		c.Close()
		if len(b) != 0 {
			t.Fatalf("unauthorized n3 accepted as %q", b)
		}
	}
}

func TestListenNeedsIdentity(t *testing.T) {
	if _, err := Listen("127.0.0.1:0", Config{}); err == nil {
		t.Fatal("Listen without CA or certificate succeeded")
	}
}
