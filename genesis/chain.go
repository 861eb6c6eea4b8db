package genesis

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// governanceDomain separates governance chain hashes from every other hash.
const governanceDomain = "custody/governance/v1\x00"

// GovernanceHash is the governance chain's next head after prev (lowercase
// hex): SHA-256 of "custody/governance/v1" 0x00, prev, 0x00, the command
// type, 0x00, the ledger time it was applied at (RFC 3339, UTC,
// nanoseconds), 0x00 and the command's JSON payload as logged. The chain
// starts at the genesis hash; the ledger extends it with every governance
// command it applies (ledger.State.GovernanceHead) and the offline cold
// signer recomputes it from a bundle's evidence.
func GovernanceHash(prev, typ string, at time.Time, payload []byte) string {
	h := sha256.New()
	h.Write([]byte(governanceDomain))
	for _, part := range []string{prev, typ, at.UTC().Format(time.RFC3339Nano)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil))
}
