package tss_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

var fixtures []*keygen.LocalPreParams

func TestMain(m *testing.M) {
	var err error
	fixtures, err = tsstest.LoadFixtures()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// testDeadline only bounds hangs (tsstest.Deadline).
const testDeadline = tsstest.Deadline

type cluster struct {
	net     *tss.MemNetwork
	engines map[pki.NodeID]*tss.Engine
	faults  map[pki.NodeID]*tsstest.FaultTransport
	events  chan tss.Event
}

func nodes(n int) []pki.NodeID { return tsstest.Nodes("node", n) }

func newCluster(t testing.TB, ids []pki.NodeID) *cluster {
	c := &cluster{net: tss.NewMemNetwork(), engines: map[pki.NodeID]*tss.Engine{},
		faults: map[pki.NodeID]*tsstest.FaultTransport{}, events: make(chan tss.Event, 1024)}
	for _, id := range ids {
		c.add(t, id)
	}
	return c
}

// add starts an engine for id whose outgoing traffic goes through a
// FaultTransport (no faults until a test sets some).
func (c *cluster) add(t testing.TB, id pki.NodeID) *tss.Engine {
	com := tsstest.NewCommittee(t, []pki.NodeID{id}, func(id pki.NodeID) tss.Transport {
		tr := tsstest.Wrap(c.net.Endpoint(id))
		c.faults[id] = tr
		return tr
	}, func(cfg *tss.Config) {
		cfg.Events = func(ev tss.Event) {
			select {
			case c.events <- ev:
			default:
			}
		}
	})
	c.engines[id] = com.Engines[id]
	return c.engines[id]
}

type result[T any] struct {
	id  pki.NodeID
	val T
	err error
}

// parallel runs f for every id concurrently and returns results by id.
func parallel[T any](ids []pki.NodeID, f func(pki.NodeID) (T, error)) map[pki.NodeID]result[T] {
	out := map[pki.NodeID]result[T]{}
	for id, r := range tsstest.Parallel(ids, f) {
		out[id] = result[T]{id, r.Val, r.Err}
	}
	return out
}

func (c *cluster) keygen(t testing.TB, wallet string, ids []pki.NodeID, threshold int, pre map[pki.NodeID]*keygen.LocalPreParams) map[pki.NodeID]*tss.Share {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	com := &tsstest.Committee{IDs: ids, Engines: c.engines}
	shares, err := com.Keygen(ctx, wallet, ids, threshold, func(i int) *keygen.LocalPreParams { return pre[ids[i]] })
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	return shares
}

func (c *cluster) sign(ctx context.Context, shares map[pki.NodeID]*tss.Share, signers []pki.NodeID, digest [32]byte) map[pki.NodeID]result[*tss.Signature] {
	sess := tss.NewSessionID()
	return parallel(signers, func(id pki.NodeID) (*tss.Signature, error) {
		return c.engines[id].Sign(ctx, shares[id], tss.SignParams{Session: sess, Signers: signers, Digest: digest})
	})
}

func (c *cluster) mustSign(t testing.TB, shares map[pki.NodeID]*tss.Share, signers []pki.NodeID, digest [32]byte) *tss.Signature {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	var sig *tss.Signature
	for id, r := range c.sign(ctx, shares, signers, digest) {
		if r.err != nil {
			t.Fatalf("sign %s: %v", id, r.err)
		}
		if sig != nil && string(sig.Bytes65()) != string(r.val.Bytes65()) {
			t.Fatalf("signers returned different signatures")
		}
		sig = r.val
	}
	return sig
}

func preFor(ids []pki.NodeID, offset int) map[pki.NodeID]*keygen.LocalPreParams {
	m := map[pki.NodeID]*keygen.LocalPreParams{}
	for i, id := range ids {
		m[id] = fixtures[(offset+i)%len(fixtures)]
	}
	return m
}

func digestOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// shared 2-of-3 wallet, generated once for all tests that only need one.
var (
	sharedOnce    sync.Once
	sharedCluster *cluster
	sharedShares  map[pki.NodeID]*tss.Share
)

func shared2of3(t testing.TB) (*cluster, map[pki.NodeID]*tss.Share) {
	t.Helper()
	sharedOnce.Do(func() {
		ids := nodes(3)
		c := newCluster(tsstest.NoCleanup(t), ids)
		sharedCluster = c
		sharedShares = c.keygen(t, "wallet-shared", ids, 1, preFor(ids, 0))
	})
	if sharedShares == nil {
		t.Fatal("shared keygen failed earlier")
	}
	return sharedCluster, sharedShares
}
