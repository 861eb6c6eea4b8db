package cold

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// BundleVersion is the format tag of a bundle (its "version" field).
const BundleVersion = "custody/cold-bundle/v1"

// MaxBundle bounds the bundle parser's input.
const MaxBundle = 16 << 20

// Bundle is what `custody cold export` writes and `custody cold sign`
// reads; signing adds Signed. Nothing in it is trusted: Verify checks it
// against the genesis hash the custodians pin.
type Bundle struct {
	Version string `json:"version"`
	// Genesis is the genesis file (bytes as `custody genesis create` wrote
	// them); its hash must be the one the custodians pin.
	Genesis []byte `json:"genesis"`
	// Governance is every governance change the ledger applied after the
	// genesis, in order, up to the export; GovernanceHead the chain head
	// after the last (ChainHash from the genesis hash).
	Governance     []Change `json:"governance"`
	GovernanceHead string   `json:"governance_head"`
	Request        Request  `json:"request"`
	// PSBT is, for Bitcoin, the request's unsigned transaction as a
	// BIP-174 packet with every input's witness UTXO (binary form).
	PSBT []byte `json:"psbt,omitempty"`
	// ExportedAt is the exporter's time (informational).
	ExportedAt time.Time `json:"exported_at"`
	// Attestations are the node set's signatures of the export
	// (genesis.ExportHead over this bundle's hash and governance head),
	// each made by a node from its own replica after the ledger recorded
	// the export: a checkpoint quorum of the node set folded from the
	// evidence must have signed (Verify), so one exporting node cannot
	// leave a change out of the evidence.
	Attestations []pki.NodeSig `json:"attestations,omitempty"`
	// Signed is what `custody cold sign` adds.
	Signed *Signed `json:"signed,omitempty"`
}

// Request is the withdrawal as the ledger recorded it (ledger.Request's
// fields the offline checks need).
type Request struct {
	ID string `json:"id"`
	policy.Withdrawal
	Payload     []byte            `json:"payload"`
	PayloadHash quorum.Hash       `json:"payload_hash"`
	Nonce       *uint64           `json:"nonce,omitempty"`
	Outpoints   []string          `json:"outpoints,omitempty"`
	VSize       int64             `json:"vsize,omitempty"`
	ExpiresAt   time.Time         `json:"expires_at"`
	Initiation  *quorum.Approval  `json:"initiation,omitempty"`
	Initiator   string            `json:"initiator"`
	Approvals   []quorum.Approval `json:"approvals"`
}

// Signed is the result of an offline signing.
type Signed struct {
	// Tx is the signed network transaction (ETH: the typed transaction's
	// binary encoding; BTC: the serialised transaction with witnesses).
	Tx []byte `json:"tx"`
	// TxHash is its hash as explorers show it (ETH 0x-hex, BTC txid).
	TxHash string `json:"tx_hash"`
	// PSBT is, for Bitcoin, the packet with every input's partial
	// signature (finalizes to Tx).
	PSBT []byte `json:"psbt,omitempty"`
	// Custodians are those whose shares signed.
	Custodians []string `json:"custodians"`
	// SignedAt is the signing machine's time.
	SignedAt time.Time `json:"signed_at"`
}

// ParseBundle reads a bundle strictly: unknown fields, wrong types and
// trailing data are refused (ErrBundle). (encoding/json: strictdoc does
// not take the embedded withdrawal and uint64 nonces.)
func ParseBundle(b []byte) (*Bundle, error) {
	if len(b) > MaxBundle {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBundle, MaxBundle)
	}
	var out Bundle
	if err := decodeStrict(b, &out); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBundle, err)
	}
	if out.Version != BundleVersion {
		return nil, fmt.Errorf("%w: version %q, want %q", ErrBundle, out.Version, BundleVersion)
	}
	return &out, nil
}

// Encode is the file form: indented JSON with a final newline.
func (b *Bundle) Encode() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(b); err != nil {
		panic("cold: bundle not JSON-encodable: " + err.Error())
	}
	return buf.Bytes()
}

// Hash is the lowercase hex SHA-256 of the encoding without Signed and
// Attestations: the bundle hash the ledger records at export (cold.export)
// and the nodes attest, the same before and after signing.
func (b *Bundle) Hash() string {
	c := *b
	c.Signed, c.Attestations = nil, nil
	sum := sha256.Sum256(c.Encode())
	return hex.EncodeToString(sum[:])
}

// Build is the bundle the exporting node writes: the genesis file, the
// governance records after it with their head, the request, and for a
// Bitcoin wallet the PSBT of its payload (every input's witness UTXO from
// the payload). It checks nothing the offline side relies on: Verify does.
func Build(genesisFile []byte, w WalletSpec, gov []Change, head string, r Request, at time.Time) (*Bundle, error) {
	b := &Bundle{Version: BundleVersion, Genesis: genesisFile, Governance: gov, GovernanceHead: head, Request: r, ExportedAt: at.UTC()}
	if b.Governance == nil {
		b.Governance = []Change{}
	}
	if w.Chain != "btc" {
		return b, nil
	}
	u, err := btc.ParseUnsigned(r.Payload, w.PubKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	p, err := u.PSBT()
	if err != nil {
		return nil, fmt.Errorf("%w: psbt: %w", ErrPayload, err)
	}
	if b.PSBT, err = btc.EncodePSBT(p); err != nil {
		return nil, fmt.Errorf("%w: psbt: %w", ErrPayload, err)
	}
	return b, nil
}
