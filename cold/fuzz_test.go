package cold_test

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/cold"
	"github.com/custody-dev/custody/cold/coldtest"
)

// seedSpec is a cold wallet on chain with a fixed key (no
// keygen: the parser and verifier never sign).
func seedSpec(chain string) cold.WalletSpec {
	// 2G: the BIP-173 test address coldtest pays is G's.
	pub, _ := hex.DecodeString("02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5")
	return coldtest.Spec(cold.WalletSpec{ID: "register-cold", Wallet: wallet, Chain: "eth", Network: "devnet", ChainID: 1337,
		PubKey: pub, Threshold: 1, Custodians: []string{"ann", "ben", "cat"}}, chain)
}

// FuzzParseBundle: the bundle parser never panics; what it accepts
// encodes and parses back to the same bundle hash, and Verify of it
// (pinned to its own genesis's hash or not) never panics. Seeds: an ETH
// and a BTC bundle as coldtest builds them (also committed under
// testdata/fuzz/FuzzParseBundle), one with a duplicated key, and junk.
func FuzzParseBundle(f *testing.F) {
	for _, chain := range []string{"eth", "btc"} {
		fx := coldtest.NewFixture(f, seedSpec(chain), strings.Repeat("ab", 32))
		enc := fx.Bundle.Encode()
		f.Add(enc)
		f.Add([]byte(strings.Replace(string(enc), `"version": "custody/cold-bundle/v1",`, `"version": "custody/cold-bundle/v1", "version": "custody/cold-bundle/v1",`, 1)))
	}
	f.Add([]byte(`{"version":"custody/cold-bundle/v1","genesis":null,"governance":[{"type":"rules.set","time":"2020-01-01T00:00:00Z","payload":"e30="}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := cold.ParseBundle(b)
		if err != nil {
			if !errors.Is(err, cold.ErrBundle) {
				t.Fatalf("a refusal without ErrBundle: %v", err)
			}
			return
		}
		back, err := cold.ParseBundle(got.Encode())
		if err != nil {
			t.Fatalf("the encoding of an accepted bundle is refused: %v", err)
		}
		if back.Hash() != got.Hash() {
			t.Fatal("the hash changed across encode and parse")
		}
		_, _ = cold.Verify(got, strings.Repeat("0", 64), time.Now())
		_, _ = cold.VerifySigned(got, strings.Repeat("0", 64), time.Now())
	})
}

// TestParseBundleRefusesDuplicateKeys: a key twice in one object, at the
// top or nested, is refused (encoding/json alone keeps the last).
func TestParseBundleRefusesDuplicateKeys(t *testing.T) {
	fx := coldtest.NewFixture(t, seedSpec("eth"), strings.Repeat("ab", 32))
	enc := string(fx.Bundle.Encode())
	for name, doc := range map[string]string{
		"top":    strings.Replace(enc, `"governance_head":`, `"governance_head": "x", "governance_head":`, 1),
		"nested": strings.Replace(enc, `"wallet": "cold",`, `"wallet": "cold", "wallet": "other",`, 1),
	} {
		if doc == enc {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if _, err := cold.ParseBundle([]byte(doc)); !errors.Is(err, cold.ErrBundle) || !strings.Contains(err.Error(), "twice") {
			t.Fatalf("%s: %v, want a duplicate key refused", name, err)
		}
	}
}
