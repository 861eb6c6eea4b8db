package tsstest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/tss"
)

// Deadline bounds hangs of tss sessions in tests only; tss-lib under -race
// on a busy 2-core machine is slow, so it is generous.
const Deadline = 4 * time.Minute

var (
	fixturesOnce sync.Once
	fixtures     []*keygen.LocalPreParams
	fixturesErr  error
)

// FixturePath is the committed pre-params fixture file, found relative to
// this source file so every package's tests load the same one.
func FixturePath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "preparams", "testdata", "preparams.json")
}

// LoadFixtures loads the committed pre-params fixtures once per test binary
// (preparams.LoadFixtures: refused outside test binaries). TestMain
// functions call it and exit with its error.
func LoadFixtures() ([]*keygen.LocalPreParams, error) {
	fixturesOnce.Do(func() {
		fixtures, fixturesErr = preparams.LoadFixtures(FixturePath())
		if fixturesErr != nil {
			fixturesErr = fmt.Errorf("tsstest: load fixtures (run make fixtures): %w", fixturesErr)
		}
	})
	return fixtures, fixturesErr
}

// Fixtures returns the fixtures or fails t.
func Fixtures(t testing.TB) []*keygen.LocalPreParams {
	t.Helper()
	fx, err := LoadFixtures()
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

// Nodes returns n node IDs prefix1 … prefixN.
func Nodes(prefix string, n int) []pki.NodeID {
	out := make([]pki.NodeID, n)
	for i := range out {
		out[i] = pki.NodeID(fmt.Sprintf("%s%d", prefix, i+1))
	}
	return out
}

// Result is one party's outcome of Parallel.
type Result[T any] struct {
	ID  pki.NodeID
	Val T
	Err error
}

// Parallel runs f for every id concurrently and returns the results by id.
func Parallel[T any](ids []pki.NodeID, f func(pki.NodeID) (T, error)) map[pki.NodeID]Result[T] {
	var wg sync.WaitGroup
	var mu sync.Mutex
	out := make(map[pki.NodeID]Result[T], len(ids))
	for _, id := range ids {
		wg.Go(func() {
			v, err := f(id)
			mu.Lock()
			out[id] = Result[T]{id, v, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// Values returns the values of results, or the errors of the parties that
// failed (joined, naming each party).
func Values[T any](res map[pki.NodeID]Result[T]) (map[pki.NodeID]T, error) {
	out := make(map[pki.NodeID]T, len(res))
	var errs []error
	for id, r := range res {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, r.Err))
		}
		out[id] = r.Val
	}
	return out, errors.Join(errs...)
}

// Committee is one engine per member node.
type Committee struct {
	IDs     []pki.NodeID
	Engines map[pki.NodeID]*tss.Engine
}

// NewCommittee starts an engine for each id on the transport transport(id)
// returns; configure, if not nil, adjusts each engine's Config (events,
// budget, clock). Engines are closed at t's cleanup.
func NewCommittee(t testing.TB, ids []pki.NodeID, transport func(pki.NodeID) tss.Transport, configure func(*tss.Config)) *Committee {
	t.Helper()
	c := &Committee{IDs: append([]pki.NodeID(nil), ids...), Engines: map[pki.NodeID]*tss.Engine{}}
	for _, id := range ids {
		cfg := tss.Config{Self: id, Transport: transport(id)}
		if configure != nil {
			configure(&cfg)
		}
		e, err := tss.NewEngine(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		c.Engines[id] = e
	}
	return c
}

// Keygen runs one distributed keygen of wallet by the members ids (all of
// c's members when nil) with threshold t; member i uses pre(i) (nil: the
// fixtures in order, starting at 0). It returns the shares by node.
func (c *Committee) Keygen(ctx context.Context, wallet string, ids []pki.NodeID, threshold int, pre func(i int) *keygen.LocalPreParams) (map[pki.NodeID]*tss.Share, error) {
	if ids == nil {
		ids = c.IDs
	}
	if pre == nil {
		fx, err := LoadFixtures()
		if err != nil {
			return nil, err
		}
		pre = func(i int) *keygen.LocalPreParams { return fx[i%len(fx)] }
	}
	index := map[pki.NodeID]int{}
	for i, id := range ids {
		index[id] = i
	}
	sess := tss.NewSessionID()
	return Values(Parallel(ids, func(id pki.NodeID) (*tss.Share, error) {
		return c.Engines[id].Keygen(ctx, tss.KeygenParams{Wallet: wallet, Session: sess, Committee: ids, Threshold: threshold}, pre(index[id]))
	}))
}

// Keygen makes an n-member in-memory committee (node1 … nodeN on a fresh
// MemNetwork) and runs a t-of-n keygen of wallet on it with the fixtures.
// The committee's engines close at t's cleanup; the shares outlive them.
func Keygen(t testing.TB, wallet string, n, threshold int) (map[pki.NodeID]*tss.Share, *Committee) {
	t.Helper()
	net := tss.NewMemNetwork()
	c := NewCommittee(t, Nodes("node", n), func(id pki.NodeID) tss.Transport { return net.Endpoint(id) }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	shares, err := c.Keygen(ctx, wallet, nil, threshold, nil)
	if err != nil {
		t.Fatalf("tsstest: keygen %s: %v", wallet, err)
	}
	return shares, c
}

// NoCleanup wraps t so that Cleanup registrations are dropped: for
// committees made once per test binary (sync.Once) whose engines must
// outlive the test that happened to create them.
func NoCleanup(t testing.TB) testing.TB { return noCleanup{t} }

type noCleanup struct{ testing.TB }

func (noCleanup) Cleanup(func()) {}

// FixtureSource hands party number i (from 0) of n its own committed
// pre-param fixtures, i, i+n, i+2n, ... in turn (wrapping), each a fresh
// copy read from the file: two parties of one keygen must not share
// pre-params (tss-lib refuses the keygen), and a keygen wipes the
// pre-params it used, so the copies LoadFixtures shares across a test
// binary must not be handed out. Outside a test binary preparams.Validate
// refuses fixtures.
func FixtureSource(i, n int) preparams.Generator {
	var mu sync.Mutex
	next := i
	return func(context.Context) (*keygen.LocalPreParams, error) {
		fx, err := preparams.LoadFixtures(FixturePath())
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if next >= len(fx) {
			next = i
		}
		p := fx[next]
		next += n
		return p, nil
	}
}
