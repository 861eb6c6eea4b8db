package eth

import (
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/ethereum/go-ethereum/common"
)

// TestWriteFuzzSeeds regenerates the committed seed corpora when
// CUSTODY_WRITE_SEEDS=1; otherwise it checks they exist.
func TestWriteFuzzSeeds(t *testing.T) {
	write := os.Getenv("CUSTODY_WRITE_SEEDS") == "1"
	if !write {
		for _, dir := range []string{"FuzzParseUnsigned", "FuzzParseSigned"} {
			m, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
			if len(m) < 4 {
				t.Fatalf("seed corpus %s has %d files; run with CUSTODY_WRITE_SEEDS=1", dir, len(m))
			}
		}
		return
	}
	k, wallet := newKey(t)
	token := common.HexToAddress("0x1111111111111111111111111111111111111111")
	i := 0
	for _, legacy := range []bool{false, true} {
		for _, asset := range []Asset{ETH, ERC20("TKN", 6, token)} {
			in := baseIntent(t)
			in.Asset = asset
			if legacy {
				in.Fees = Fees{Legacy: true, GasPrice: big.NewInt(20e9)}
			}
			u, err := NewUnsigned(in)
			if err != nil {
				t.Fatal(err)
			}
			r, s, v := signRSV(t, k, u.SigningHash())
			st, err := u.Assemble(r, s, v, wallet)
			if err != nil {
				t.Fatal(err)
			}
			for dir, b := range map[string][]byte{"FuzzParseUnsigned": u.Bytes(), "FuzzParseSigned": st.Bytes()} {
				p := filepath.Join("testdata", "fuzz", dir, fmt.Sprintf("seed%d", i))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			i++
		}
	}
}
