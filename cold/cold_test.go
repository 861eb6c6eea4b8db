package cold_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/cold"
	"github.com/custody-dev/custody/cold/coldtest"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/tss/tsstest"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

const (
	clusterID = coldtest.ClusterID
	// wallet is the one cold wallet of the package's single keygen; each
	// fixture's ledger history registers it on one chain (the share binds
	// the wallet ID and key, not the chain), so ETH and BTC share the
	// ceremony.
	wallet = "cold"
)

var (
	alice, bob, carol, backend = coldtest.Alice, coldtest.Bob, coldtest.Carol, coldtest.Backend
	dest                       = coldtest.Dest
	amt                        = coldtest.Amount
	change                     = coldtest.Change
)

// ceremony is one keygen among three SoftHSM tokens (2-of-3), shared by
// the package's tests: tss keygen is the slow part.
type ceremony struct {
	dir    string
	tokens map[string]hsm.Config
	wallet cold.PublicWallet
	out    *cold.Outputs
	// transcript is the hex SHA-256 of the transcript file written.
	transcript string
}

var (
	theCeremony  *ceremony
	ceremonyErr  error
	ceremonyOnce sync.Once
)

func pinsOf(tokens map[string]hsm.Config) cold.PINSource {
	return func(name string) (string, error) {
		tok, ok := tokens[name]
		if !ok {
			return "", fmt.Errorf("no token for %s", name)
		}
		return tok.PIN, nil
	}
}

// keygen runs the package's one ceremony (2-of-3 over three fresh
// tokens, on the first call) and returns it. Tokens outlive the test
// (softhsmtest's shared environment) so later tests sign with them.
func keygen(t *testing.T) *ceremony {
	t.Helper()
	ceremonyOnce.Do(func() { theCeremony, ceremonyErr = runKeygen(t) })
	if ceremonyErr != nil {
		t.Fatal(ceremonyErr)
	}
	if theCeremony == nil {
		t.Fatal("the package's keygen failed in an earlier test")
	}
	return theCeremony
}

func runKeygen(t *testing.T) (*ceremony, error) {
	dir, err := os.MkdirTemp("", "cold-ceremony-")
	if err != nil {
		return nil, err
	}
	c := &ceremony{dir: dir, tokens: map[string]hsm.Config{}}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 1\nwallet: %s\nchain: eth\nchain_id: 1337\nnetwork: devnet\nthreshold: 1\n", wallet)
	var module string
	cfg.WriteString("custodians:\n")
	for _, name := range []string{"ann", "ben", "cat"} {
		tok := softhsmtest.NewToken(tsstest.NoCleanup(t), "cold-"+name)
		c.tokens[name] = tok
		module = tok.Module
		fmt.Fprintf(&cfg, "  - {name: %s, token_label: %q, token_serial: %q}\n", name, tok.TokenLabel, tok.TokenSerial)
	}
	fmt.Fprintf(&cfg, "module: %q\n", module)
	ctx, cancel := context.WithTimeout(context.Background(), tsstest.Deadline)
	defer cancel()
	out, err := cold.Keygen(ctx, []byte(cfg.String()), pinsOf(c.tokens), cold.KeygenOptions{PreParams: func(i int) preparams.Generator {
		return tsstest.FixtureSource(i, 6)
	}})
	if err != nil {
		return nil, err
	}
	if err := out.Write(c.dir); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(out.Wallet, &c.wallet); err != nil {
		return nil, err
	}
	c.out = out
	tb, err := os.ReadFile(filepath.Join(c.dir, "transcript.json"))
	if err != nil {
		return nil, err
	}
	c.transcript = fmt.Sprintf("%x", sha256.Sum256(tb))
	return c, nil
}

// specFor is the ceremony's wallet as a fixture registers it on chain.
func specFor(c *ceremony, chain string) cold.WalletSpec { return coldtest.Spec(c.wallet.Spec, chain) }

