package preparams

import (
	"context"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
)

const fixturePath = "testdata/preparams.json"

func TestFixturesLoadInTests(t *testing.T) {
	fx, err := LoadFixtures(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	if len(fx) < 9 {
		t.Fatalf("%d fixtures, tests need 9", len(fx))
	}
	if !IsFixture(fx[3], fx) {
		t.Fatal("IsFixture misses a fixture")
	}
}

func TestValidateRejects(t *testing.T) {
	fx, err := LoadFixtures(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	noPQ := *fx[0]
	sk := *noPQ.PaillierSK
	sk.P, sk.Q = nil, nil
	noPQ.PaillierSK = &sk
	if err := Validate(&noPQ); !errors.Is(err, ErrInvalid) {
		t.Fatalf("pre-v2 (no P/Q): %v", err)
	}
	bad := *fx[0]
	bad.NTildei = new(big.Int).Add(bad.NTildei, big.NewInt(2))
	if err := Validate(&bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("inconsistent NTilde: %v", err)
	}
	if err := Validate(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil: %v", err)
	}
}

func TestFixtureWithoutMarkerRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.json")
	if err := os.WriteFile(p, []byte(`{"marker":"prod","preparams":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFixtures(p); err == nil {
		t.Fatal("file without marker accepted")
	}
}

// TestFixturesRefusedOutsideTests builds a normal (non-test) binary that
// tries to load the fixtures and checks it is refused.
func TestFixturesRefusedOutsideTests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	abs, _ := filepath.Abs(fixturePath)
	out, err := exec.Command("go", "run", "./cmd/genfixtures", "-check", abs).CombinedOutput()
	if err == nil || !strings.Contains(string(out), ErrFixtureOutsideTest.Error()) {
		t.Fatalf("non-test binary loaded fixtures: %v\n%s", err, out)
	}
}

func TestPoolTakeNeverBlocks(t *testing.T) {
	fx, err := LoadFixtures(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	calls := 0
	p := NewPool(ctx, 2, func(ctx context.Context) (*keygen.LocalPreParams, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		calls++
		if calls == 1 {
			bad := *fx[0]
			bad.P = nil
			return &bad, nil // invalid: must be dropped
		}
		return fx[calls%len(fx)], nil
	})
	if _, err := p.Take(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty pool: %v", err)
	}
	close(release)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	pp, err := p.Wait(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if Validate(pp) != nil {
		t.Fatal("pool handed out invalid pre-params")
	}
	// The invalid first result was reported (before the valid one was queued).
	if p.Err() == nil {
		t.Fatal("invalid pre-params were not reported")
	}
}

// TestFixturesRefusedByValidateOutsideTests: a non-test binary that reads
// the fixture file itself (bypassing LoadFixtures) and passes an entry to
// Validate — as the engine's keygen and reshare entries do — is refused.
func TestFixturesRefusedByValidateOutsideTests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	abs, _ := filepath.Abs(fixturePath)
	out, err := exec.Command("go", "run", "./cmd/genfixtures", "-check-validate", abs).CombinedOutput()
	if err == nil || !strings.Contains(string(out), ErrFixtureOutsideTest.Error()) {
		t.Fatalf("non-test binary validated fixtures: %v\n%s", err, out)
	}
}

// TestFixtureFingerprintsCurrent: every committed fixture is recognised by
// its fingerprints (regenerate fingerprints.go after make fixtures), and
// other moduli are not.
func TestFixtureFingerprintsCurrent(t *testing.T) {
	fx, err := LoadFixtures(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range fx {
		if !fixtureFingerprints[Fingerprint(p.PaillierSK.N)] || !fixtureFingerprints[Fingerprint(p.NTildei)] {
			t.Fatalf("fixture %d not in fingerprints.go: run go run ./signer/preparams/cmd/genfixtures -fingerprints %s > signer/preparams/fingerprints.go", i, fixturePath)
		}
		if err := Validate(p); err != nil {
			t.Fatalf("fixture %d refused inside a test: %v", i, err)
		}
	}
	other := *fx[0]
	sk := *other.PaillierSK
	sk.N = new(big.Int).Add(sk.N, big.NewInt(2))
	other.PaillierSK = &sk
	other.NTildei = new(big.Int).Add(other.NTildei, big.NewInt(2))
	if IsCommittedFixture(&other) || IsCommittedFixture(nil) {
		t.Fatal("a non-fixture modulus is recognised as a fixture")
	}
}
