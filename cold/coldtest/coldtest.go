// Package coldtest builds cold-signing bundles the way export builds them,
// from a made-up ledger history (a genesis, the wallet's registration and
// an allowlist entry) and a 2-of-3 cold wallet's spec, for the tests of
// package cold and of the CLI. Test support: importable from _test.go
// files only.
package coldtest

import (
	"encoding/json"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/cold"
	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// ClusterID is the cluster of every fixture.
const ClusterID = "cold-test"

// rulesTmpl routes WALLET_ETH / WALLET_BTC cold.
const rulesTmpl = `version: 1
assets:
  ETH: {decimals: 18}
  BTC: {decimals: 8}
allowlist:
  cooling_off: 1h
  approvals: 2
  roles: [admin, approver]
lock:
  unlock_delay: 1h
wallets:
  - name: eth-cold
    wallets: [WALLET_ETH]
    asset: ETH
    class: cold
    allowlist_required: true
    limits:
      per_tx: "100"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
  - name: btc-cold
    wallets: [WALLET_BTC]
    asset: BTC
    class: cold
    allowlist_required: false
    limits:
      per_tx: "100"
      max_fee: "0.001"
    approvals:
      - {min: "0", required: 2, roles: [approver, admin]}
`

// The fixtures' operators: two admins (alice, bob), two approvers (bob,
// carol) and the backend that initiates.
var (
	Alice   = ledgertest.NewOperator("alice", quorum.KindHuman, quorum.RoleAdmin)
	Bob     = ledgertest.NewOperator("bob", quorum.KindHuman, quorum.RoleAdmin, quorum.RoleApprover)
	Carol   = ledgertest.NewOperator("carol", quorum.KindHuman, quorum.RoleApprover)
	Backend = ledgertest.NewOperator("backend", quorum.KindBackend, quorum.RoleInitiator)
	// Dest is the allowlisted ETH destination.
	Dest = common.HexToAddress("0x00000000000000000000000000000000000000d1")
)

// Rules is the rules file of a history that registers wallet on chain
// (routed cold; ETH needs the allowlist).
func Rules(wallet, chain string) string {
	e, b := "other-eth", "other-btc"
	if chain == "eth" {
		e = wallet
	} else {
		b = wallet
	}
	return strings.NewReplacer("WALLET_ETH", e, "WALLET_BTC", b).Replace(rulesTmpl)
}

// Spec is a ceremony's wallet (registered for ETH on chain ID 1337) as a
// history registers it on chain: the same key on Bitcoin regtest for
// "btc" (the share binds the wallet ID and the key, not the chain).
func Spec(w cold.WalletSpec, chain string) cold.WalletSpec {
	w.PubKey, w.Custodians = slices.Clone(w.PubKey), slices.Clone(w.Custodians)
	if chain == "btc" {
		w.Chain, w.ChainID, w.BTCParams = "btc", 0, "regtest"
	}
	return w
}

// Fixture is a bundle and what verifies it.
type Fixture struct {
	GenesisHash string
	Bundle      *cold.Bundle
	// Now is a time at which the bundle verifies: the time NewFixture ran
	// (2 h after the history began, past the allowlist's cooling-off);
	// approvals and the request stay valid for another hour.
	Now time.Time
}

// Change is a governance record of typ at at with payload's JSON.
func Change(t testing.TB, typ string, at time.Time, payload any) cold.Change {
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return cold.Change{Type: typ, Time: at, Payload: b}
}

// NewFixture is the bundle of one withdrawal from the cold wallet spec
// (Spec of a ceremony's wallet for chain) whose ceremony transcript
// hashes to transcript: 3 ETH to Dest at nonce 0 on chain ID 1337, or
// 0.7 BTC from two made-up 0.5 BTC outputs of the wallet (the offline
// signer needs only the witness UTXOs the payload carries), approved by
// bob and carol, initiated by the backend.
func NewFixture(t testing.TB, spec cold.WalletSpec, transcript string) *Fixture {
	t.Helper()
	chain, wallet := spec.Chain, spec.Wallet
	gcmd := ledgertest.Genesis(ClusterID, 2, Rules(wallet, chain), Alice, Bob, Carol, Backend)
	g, err := ledger.GenesisDocument(gcmd)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Second).Add(-2 * time.Hour)
	spec.ID, spec.Transcript = "register-"+wallet, transcript
	exp := t0.Add(time.Hour)
	reg := ledger.WalletRegister{Change: ledger.ColdWalletSpec(spec), Approvals: []quorum.Approval{
		Alice.Sign(t, ClusterID, spec.ID, spec.PayloadHash(), quorum.Approve, exp),
		Bob.Sign(t, ClusterID, spec.ID, spec.PayloadHash(), quorum.Approve, exp)}}
	allow := policy.Change{ID: "allow-d1", Kind: policy.ChangeAllowlistAdd, Wallet: wallet, Chain: "eth", Network: "devnet", Address: Dest.Hex(), Label: "treasury"}
	pc := ledger.PolicyChange{Change: allow, Approvals: []quorum.Approval{
		Alice.Sign(t, ClusterID, allow.ID, allow.PayloadHash(), quorum.Approve, exp),
		Carol.Sign(t, ClusterID, allow.ID, allow.PayloadHash(), quorum.Approve, exp)}}
	gov := []cold.Change{Change(t, ledger.CmdWalletRegister, t0, reg), Change(t, ledger.CmdPolicyChange, t0.Add(time.Minute), pc)}
	head := g.Hash()
	for _, c := range gov {
		head = cold.ChainHash(head, c)
	}
	now := t0.Add(2 * time.Hour)
	var r cold.Request
	var psbt []byte
	switch chain {
	case "eth":
		u, err := eth.NewUnsigned(eth.Intent{ChainID: new(big.Int).SetUint64(spec.ChainID), Nonce: 0, To: Dest, Asset: eth.Asset{Symbol: "ETH", Decimals: 18},
			Amount: big.NewInt(3e18), GasLimit: 21000, Fees: eth.Fees{GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(2e9)}})
		if err != nil {
			t.Fatal(err)
		}
		nonce := uint64(0)
		r = cold.Request{ID: "w-eth-1", Withdrawal: policy.Withdrawal{Wallet: wallet, Asset: "ETH", Chain: "eth", Network: "devnet", To: Dest.Hex(),
			Amount: Amount(t, "3000000000000000000"), MaxFee: Amount(t, "42000000000000")}, Payload: u.Bytes(), PayloadHash: u.PayloadHash(), Nonce: &nonce}
	case "btc":
		u := btcUnsigned(t, spec.PubKey)
		p, err := u.PSBT()
		if err != nil {
			t.Fatal(err)
		}
		if psbt, err = btc.EncodePSBT(p); err != nil {
			t.Fatal(err)
		}
		adapter, err := cold.Adapter(spec)
		if err != nil {
			t.Fatal(err)
		}
		cu, err := adapter.ParseUnsigned("devnet", u.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		tr := cu.Transfer()
		r = cold.Request{ID: "w-btc-1", Withdrawal: policy.Withdrawal{Wallet: wallet, Asset: "BTC", Chain: "btc", Network: "devnet", To: tr.To,
			Amount: tr.Amount, MaxFee: tr.MaxFee}, Payload: u.Bytes(), PayloadHash: u.PayloadHash(), Outpoints: tr.Outpoints, VSize: tr.VSize}
	default:
		t.Fatalf("coldtest: chain %q", chain)
	}
	r.ExpiresAt = now.Add(time.Hour)
	init := Backend.Sign(t, ClusterID, r.ID, r.IntentHash(r.ID), quorum.Initiate, now.Add(time.Hour))
	r.Initiation, r.Initiator = &init, "backend"
	r.Approvals = []quorum.Approval{
		Bob.Sign(t, ClusterID, r.ID, r.PayloadHash, quorum.Approve, now.Add(time.Hour)),
		Carol.Sign(t, ClusterID, r.ID, r.PayloadHash, quorum.Approve, now.Add(time.Hour))}
	b := &cold.Bundle{Version: cold.BundleVersion, Genesis: g.Encode(), Governance: gov, GovernanceHead: head, Request: r, PSBT: psbt, ExportedAt: now}
	Attest(t, b, ledgertest.GenesisNodes...)
	return &Fixture{GenesisHash: g.Hash(), Bundle: b, Now: now}
}

// Attest replaces b's attestations with those of nodes (each signing with
// its ledgertest.NodeKey) over b as it is now: its hash, its governance
// head, its genesis's cluster and hash. What a node set does after the
// ledger recorded the export; tests call it again after editing a bundle
// to reach the checks behind the attestation.
func Attest(t testing.TB, b *cold.Bundle, nodes ...pki.NodeID) {
	t.Helper()
	g, err := genesis.Parse(b.Genesis)
	if err != nil {
		t.Fatal(err)
	}
	h := genesis.ExportHead{ClusterID: g.ClusterID, GenesisHash: g.Hash(), RequestID: b.Request.ID, PayloadHash: b.Request.PayloadHash,
		GovernanceHead: b.GovernanceHead, BundleHash: b.Hash()}
	b.Attestations = nil
	for _, n := range nodes {
		sig, err := ledger.SignExport(h, n, ledgertest.NodeKey(n))
		if err != nil {
			t.Fatal(err)
		}
		b.Attestations = append(b.Attestations, sig)
	}
}

// Amount parses a base-unit decimal.
func Amount(t testing.TB, s string) amount.Amount {
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("amount %q", s)
	}
	a, err := amount.FromBig(v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// btcUnsigned spends two made-up outputs paying the wallet.
func btcUnsigned(t testing.TB, pub []byte) *btc.Unsigned {
	addr, err := btc.WalletAddress(pub, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		t.Fatal(err)
	}
	var utxos []btc.UTXO
	for i := range 2 {
		h := chainhash.DoubleHashH([]byte{byte(i)})
		utxos = append(utxos, btc.UTXO{OutPoint: wire.OutPoint{Hash: h, Index: uint32(i)}, Value: 50_000_000, PkScript: script, Confirmations: 100})
	}
	u, err := btc.Build(btc.Intent{Net: &chaincfg.RegressionNetParams, WalletPubKey: pub, To: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
		Amount: 70_000_000, FeeRate: 5, UTXOs: utxos})
	if err != nil {
		t.Fatal(err)
	}
	return u
}
