package genesis

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
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

// exportDomain separates cold export attestations from every other
// signature made with a node key.
const exportDomain = "custody/cold-export/v1\x00"

// ExportHead is what a node of the cluster attests, from its own replica,
// once its ledger recorded a cold request as exported (cold.export): the
// cluster and genesis, the request and the payload hash its operators
// approved, the governance chain head the export was made under (the
// ledger refuses an export naming any other head than its own) and the
// hash of the bundle the exporter recorded. A checkpoint quorum of the
// node set signing it is what lets the offline signer trust that the
// bundle's governance evidence is the cluster's whole history, not one
// exporting node's edit of it (a dropped lock, a dropped suspension):
// docs/cold.md, docs/trust.md.
type ExportHead struct {
	ClusterID      string      `json:"cluster_id"`
	GenesisHash    string      `json:"genesis_hash"`
	RequestID      string      `json:"request_id"`
	PayloadHash    quorum.Hash `json:"payload_hash"`
	GovernanceHead string      `json:"governance_head"`
	BundleHash     string      `json:"bundle_hash"`
}

// Digest is the SHA-256 a node signs: "custody/cold-export/v1" 0x00, then
// the head's JSON (fields in declaration order).
func (h ExportHead) Digest() []byte { return pki.AttestationDigest(exportDomain, h) }
