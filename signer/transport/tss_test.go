package transport_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

func TestMain(m *testing.M) {
	if _, err := tsstest.LoadFixtures(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// tssDeadline bounds hangs only: tss-lib under -race on a busy 2-core
// machine is slow.
const tssDeadline = tsstest.Deadline

// TestSign2of3OverNetwork runs a real distributed keygen (which itself
// test-signs with two different 2-party subsets) and then a signature by
// node1+node3, every protocol message crossing mutual TLS on 127.0.0.1.
func TestSign2of3OverNetwork(t *testing.T) {
	nodes := ids(3)
	c := newCluster(t, nodes)
	com := tsstest.NewCommittee(t, nodes, func(id pki.NodeID) tss.Transport { return c.tr[id] }, nil)
	engines := com.Engines
	ctx, cancel := context.WithTimeout(context.Background(), tssDeadline)
	defer cancel()

	shares, err := com.Keygen(ctx, "wallet-net", nil, 1, nil)
	if err != nil {
		t.Fatalf("keygen over the network: %v", err)
	}
	pub := shares["node1"].Info().PubKey
	for id, s := range shares {
		if string(s.Info().PubKey) != string(pub) {
			t.Fatalf("%s ended with a different public key", id)
		}
	}

	digest := sha256.Sum256([]byte("transfer 1 BTC over mTLS"))
	signers := []pki.NodeID{"node1", "node3"}
	signSess := tss.NewSessionID()
	sigs, err := tsstest.Values(tsstest.Parallel(signers, func(id pki.NodeID) (*tss.Signature, error) {
		return engines[id].Sign(ctx, shares[id], tss.SignParams{Session: signSess, Signers: signers, Digest: digest})
	}))
	if err != nil {
		t.Fatalf("sign over the network: %v", err)
	}
	if string(sigs["node1"].Bytes65()) != string(sigs["node3"].Bytes65()) {
		t.Fatal("signers returned different signatures")
	}
	// Verify independently of the engine.
	pk, err := btcec.ParsePubKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var r, s btcec.ModNScalar
	r.SetByteSlice(sigs["node1"].R[:])
	s.SetByteSlice(sigs["node1"].S[:])
	if !becdsa.NewSignature(&r, &s).Verify(digest[:], pk) {
		t.Fatal("signature does not verify against the wallet key")
	}
	for _, id := range nodes {
		st := c.tr[id].Stats()
		if st.Refused != 0 || st.FrameErrors != 0 || st.MalformedEnvelopes != 0 || st.Delivered == 0 {
			t.Errorf("%s transport stats: %+v", id, st)
		}
		if es := engines[id].Stats(); es.Spoofed != 0 || es.Malformed != 0 {
			t.Errorf("%s engine stats: %+v", id, es)
		}
	}
}
