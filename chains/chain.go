package chains

import (
	"fmt"
	"slices"

	"github.com/custody-dev/custody/amount"
)

// Chain is one chain as a committee member sees it. Implementations are
// safe for concurrent use and read no network: everything comes from the
// stored bytes and the adapter's configuration (network names and IDs).
type Chain interface {
	// Name is the ledger's name of the chain ("eth", "btc").
	Name() string
	// Address is the address on network of the wallet whose compressed
	// secp256k1 public key is pubKey, in the canonical form the ledger
	// stores.
	Address(network string, pubKey []byte) (string, error)
	// ParseUnsigned parses a stored unsigned transaction for network. A
	// transaction for another network, or of a kind this signer does not
	// sign, is refused.
	ParseUnsigned(network string, payload []byte) (Unsigned, error)
	// ParseSigned parses a stored signed transaction for network.
	ParseSigned(network string, raw []byte) (Signed, error)
}

// Transfer is what a transaction does, in the ledger's terms, so a member
// compares it field by field with the request operators approved.
type Transfer struct {
	// To is the destination in the chain's canonical form.
	To string
	// Asset is the ledger's asset name ("ETH", "BTC").
	Asset string
	// Amount is in base units of Asset.
	Amount amount.Amount
	// MaxFee is the most the transaction can pay in fees, in base units of
	// the chain's fee asset (ETH: gas limit x max fee per gas).
	MaxFee amount.Amount
	// Nonce is the account nonce (account chains), nil otherwise.
	Nonce *uint64
	// Outpoints are the spent outputs as "txid:vout" (UTXO chains), in
	// input order.
	Outpoints []string
	// VSize is the virtual size in vbytes the fee pays for (Bitcoin: an
	// upper bound, the signatures not being there yet), for fee-rate caps;
	// 0 on chains without one.
	VSize int64
}

// SpendKey names one scarce thing a signature spends (an account nonce on
// one chain, one UTXO): a signer signs at most one message per key, ever
// (signer/watermark). Its fields are those of watermark.Key.
type SpendKey struct {
	Kind  string
	Scope string
	ID    string
}

// Kinds of SpendKey.
const (
	KindETHNonce    = "eth-nonce"
	KindBTCOutpoint = "btc-outpoint"
)

// Signature is one ECDSA signature over a digest: r and s (big-endian) and
// the public-key recovery id.
type Signature struct {
	R, S [32]byte
	V    byte
}

// Unsigned is a parsed unsigned transaction.
type Unsigned interface {
	// PayloadHash is the hash operators approve (of the stored bytes).
	PayloadHash() [32]byte
	// Transfer says what the transaction does.
	Transfer() Transfer
	// Digests are the hashes the wallet key signs, one per signature, in
	// the order Assemble takes them.
	Digests() [][32]byte
	// SpendKeys are what the transaction spends once signed, for the
	// signer's watermark; wallet scopes them.
	SpendKeys(wallet string) []SpendKey
	// Describe is the description for humans, as operators see it.
	Describe() string
	// Assemble attaches one signature per digest and returns the signed
	// transaction after checking every signature (low-S, recovers to
	// pubKey).
	Assemble(pubKey []byte, sigs []Signature) (Signed, error)
}

// Signed is a signed transaction.
type Signed interface {
	// Bytes are what the chain's node takes to broadcast it.
	Bytes() []byte
	// Hash is the transaction hash as the chain's explorers show it.
	Hash() string
	// Verify checks that the transaction is the unsigned one whose payload
	// hash is payloadHash, signed by the key pubKey.
	Verify(payloadHash [32]byte, pubKey []byte) error
}

// SignedParser is implemented by an Unsigned whose signed form cannot be
// verified from its own bytes: Bitcoin signatures commit to the amounts of
// the outputs they spend, which the network transaction does not carry and
// only the unsigned payload does. A member checking a stored signed result
// uses it, when implemented, instead of Chain.ParseSigned.
type SignedParser interface {
	// ParseSigned parses raw, a signed form of this very transaction (the
	// same transaction, signatures added), for Verify.
	ParseSigned(raw []byte) (Signed, error)
}

// CheckTransfer reports how got (what a transaction does, from
// Unsigned.Transfer) differs from want (what the request names: To,
// Asset, Amount, MaxFee, Nonce, Outpoints; VSize is not compared), or nil.
// The member's check before signing and the offline cold signer share it;
// callers wrap the error with their own sentinel.
func CheckTransfer(want, got Transfer) error {
	switch {
	case (want.Nonce == nil) != (got.Nonce == nil) || (want.Nonce != nil && *want.Nonce != *got.Nonce):
		return fmt.Errorf("tx nonce %v is not the request's nonce %v", orNone(got.Nonce), orNone(want.Nonce))
	case !slices.Equal(want.Outpoints, got.Outpoints):
		return fmt.Errorf("tx spends %v, the request reserved %v", got.Outpoints, want.Outpoints)
	case got.Asset != want.Asset:
		return fmt.Errorf("tx moves %q, the request names %q", got.Asset, want.Asset)
	case got.To != want.To:
		return fmt.Errorf("tx pays %s, the request names %s", got.To, want.To)
	case got.Amount != want.Amount:
		return fmt.Errorf("tx amount %s, the request names %s", got.Amount, want.Amount)
	case got.MaxFee != want.MaxFee:
		// Policy capped the fee the request names; the transaction may not
		// pay more (SECURITY 30).
		return fmt.Errorf("tx maximum fee %s, the request names %s", got.MaxFee, want.MaxFee)
	}
	return nil
}

func orNone(n *uint64) any {
	if n == nil {
		return "none"
	}
	return *n
}
