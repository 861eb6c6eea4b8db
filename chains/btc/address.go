// Package btc builds, describes, hashes, assembles and verifies Bitcoin
// transactions that spend a custody wallet's P2WPKH outputs, handles BIP-174
// PSBTs for the cold flow, and talks to a btcd node. It never decides
// whether something may be signed.
//
// # Flow
//
//	u, _ := btc.Build(intent)                    // coin selection, change
//	u.PayloadHash()                              // what operators approve
//	u.Spent()                                    // outpoints for the ledger to reserve
//	digests, _ := u.SigHashes()                  // one BIP-143 digest per input
//	signed, _ := u.Assemble(sigs)                // witnesses, every input verified by txscript
//
// A committee member sees the same through [Chain], the [chains.Chain]
// adapter: it parses the stored canonical bytes (u.Bytes()) for a network
// and refuses any output but one payee and change back to the wallet.
//
// A wallet is one compressed secp256k1 public key (the threshold key) and
// its P2WPKH address on one network. Every input spends that address.
package btc

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
)

// Errors callers branch on.
var (
	// ErrBadAddress means a string is not a valid destination address for
	// the wallet's network (bad checksum, other network, unsupported type).
	ErrBadAddress = errors.New("btc: invalid address")
	// ErrBadPublicKey means a wallet key is not a compressed secp256k1 point.
	ErrBadPublicKey = errors.New("btc: invalid public key")
	// ErrUnknownNetwork means a network name is not one of Networks.
	ErrUnknownNetwork = errors.New("btc: unknown network")
)

// Networks are the accepted network names and their parameters.
var Networks = map[string]*chaincfg.Params{
	"mainnet":  &chaincfg.MainNetParams,
	"testnet3": &chaincfg.TestNet3Params,
	"signet":   &chaincfg.SigNetParams,
	"regtest":  &chaincfg.RegressionNetParams,
}

// Network returns the parameters for a name in Networks.
func Network(name string) (*chaincfg.Params, error) {
	p, ok := Networks[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (want mainnet, testnet3, signet or regtest)", ErrUnknownNetwork, name)
	}
	return p, nil
}

func networkName(net *chaincfg.Params) string {
	for n, p := range Networks {
		if p.Net == net.Net {
			return n
		}
	}
	return net.Name
}

// WalletAddress is the P2WPKH address of a 33-byte compressed public key.
// Uncompressed keys are refused: P2WPKH with them is non-standard.
func WalletAddress(pub []byte, net *chaincfg.Params) (*btcutil.AddressWitnessPubKeyHash, error) {
	if len(pub) != btcec.PubKeyBytesLenCompressed {
		return nil, fmt.Errorf("%w: %d bytes, want a 33-byte compressed key", ErrBadPublicKey, len(pub))
	}
	if _, err := btcec.ParsePubKey(pub); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	a, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pub), net)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	return a, nil
}

// ParseAddress validates a destination for a wallet on net. Accepted types:
// P2WPKH, P2WSH, P2TR (bech32/bech32m) and P2PKH, P2SH (base58check). The
// checksum must be valid and the address must belong to net. Note testnet3
// and signet share one encoding ("tb1...", "m/n/2..."), so they cannot be
// told apart; regtest segwit addresses ("bcrt1") are distinct, its base58
// ones are not.
func ParseAddress(s string, net *chaincfg.Params) (btcutil.Address, error) {
	if len(s) == 0 || len(s) > 100 {
		return nil, fmt.Errorf("%w: %d characters", ErrBadAddress, len(s))
	}
	a, err := btcutil.DecodeAddress(s, net)
	if err == nil && !a.IsForNet(net) {
		err = errors.New("wrong network")
	}
	if err != nil {
		// Say which network it belongs to: the usual mistake.
		var others []string
		for name, p := range Networks {
			if o, oerr := btcutil.DecodeAddress(s, p); oerr == nil && o.IsForNet(p) && p.Net != net.Net {
				others = append(others, name)
			}
		}
		if len(others) > 0 {
			sort.Strings(others)
			return nil, fmt.Errorf("%w: %q is a %s address, the wallet is on %s", ErrBadAddress, s, strings.Join(others, "/"), networkName(net))
		}
		return nil, fmt.Errorf("%w: %q: %v", ErrBadAddress, s, err)
	}
	switch a.(type) {
	case *btcutil.AddressWitnessPubKeyHash, *btcutil.AddressWitnessScriptHash, *btcutil.AddressTaproot,
		*btcutil.AddressPubKeyHash, *btcutil.AddressScriptHash:
	default:
		return nil, fmt.Errorf("%w: %q has unsupported type %T", ErrBadAddress, s, a)
	}
	return a, nil
}

// addressOf renders a script as an address on net, or "script:<hex>" for a
// script that has no standard address form.
func addressOf(script []byte, net *chaincfg.Params) string {
	_, addrs, _, err := txscript.ExtractPkScriptAddrs(script, net)
	if err != nil || len(addrs) != 1 {
		return fmt.Sprintf("script:%x", script)
	}
	switch addrs[0].(type) {
	case *btcutil.AddressPubKey:
		return fmt.Sprintf("script:%x", script)
	}
	return addrs[0].EncodeAddress()
}
