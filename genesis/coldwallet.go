package genesis

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/custody-dev/custody/quorum"
)

// ColdWallet is a cold wallet as the admins register it (wallet.register):
// the ceremony's public key and the hash of its transcript. ID is the
// single-use change ID. Approvals sign a quorum.Statement with RequestID =
// ID and PayloadHash = PayloadHash(). It is the one type the ledger
// records (ledger.ColdWalletSpec, Wallet.Cold) and the offline signer folds
// from a bundle's evidence (cold.WalletSpec): both aliases of this.
type ColdWallet struct {
	ID      string `json:"id"`
	Wallet  string `json:"wallet"`
	Chain   string `json:"chain"`
	Network string `json:"network"`
	// ChainID is the EIP-155 chain ID of an Ethereum wallet's network
	// (0 for Bitcoin): the offline signer takes it from here.
	ChainID uint64 `json:"chain_id,omitempty"`
	// BTCParams names a Bitcoin wallet's network parameters (mainnet,
	// testnet3, signet, regtest; "" for Ethereum).
	BTCParams string `json:"btc_params,omitempty"`
	// PubKey is the 33-byte compressed secp256k1 key of the ceremony.
	PubKey []byte `json:"pubkey"`
	// Threshold t: any t+1 of Custodians sign.
	Threshold  int      `json:"threshold"`
	Custodians []string `json:"custodians"`
	// Transcript is the hex SHA-256 of the ceremony's transcript file.
	Transcript string `json:"transcript"`
}

// PayloadHash is SHA-256 of "custody/wallet-register/v1" 0x00 and the
// spec's JSON (fields in declaration order).
func (s ColdWallet) PayloadHash() quorum.Hash {
	return quorum.DomainHash("custody/wallet-register/v1", s)
}

// Validate checks a spec's form: IDs, chain eth or btc (eth with a chain
// ID), a 33-byte key, 1 <= threshold < custodians, distinct custodians, a
// transcript hash.
func (s ColdWallet) Validate() error {
	switch {
	case s.ID == "" || s.Wallet == "" || s.Network == "":
		return errors.New("wallet registration needs a change ID, a wallet ID and a network")
	case s.Chain != "eth" && s.Chain != "btc":
		return fmt.Errorf("wallet registration: chain %q is not eth or btc", s.Chain)
	case s.Chain == "eth" && (s.ChainID == 0 || s.BTCParams != ""):
		return errors.New("wallet registration: an eth wallet names its chain ID and no btc_params")
	case s.Chain == "btc" && (s.ChainID != 0 || s.BTCParams == ""):
		return errors.New("wallet registration: a btc wallet names its btc_params and no chain ID")
	case len(s.PubKey) != 33 || (s.PubKey[0] != 2 && s.PubKey[0] != 3):
		return errors.New("wallet registration: the public key is not 33-byte compressed secp256k1")
	case s.Threshold < 1 || s.Threshold >= len(s.Custodians):
		return fmt.Errorf("wallet registration: threshold %d of %d custodians (need 1 <= t < n)", s.Threshold, len(s.Custodians))
	}
	seen := map[string]bool{}
	for _, c := range s.Custodians {
		if c == "" || seen[c] {
			return fmt.Errorf("wallet registration: custodian %q empty or listed twice", c)
		}
		seen[c] = true
	}
	if b, err := hex.DecodeString(s.Transcript); err != nil || len(b) != sha256.Size {
		return errors.New("wallet registration: the transcript hash is not 64 hex digits")
	}
	return nil
}
