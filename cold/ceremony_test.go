package cold_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/custody-dev/custody/cold"
)

// TestParseCeremonyRefusals: the ceremony config is strict YAML and every
// refusal names the path; in particular two custodians on one token (one
// share per token serial) are refused before any token is opened.
func TestParseCeremonyRefusals(t *testing.T) {
	const good = `version: 1
wallet: cold-eth
chain: eth
network: mainnet
chain_id: 1
threshold: 1
module: /usr/lib/softhsm/libsofthsm2.so
custodians:
  - {name: ann, token_label: ann-token, token_serial: "1111"}
  - {name: ben, token_label: ben-token, token_serial: "2222"}
`
	if _, err := cold.ParseCeremony([]byte(good)); err != nil {
		t.Fatalf("the good config: %v", err)
	}
	for name, tc := range map[string]struct{ from, to, msg string }{
		"two custodians on one token serial":   {`token_serial: "2222"`, `token_serial: "1111"`, "custodians[1].token_serial: 1111 holds another custodian's share: one share per token"},
		"two custodians on one token label":    {`token_label: ben-token`, `token_label: ann-token`, "custodians[1].token_label"},
		"a custodian without a serial":         {`token_serial: "2222"`, `token_serial: ""`, "custodians[1].token_serial: required"},
		"a custodian listed twice":             {`name: ben`, `name: ann`, "listed twice"},
		"a threshold of all custodians":        {`threshold: 1`, `threshold: 2`, "threshold 2 of 2"},
		"an unknown key":                       {`module:`, `modul:`, "modul"},
		"another version":                      {`version: 1`, `version: 2`, "version"},
		"a Bitcoin wallet with unknown params": {"chain: eth\nnetwork: mainnet\nchain_id: 1", "chain: btc\nnetwork: mainnet\nbtc_params: moonnet", "btc_params"},
		"no module":                            {"module: /usr/lib/softhsm/libsofthsm2.so\n", "", "module: required"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := strings.Replace(good, tc.from, tc.to, 1)
			if cfg == good {
				t.Fatalf("the edit %q did not apply", tc.from)
			}
			c, err := cold.ParseCeremony([]byte(cfg))
			if c != nil || err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, %v; want a refusal mentioning %q", c, err, tc.msg)
			}
			if errors.Is(err, cold.ErrBundle) {
				t.Fatalf("a ceremony refusal wraps the bundle sentinel: %v", err)
			}
		})
	}
}
