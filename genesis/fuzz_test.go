package genesis_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/ledger"
)

// FuzzParseGenesis: Parse never panics; it refuses with an *Error wrapping
// ErrInvalid, or returns a genesis that validates, whose file form parses
// back to the same canonical encoding and hash, and whose ledger command
// rebuilds it. The committed corpus (testdata/fuzz/FuzzParseGenesis) holds
// a valid genesis and near misses.
func FuzzParseGenesis(f *testing.F) {
	if b, err := os.ReadFile("testdata/golden.json"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := genesis.Parse(b)
		if err != nil {
			var e *genesis.Error
			if !errors.As(err, &e) || !errors.Is(err, genesis.ErrInvalid) {
				t.Fatalf("refusal %v is not a *genesis.Error", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line", err)
			}
			return
		}
		if err := g.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		again, err := genesis.Parse(g.Encode())
		if err != nil {
			t.Fatalf("the file form of an accepted genesis does not parse: %v", err)
		}
		if !bytes.Equal(again.Canonical(), g.Canonical()) || again.Hash() != g.Hash() {
			t.Fatal("the file form does not round-trip")
		}
		back, err := ledger.GenesisDocument(ledger.GenesisCommand(g))
		if err != nil {
			t.Fatalf("the ledger command of an accepted genesis does not rebuild: %v", err)
		}
		if back.Hash() != g.Hash() {
			t.Fatal("the ledger command rebuilds another genesis")
		}
	})
}
