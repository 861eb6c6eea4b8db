package tss_test

import (
	"context"
	"errors"
	"testing"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

func TestKeygenSign2of3(t *testing.T) {
	c, shares := shared2of3(t)
	pub := shares["node1"].PubKey
	for id, s := range shares {
		if string(s.PubKey) != string(pub) {
			t.Fatalf("%s has a different public key", id)
		}
	}
	d := digestOf("2of3")
	sig := c.mustSign(t, shares, []pki.NodeID{"node1", "node3"}, d)
	tsstest.VerifySignature(t, sig, pub, d)
}

func TestSignEverySubset2of3(t *testing.T) {
	c, shares := shared2of3(t)
	for _, sub := range [][]pki.NodeID{{"node1", "node2"}, {"node1", "node3"}, {"node2", "node3"}} {
		d := digestOf("subset " + string(sub[0]) + string(sub[1]))
		tsstest.VerifySignature(t, c.mustSign(t, shares, sub, d), shares["node1"].PubKey, d)
	}
}

func TestSignRefusals(t *testing.T) {
	c, shares := shared2of3(t)
	ctx := context.Background()
	e := c.engines["node1"]
	if _, err := e.Sign(ctx, shares["node1"], tss.SignParams{Session: tss.NewSessionID(), Signers: []pki.NodeID{"node1"}}); !errors.Is(err, tss.ErrBadParams) {
		t.Fatalf("too few signers: %v", err)
	}
	if _, err := e.Sign(ctx, shares["node1"], tss.SignParams{Session: tss.NewSessionID(), Signers: []pki.NodeID{"node1", "node9"}}); !errors.Is(err, tss.ErrBadParams) {
		t.Fatalf("non-member signer: %v", err)
	}
	if _, err := e.Sign(ctx, shares["node1"], tss.SignParams{Session: tss.NewSessionID(), Signers: []pki.NodeID{"node2", "node3"}}); !errors.Is(err, tss.ErrBadParams) {
		t.Fatalf("self not a signer: %v", err)
	}
}
