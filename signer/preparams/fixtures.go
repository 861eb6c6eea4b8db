package preparams

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
)

// FixtureMarker is written into every fixture file. It marks the file as
// test-only key material: the Paillier keys in it are public (committed to the
// repository), so a node that used them would have no secrecy at all.
const FixtureMarker = "custody-test-fixture-NOT-FOR-PRODUCTION"

// ErrFixtureOutsideTest is returned when committed test fixtures are loaded by a
// binary that is not a Go test binary (SECURITY.md item 4).
var ErrFixtureOutsideTest = errors.New("preparams: test fixtures refused outside tests")

// FixtureFile is the on-disk format of committed pre-params fixtures.
type FixtureFile struct {
	Marker    string                  `json:"marker"`
	PreParams []keygen.LocalPreParams `json:"preparams"`
}

// LoadFixtures reads committed pre-params fixtures. It refuses to run unless
// the current binary is a Go test binary (testing.Testing), and refuses files
// without the fixture marker or with entries that fail ValidateWithProof.
func LoadFixtures(path string) ([]*keygen.LocalPreParams, error) {
	if !testing.Testing() {
		return nil, ErrFixtureOutsideTest
	}
	return loadFixtureFile(path)
}

func loadFixtureFile(path string) ([]*keygen.LocalPreParams, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("preparams: read fixtures: %w", err)
	}
	var f FixtureFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("preparams: parse fixtures: %w", err)
	}
	if f.Marker != FixtureMarker {
		return nil, errors.New("preparams: fixture file lacks the test-fixture marker")
	}
	out := make([]*keygen.LocalPreParams, 0, len(f.PreParams))
	for i := range f.PreParams {
		p := f.PreParams[i]
		if err := Validate(&p); err != nil {
			return nil, fmt.Errorf("preparams: fixture %d: %w", i, err)
		}
		out = append(out, &p)
	}
	return out, nil
}

// IsFixture reports whether p is one of the committed test fixtures in the
// given set; production code uses it to refuse fixture material that found its
// way into a pool or a share (comparison is on the Paillier modulus).
func IsFixture(p *keygen.LocalPreParams, fixtures []*keygen.LocalPreParams) bool {
	if p == nil || p.PaillierSK == nil {
		return false
	}
	for _, f := range fixtures {
		if f.PaillierSK != nil && f.PaillierSK.N.Cmp(p.PaillierSK.N) == 0 {
			return true
		}
	}
	return false
}
