// Package eth builds, describes, hashes, assembles and verifies Ethereum
// transactions for the custody signer, and talks to a chain through a small
// adapter. It never decides whether something may be signed.
//
// # Flow
//
//	u, _ := eth.NewUnsigned(intent)           // leader: intent -> unsigned tx
//	u.PayloadHash()                           // what operators approve
//	u, _ = eth.ParseUnsigned(u.Bytes())       // each signer: re-parse
//	eth.Compare(approvedDesc, u.Description())// and re-check
//	u.SigningHash()                           // what the threshold signer signs
//	s, _ := u.Assemble(r, s, recID, wallet)   // signed, sender verified
//
// # Encodings
//
// The unsigned transaction travels as its signing preimage: for EIP-1559,
// 0x02 || rlp([chainId, nonce, tip, feeCap, gas, to, value, data, []]); for
// legacy EIP-155, rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0]).
// Keccak-256 of these bytes is the signing hash, and the chain ID is always
// inside them. Signed transactions use go-ethereum's standard binary
// encoding (what eth_sendRawTransaction takes).
package eth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// ErrBadAddress is returned (wrapped) for any address string that is not a
// valid 20-byte hex Ethereum address with a correct EIP-55 checksum.
var ErrBadAddress = errors.New("eth: invalid address")

// ErrBadPublicKey is returned when a public key is not a valid secp256k1
// point in SEC1 compressed (33 bytes) or uncompressed (65 bytes) form.
var ErrBadPublicKey = errors.New("eth: invalid public key")

// AddressFromPublicKey derives the Ethereum address (the last 20 bytes of the
// Keccak-256 of the uncompressed X||Y) of a SEC1-encoded secp256k1 key.
func AddressFromPublicKey(pub []byte) (common.Address, error) {
	k, err := btcec.ParsePubKey(pub)
	if err != nil {
		return common.Address{}, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	return common.BytesToAddress(crypto.Keccak256(k.SerializeUncompressed()[1:])[12:]), nil
}

// ParseAddress validates s as an Ethereum address: "0x" followed by exactly
// 40 hex digits. An all-lower or all-upper address carries no checksum and is
// accepted; a mixed-case address must match its EIP-55 checksum exactly,
// because a mixed-case typo is what the checksum exists to catch. The zero
// address is refused: sending to it burns funds.
func ParseAddress(s string) (common.Address, error) {
	if !strings.HasPrefix(s, "0x") && !strings.HasPrefix(s, "0X") {
		return common.Address{}, fmt.Errorf("%w: %q lacks the 0x prefix", ErrBadAddress, s)
	}
	h := s[2:]
	if len(h) != 40 {
		return common.Address{}, fmt.Errorf("%w: %q has %d hex digits, want 40", ErrBadAddress, s, len(h))
	}
	hasLower, hasUpper := false, false
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'f':
			hasLower = true
		case c >= 'A' && c <= 'F':
			hasUpper = true
		default:
			return common.Address{}, fmt.Errorf("%w: %q is not hex", ErrBadAddress, s)
		}
	}
	a := common.HexToAddress(h)
	if hasLower && hasUpper && a.Hex()[2:] != h {
		return common.Address{}, fmt.Errorf("%w: %q fails the EIP-55 checksum", ErrBadAddress, s)
	}
	if a == (common.Address{}) {
		return common.Address{}, fmt.Errorf("%w: the zero address", ErrBadAddress)
	}
	return a, nil
}
