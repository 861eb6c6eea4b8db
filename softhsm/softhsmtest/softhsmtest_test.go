package softhsmtest_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

// TestNewTokenConcurrent: many tests, several open tokens each.
func TestNewTokenConcurrent(t *testing.T) {
	for i := range 4 {
		t.Run("party-set", func(t *testing.T) {
			t.Parallel()
			var wg sync.WaitGroup
			toks := make([]*hsm.Token, 5)
			errs := make([]error, 5)
			for j := range 5 {
				cfg := softhsmtest.NewToken(t, "alice") // same prefix everywhere
				wg.Go(func() {
					toks[j], errs[j] = hsm.Open(cfg)
				})
			}
			wg.Wait()
			seen := map[string]bool{}
			for j, tok := range toks {
				if errs[j] != nil {
					t.Fatalf("set %d token %d: %v", i, j, errs[j])
				}
				if seen[tok.Info().Serial] {
					t.Fatalf("two Configs selected the same token %s", tok.Info().Serial)
				}
				seen[tok.Info().Serial] = true
				if _, err := tok.CreateKEK("kek"); err != nil {
					t.Fatal(err)
				}
			}
			for _, tok := range toks {
				tok.Close()
			}
		})
	}
}

// TestRecycledTokenIsEmpty: a token recycled from an ended test comes back
// erased, under a new label and PIN; the old Config no longer opens it.
func TestRecycledTokenIsEmpty(t *testing.T) {
	var first hsm.Config
	t.Run("first", func(t *testing.T) {
		first = softhsmtest.NewToken(t, "recycle")
		tok, err := hsm.Open(first)
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		if _, err := tok.CreateKEK("kek"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("second", func(t *testing.T) {
		cfg := softhsmtest.NewToken(t, "recycle")
		if cfg.TokenSerial != first.TokenSerial {
			t.Skip("token was not recycled (pool used by a parallel test)")
		}
		if cfg.TokenLabel == first.TokenLabel || cfg.PIN == first.PIN {
			t.Fatal("recycled token kept its label or PIN")
		}
		if _, err := hsm.Open(first); !errors.Is(err, hsm.ErrTokenNotFound) {
			t.Fatalf("old Config on a recycled token: %v", err)
		}
		tok, err := hsm.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		if _, err := tok.KEK("kek"); !errors.Is(err, hsm.ErrKeyNotFound) {
			t.Fatalf("recycled token still has the old KEK: %v", err)
		}
	})
}