// fixture is a bundle built the way export builds it, from a ledger
// history: the genesis, the wallet's registration and an allowlist entry.
type fixture struct {
	genesisHash string
	bundle      *cold.Bundle
	now         time.Time
	cer         *ceremony
}

func newFixture(t *testing.T, chain string) *fixture {
	t.Helper()
	cer := keygen(t)
	f := coldtest.NewFixture(t, specFor(cer, chain), cer.transcript)
	return &fixture{genesisHash: f.GenesisHash, bundle: f.Bundle, now: f.Now, cer: cer}
}

// clone deep-copies a bundle through its encoding.
func clone(t *testing.T, b *cold.Bundle) *cold.Bundle {
	c, err := cold.ParseBundle(b.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func presentShares(t *testing.T, c *ceremony, names ...string) []*cold.SealedShare {
	var out []*cold.SealedShare
	for _, n := range names {
		s, err := cold.ParseSealedShare(c.out.Shares[n])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestColdSignETHAndBTC: a ceremony's 2-of-3 shares on SoftHSM tokens sign
// verified bundles with two different pairs of custodians (ann+ben the ETH
// one, ben+cat the two-input BTC one; the keygen test-signed with both
// pairs too); the ETH
// transaction verifies against the approved payload and the wallet; the
// BTC transaction verifies with txscript, and its signed PSBT finalizes
// and extracts to the same transaction.
func TestColdSignETHAndBTC(t *testing.T) {
	for chain, pair := range map[string][]string{"eth": {"ann", "ben"}, "btc": {"ben", "cat"}} {
		t.Run(chain, func(t *testing.T) {
			f := newFixture(t, chain)
			b := clone(t, f.bundle)
			c, err := cold.Verify(b, f.genesisHash, f.now)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			{
				signed, err := cold.Sign(ctx, c, f.cer.tokens["ann"].Module, presentShares(t, f.cer, pair...), pinsOf(f.cer.tokens), f.now)
				if err != nil {
					t.Fatal(err)
				}
				back, err := cold.ParseBundle(signed.Encode())
				if err != nil {
					t.Fatal(err)
				}
				if back.Hash() != b.Hash() {
					t.Fatal("signing changed the bundle hash")
				}
				if _, err := cold.VerifySigned(back, f.genesisHash, f.now); err != nil {
					t.Fatal(err)
				}
				if chain == "btc" {
					checkSignedPSBT(t, back)
				}
			}
		})
	}
}

func checkSignedPSBT(t *testing.T, b *cold.Bundle) {
	t.Helper()
	p, err := btc.ParsePSBT(b.Signed.PSBT)
	if err != nil {
		t.Fatal(err)
	}
	spec := specFor(keygen(t), "btc")
	u, err := btc.UnsignedFromPSBT(p, &chaincfg.RegressionNetParams, spec.PubKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := btc.Finalize(p, u) // finalizes, extracts and runs txscript on every input
	if err != nil {
		t.Fatal(err)
	}
	if s.TxID().String() != b.Signed.TxHash {
		t.Fatalf("the PSBT extracts to %s, the bundle's transaction is %s", s.TxID(), b.Signed.TxHash)
	}
}

// TestColdRefusals: every tampering the issue lists is refused by Verify
// or Sign with its sentinel and a message naming the problem.
func TestColdRefusals(t *testing.T) {
	f := newFixture(t, "eth")
	fb := newFixture(t, "btc")
	reChain := func(b *cold.Bundle) {
		head := f.genesisHash
		for _, c := range b.Governance {
			head = cold.ChainHash(head, c)
		}
		b.GovernanceHead = head
	}
	other := newFixture(t, "eth")
	cases := []struct {
		name string
		fx   *fixture
		edit func(b *cold.Bundle)
		pin  string
		at   time.Duration
		// asExported: the edit is checked with the node set's attestations
		// as the export left them (else the bundle is attested again after
		// the edit, to reach the checks behind the attestation: what a
		// node set that all went wrong at once would hand out).
		asExported bool
		want       error
		msg        string
	}{
		{name: "edited after export", asExported: true, edit: func(b *cold.Bundle) { b.Request.Amount = amt(t, "4000000000000000000") },
			want: cold.ErrAttestation, msg: "did not attest"},
		{name: "allowlist change removed and re-chained, as exported", asExported: true, edit: func(b *cold.Bundle) { b.Governance = b.Governance[:1]; reChain(b) },
			want: cold.ErrAttestation, msg: "did not attest"},
		{name: "attested by fewer than a checkpoint quorum", asExported: true, edit: func(b *cold.Bundle) { coldtest.Attest(t, b, "n1", "n2") },
			want: cold.ErrAttestation, msg: "2 valid signatures of the node set, the quorum is 3 of 3"},
		{name: "one attestation repeated", asExported: true, edit: func(b *cold.Bundle) {
			coldtest.Attest(t, b, "n1", "n2")
			b.Attestations = append(b.Attestations, b.Attestations[1])
		}, want: cold.ErrAttestation, msg: "the quorum is 3 of 3"},
		{name: "attested by a node outside the node set", asExported: true, edit: func(b *cold.Bundle) { coldtest.Attest(t, b, "n1", "n2", "n4") },
			want: cold.ErrAttestation, msg: `"n4" is not in the node set`},
		{name: "no attestations", asExported: true, edit: func(b *cold.Bundle) { b.Attestations = nil }, want: cold.ErrAttestation, msg: "0 valid"},
		{name: "changed amount", edit: func(b *cold.Bundle) { b.Request.Amount = amt(t, "4000000000000000000") }, want: cold.ErrPayload, msg: "amount"},
		{name: "changed destination", edit: func(b *cold.Bundle) { b.Request.To = "0x00000000000000000000000000000000000000d2" }, want: cold.ErrPayload, msg: "pays"},
		{name: "changed fee", edit: func(b *cold.Bundle) { b.Request.MaxFee = amt(t, "1") }, want: cold.ErrPayload, msg: "fee"},
		{name: "changed payload", edit: func(b *cold.Bundle) {
			u, _ := eth.NewUnsigned(eth.Intent{ChainID: big.NewInt(1337), To: dest, Asset: eth.Asset{Symbol: "ETH", Decimals: 18},
				Amount: big.NewInt(3e18), GasLimit: 21000, Fees: eth.Fees{GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(3e9)}})
			b.Request.Payload = u.Bytes()
		}, want: cold.ErrPayload, msg: "approved"},
		{name: "BTC change output changed", fx: fb, edit: func(b *cold.Bundle) {
			p, _ := btc.ParsePSBT(b.PSBT)
			p.UnsignedTx.TxOut[len(p.UnsignedTx.TxOut)-1].Value -= 1000
			b.PSBT, _ = btc.EncodePSBT(p)
		}, want: cold.ErrPayload, msg: "PSBT"},
		{name: "approval removed", edit: func(b *cold.Bundle) { b.Request.Approvals = b.Request.Approvals[:1] }, want: cold.ErrApprovals, msg: "approv"},
		{name: "approval duplicated", edit: func(b *cold.Bundle) { b.Request.Approvals[1] = b.Request.Approvals[0] }, want: cold.ErrApprovals, msg: "approv"},
		{name: "approvals expired", at: 61 * time.Minute, edit: func(b *cold.Bundle) {}, want: cold.ErrApprovals, msg: "insufficient approvals"},
		{name: "request expired", at: 61 * time.Minute, edit: func(b *cold.Bundle) {
			for i := range b.Request.Approvals {
				b.Request.Approvals[i] = []ledgertest.Operator{bob, carol}[i].Sign(t, clusterID, b.Request.ID, b.Request.PayloadHash, quorum.Approve, f.now.Add(2*time.Hour))
			}
		}, want: cold.ErrPolicy, msg: "expired"},
		{name: "approval by a revoked device", edit: func(b *cold.Bundle) {
			rc := quorum.Change{ID: "revoke-carol", Kind: quorum.ChangeRevokeDevice, DeviceID: carol.Device().ID}
			at := b.Governance[len(b.Governance)-1].Time.Add(time.Minute)
			b.Governance = append(b.Governance, change(t, ledger.CmdRegistryChange, at, ledger.RegistryChange{Change: rc,
				Approvals: []quorum.Approval{alice.Sign(t, clusterID, rc.ID, rc.PayloadHash(), quorum.Approve, at.Add(time.Hour))}}))
			reChain(b)
		}, want: cold.ErrApprovals, msg: "approv"},
		{name: "governance change removed", edit: func(b *cold.Bundle) { b.Governance = b.Governance[:1] }, want: cold.ErrEvidence, msg: "missing, added or reordered"},
		{name: "governance changes reordered", edit: func(b *cold.Bundle) {
			b.Governance[0], b.Governance[1] = b.Governance[1], b.Governance[0]
		}, want: cold.ErrEvidence, msg: "out of order"},
		// Behind the attestation, a dropped change is still caught by what
		// it decided.
		{name: "allowlist change removed and re-chained", edit: func(b *cold.Bundle) { b.Governance = b.Governance[:1]; reChain(b) }, want: cold.ErrPolicy, msg: "allowlist"},
		{name: "another genesis pinned", pin: other.genesisHash + "x", edit: func(b *cold.Bundle) {}, want: cold.ErrGenesis, msg: "pinned"},
		{name: "bundle of another cluster", edit: func(b *cold.Bundle) {
			g := ledgertest.Genesis("other-cluster", 2, coldtest.Rules(wallet, "eth"), alice, bob, carol, backend)
			d, _ := ledger.GenesisDocument(g)
			b.Genesis = d.Encode()
		}, want: cold.ErrGenesis, msg: "other-cluster"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx := f
			if tc.fx != nil {
				fx = tc.fx
			}
			b := clone(t, fx.bundle)
			tc.edit(b)
			if !tc.asExported {
				coldtest.Attest(t, b, ledgertest.GenesisNodes...)
			}
			pin := fx.genesisHash
			if tc.pin != "" {
				pin = tc.pin
			}
			_, err := cold.Verify(b, pin, fx.now.Add(tc.at))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}

	// Refusals at signing: nothing is signed.
	c, err := cold.Verify(clone(t, f.bundle), f.genesisHash, f.now)
	if err != nil {
		t.Fatal(err)
	}
	module := f.cer.tokens["ann"].Module
	ctx := context.Background()
	sameTokenTwice := presentShares(t, f.cer, "ann", "ben")
	sameTokenTwice[1].TokenSerial = sameTokenTwice[0].TokenSerial
	wrongPIN := func(name string) (string, error) {
		if name == "ben" {
			return "000000", nil
		}
		return f.cer.tokens[name].PIN, nil
	}
	for name, tc := range map[string]struct {
		present []*cold.SealedShare
		pins    cold.PINSource
		want    error
		msg     string
	}{
		"too few custodians":       {presentShares(t, f.cer, "ann"), pinsOf(f.cer.tokens), cold.ErrCustodians, "needs 2"},
		"the same custodian twice": {presentShares(t, f.cer, "ann", "ann"), pinsOf(f.cer.tokens), cold.ErrCustodians, "twice"},
		"the same token twice":     {sameTokenTwice, pinsOf(f.cer.tokens), cold.ErrCustodians, "one share per token"},
		"a wrong PIN":              {presentShares(t, f.cer, "ann", "ben"), wrongPIN, hsm.ErrPINIncorrect, "ben"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := cold.Sign(ctx, c, module, tc.present, tc.pins, f.now)
			if out != nil || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, %v; want %v mentioning %q", out, err, tc.want, tc.msg)
			}
		})
	}
}

// TestColdNodeSetChangeMovesTheQuorum: the node set whose checkpoint
// quorum must attest an export is the genesis's changed by the node
// changes in the evidence (ledger.NodeChange, admin-approved): after n4
// joins, any 3 of the 4 attest; after n3 leaves, n1 and n2 do and n3's
// signature no longer counts. A node change with one admin's approval is
// refused as evidence.
func TestColdNodeSetChangeMovesTheQuorum(t *testing.T) {
	f := newFixture(t, "eth")
	n4 := ledgertest.Nodes("n4")[0]
	n3 := ledgertest.Nodes("n3")[0]
	reduced := true
	withChange := func(t *testing.T, kind ledger.NodeChangeKind, n ledger.Node, admins ...ledgertest.Operator) *cold.Bundle {
		b := clone(t, f.bundle)
		nc := ledger.NodeSetChange{ID: "node-" + string(kind) + "-" + string(n.ID), Kind: kind, Node: n, ReducedTolerance: kind == ledger.NodeRemove && reduced}
		at := b.Governance[len(b.Governance)-1].Time.Add(time.Minute)
		var approvals []quorum.Approval
		for _, a := range admins {
			approvals = append(approvals, a.Sign(t, clusterID, nc.ID, nc.PayloadHash(), quorum.Approve, at.Add(time.Hour)))
		}
		b.Governance = append(b.Governance, change(t, ledger.CmdNodeChange, at, ledger.NodeChange{Change: nc, Approvals: approvals}))
		head := f.genesisHash
		for _, c := range b.Governance {
			head = cold.ChainHash(head, c)
		}
		b.GovernanceHead = head
		return b
	}
	for _, tc := range []struct {
		name    string
		kind    ledger.NodeChangeKind
		node    ledger.Node
		admins  []ledgertest.Operator
		attest  []pki.NodeID
		want    error
		wantMsg string
	}{
		{"n4 joined, three of four attest", ledger.NodeAdd, n4, []ledgertest.Operator{alice, bob}, []pki.NodeID{"n1", "n2", "n4"}, nil, ""},
		{"n4 joined, two of four attest", ledger.NodeAdd, n4, []ledgertest.Operator{alice, bob}, []pki.NodeID{"n1", "n2"}, cold.ErrAttestation, "the quorum is 3 of 4"},
		{"n3 left, the other two attest", ledger.NodeRemove, n3, []ledgertest.Operator{alice, bob}, []pki.NodeID{"n1", "n2"}, nil, ""},
		{"n3 left, its attestation does not count", ledger.NodeRemove, n3, []ledgertest.Operator{alice, bob}, []pki.NodeID{"n1", "n3"}, cold.ErrAttestation, `"n3" is not in the node set`},
		{"a node change one admin approved", ledger.NodeAdd, n4, []ledgertest.Operator{alice}, []pki.NodeID{"n1", "n2", "n3"}, cold.ErrEvidence, "node.change"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := withChange(t, tc.kind, tc.node, tc.admins...)
			coldtest.Attest(t, b, tc.attest...)
			_, err := cold.Verify(b, f.genesisHash, f.now)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.wantMsg)
			}
		})
	}
	// Shrinking below four nodes without the admins' reduced_tolerance is
	// refused by the ledger, so such a change in the evidence is too.
	reduced = false
	b := withChange(t, ledger.NodeRemove, n3, alice, bob)
	coldtest.Attest(t, b, "n1", "n2")
	if _, err := cold.Verify(b, f.genesisHash, f.now); !errors.Is(err, cold.ErrEvidence) || !strings.Contains(err.Error(), "reduced_tolerance") {
		t.Fatalf("a removal to two nodes without reduced_tolerance: %v", err)
	}
}
