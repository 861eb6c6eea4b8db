#!/usr/bin/env bash
# make.sh OUT: a 3-node production-like cluster's files, staged per machine.
#
# Runs `custody cluster init` (CA, node certificates and keys, operators,
# backend, genesis) and then writes, for each node nK, the directory that
# becomes /etc/custody on machine nK:
#
#   OUT/cluster/                       everything cluster init wrote (the CA key
#                                      and every operator's keys are in here:
#                                      see README.md before using it for real)
#   OUT/machines/nK/etc/custody/       config.yaml, ca.pem, node.pem,
#                                      node.key (0600), genesis.json
#
# The config differs from cluster init's in what a machine of its own needs:
# the node's own address instead of loopback, absolute paths under
# /etc/custody and /var/lib/custody, and the two secrets (hsm.pin,
# btcd.pass) as names relative to the config, which the systemd unit turns
# into its credential copies (deploy/systemd/custody-node.service).
#
# Nothing secret is printed. The PIN and btcd password files are never
# written here: they are made on each machine (deploy/RUNBOOK.md).
#
# Settings (environment, defaults in brackets):
#   CUSTODY        the custody binary [custody]
#   CLUSTER_ID     [prod-1]
#   N1, N2, N3     each node's address [10.0.0.1, 10.0.0.2, 10.0.0.3]
#   API_PORT       the HTTPS API's port [8443]; raft, tss, rpc are 7100-7102
#   HSM_MODULE     the PKCS#11 library [/usr/lib/softhsm/libsofthsm2.so]
#   ETH_RPC        Ethereum JSON-RPC URL [https://eth.internal.example:8545]
#   ETH_CHAIN_ID   [1]            ETH_NETWORK [mainnet]
#   BTC_RPC        btcd RPC host:port [btcd.internal.example:8334]
#   BTC_NETWORK    [mainnet]      BTC_USER [custody]
#   OPERATORS      space-separated NAME=ROLE[,ROLE] [alice=admin,approver bob=admin,approver carol=approver]
#   BACKEND        the backend principal [exchange]
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUT" >&2
	exit 2
fi
out=$1
CUSTODY=${CUSTODY:-custody}
CLUSTER_ID=${CLUSTER_ID:-prod-1}
N1=${N1:-10.0.0.1}
N2=${N2:-10.0.0.2}
N3=${N3:-10.0.0.3}
API_PORT=${API_PORT:-8443}
HSM_MODULE=${HSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
ETH_RPC=${ETH_RPC:-https://eth.internal.example:8545}
ETH_CHAIN_ID=${ETH_CHAIN_ID:-1}
ETH_NETWORK=${ETH_NETWORK:-mainnet}
BTC_RPC=${BTC_RPC:-btcd.internal.example:8334}
BTC_NETWORK=${BTC_NETWORK:-mainnet}
BTC_USER=${BTC_USER:-custody}
OPERATORS=${OPERATORS:-alice=admin,approver bob=admin,approver carol=approver}
BACKEND=${BACKEND:-exchange}

if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
	echo "make.sh: $out exists and is not empty" >&2
	exit 1
fi

mkdir -p "$out"
ops=()
for o in $OPERATORS; do
	ops+=(--operator "$o")
done

# 1. The ceremony. cluster init checks every flag before it writes anything,
# and every config it writes must pass the node's own config check.
"$CUSTODY" cluster init --nodes 3 --out "$out/cluster" --cluster-id "$CLUSTER_ID" \
	"${ops[@]}" --backend "$BACKEND" \
	--eth-rpc "$ETH_RPC" --eth-chain-id "$ETH_CHAIN_ID" \
	--btc-rpc "$BTC_RPC" --btc-network "$BTC_NETWORK" >"$out/cluster-init.txt"
hash=$(sed -n 's/^genesis hash: \([0-9a-f]\{64\}\)$/\1/p' "$out/cluster-init.txt")
if [ -z "$hash" ]; then
	echo "make.sh: no genesis hash in the output of cluster init" >&2
	exit 1
fi

addr() {
	case $1 in
	n1) echo "$N1" ;;
	n2) echo "$N2" ;;
	n3) echo "$N3" ;;
	esac
}

# 2. One /etc/custody per machine.
for n in n1 n2 n3; do
	etc="$out/machines/$n/etc/custody"
	mkdir -p "$etc"
	chmod 0750 "$etc"
	cp "$out/cluster/ca/ca.pem" "$etc/ca.pem"
	cp "$out/cluster/genesis.json" "$etc/genesis.json"
	cp "$out/cluster/nodes/$n/node.pem" "$etc/node.pem"
	install -m 0600 "$out/cluster/nodes/$n/node.key" "$etc/node.key"
	a=$(addr $n)
	{
		cat <<YAML
# /etc/custody/config.yaml on node $n of cluster $CLUSTER_ID
# (deploy/examples/three-node/make.sh); docs/config.md has every field.
# deploy/systemd/custody-node.service hands this file to the node as the
# credential config.yaml: the relative names hsm.pin and btcd.pass are the
# unit's credential copies of /etc/custody/credentials/*, everything else
# is an absolute path.
node_id: $n
data_dir: /var/lib/custody
listen:
  raft: "$a:7100"
  tss: "$a:7101"
  rpc: "$a:7102"
  api: "$a:$API_PORT"
peers:
YAML
		for p in n1 n2 n3; do
			[ $p = $n ] && continue
			pa=$(addr $p)
			echo "  - {id: $p, raft: \"$pa:7100\", tss: \"$pa:7101\", rpc: \"$pa:7102\"}"
		done
		cat <<YAML
tls:
  ca: /etc/custody/ca.pem
  cert: /etc/custody/node.pem
  key: /etc/custody/node.key        # custody:custody 0600
hsm:
  module: $HSM_MODULE
  token_label: custody-$n           # prefer token_serial: "..." (custody hsm info)
  pin_file: hsm.pin                 # the credential; never the PIN itself
genesis:
  file: /etc/custody/genesis.json
  hash: "$hash"
chains:
  eth:
    rpc: $ETH_RPC
    chain_id: $ETH_CHAIN_ID
    network: $ETH_NETWORK
  btc:
    rpc: "$BTC_RPC"
    user: $BTC_USER
    password_file: btcd.pass        # the credential
    cert_file: /etc/custody/btcd-rpc.cert
    network: $BTC_NETWORK
ledger:
  log_store: wal
tss:
  session_timeout: 2m
YAML
	} >"$etc/config.yaml"
done

cat <<TXT
cluster $CLUSTER_ID: genesis hash $hash
  ceremony output   $out/cluster   (holds the CA key and every operator's keys)
  node n1 ($N1)     $out/machines/n1/etc/custody
  node n2 ($N2)     $out/machines/n2/etc/custody
  node n3 ($N3)     $out/machines/n3/etc/custody
Next (deploy/RUNBOOK.md, "Bootstrap a cluster"): on each machine create the HSM
token and its KEK, /etc/custody/credentials/hsm.pin and btcd.pass, copy
btcd's rpc.cert to /etc/custody/btcd-rpc.cert, install the unit, verify the
genesis hash, start.
TXT
