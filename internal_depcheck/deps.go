package main

import (
	_ "github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	_ "github.com/bnb-chain/tss-lib/v2/ecdsa/resharing"
	_ "github.com/bnb-chain/tss-lib/v2/ecdsa/signing"
	_ "github.com/btcsuite/btcd/btcutil/psbt"
	_ "github.com/btcsuite/btcd/rpcclient"
	_ "github.com/btcsuite/btcd/txscript"
	_ "github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	_ "github.com/ethereum/go-ethereum/ethclient/simulated"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/miekg/pkcs11"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "github.com/spf13/cobra"
	_ "gopkg.in/yaml.v3"
)

func main() {}
