package cold

import (
	"bytes"
	"fmt"
	"time"

	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Checked is a bundle that Verify accepted: what it found, for the
// description custodians read and for Sign.
type Checked struct {
	Bundle   *Bundle
	State    *State
	Wallet   WalletSpec
	Unsigned chains.Unsigned
	Transfer chains.Transfer
	// Description is the transaction for humans, as operators saw it.
	Description string
	// Decision is the policy's decision at the verifying machine's time.
	Decision policy.Decision
}

// Adapter is the chain adapter for a registered cold wallet, configured
// from its registration only (the network's chain ID or parameters).
func Adapter(w WalletSpec) (chains.Chain, error) {
	switch w.Chain {
	case "eth":
		c, err := eth.New(eth.Config{Networks: map[string]uint64{w.Network: w.ChainID}})
		if err != nil {
			return nil, err
		}
		return c, nil
	case "btc":
		return btc.NewChain(map[string]string{w.Network: w.BTCParams})
	}
	return nil, fmt.Errorf("cold: chain %q", w.Chain)
}

// Verify checks a bundle offline, in order, from pinned (the genesis hash
// the custodians typed or passed in, never the bundle's) and the verifying
// machine's clock now:
//
//  1. the bundle's genesis hashes to pinned (ErrGenesis);
//  2. the governance changes chain from pinned to the bundle's head and each
//     applies on the state folded before it (ErrEvidence);
//  3. a checkpoint quorum of the node set (the genesis's, changed only by
//     node changes in the evidence) attested the export of this bundle
//     under this governance head, each node from its own replica, so one
//     exporting node cannot leave a change out (ErrAttestation);
//  4. the wallet is a registered cold wallet; the payload parses for its
//     network, hashes to the approved payload hash, and pays exactly the
//     request's destination, asset, amount, nonce or outpoints and maximum
//     fee; a Bitcoin PSBT is exactly that transaction (ErrPayload);
//  5. policy at now under the folded rules, allowlist and locks allows it
//     and routes it cold; enough distinct, enrolled operators approved the
//     exact payload hash, unexpired by now, the initiator's signature
//     verifies and is not counted; the request has not expired (ErrPolicy,
//     ErrApprovals).
func Verify(b *Bundle, pinned string, now time.Time) (*Checked, error) {
	if b.Version != BundleVersion {
		return nil, fmt.Errorf("%w: version %q", ErrBundle, b.Version)
	}
	g, err := genesis.Parse(b.Genesis)
	if err != nil {
		return nil, fmt.Errorf("%w: its genesis: %w", ErrGenesis, err)
	}
	if g.Hash() != pinned {
		return nil, fmt.Errorf("%w: the bundle's genesis is %s (cluster %q), the custodians pinned %s", ErrGenesis, g.Hash(), g.ClusterID, pinned)
	}
	st, err := Fold(g, b.Governance)
	if err != nil {
		return nil, err
	}
	if st.Head != b.GovernanceHead {
		return nil, fmt.Errorf("%w: the %d changes chain to %s, the bundle names head %s: a change is missing, added or reordered",
			ErrEvidence, len(b.Governance), st.Head, b.GovernanceHead)
	}
	r := b.Request
	h := genesis.ExportHead{ClusterID: g.ClusterID, GenesisHash: pinned, RequestID: r.ID, PayloadHash: r.PayloadHash, GovernanceHead: st.Head, BundleHash: b.Hash()}
	if err := pki.VerifyQuorum("the export", h.Digest(), b.Attestations, st.Nodes); err != nil {
		return nil, fmt.Errorf("%w: %w: the node set did not attest this bundle under this governance head (a change left out, or the bundle edited after export)", ErrAttestation, err)
	}
	w, ok := st.Wallets[r.Wallet]
	if !ok {
		return nil, fmt.Errorf("%w: wallet %q is not a registered cold wallet", ErrPayload, r.Wallet)
	}
	c := &Checked{Bundle: b, State: st, Wallet: w}
	if err := c.checkPayload(); err != nil {
		return nil, err
	}
	if err := c.checkDecision(now); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Checked) checkPayload() error {
	r, w := c.Bundle.Request, c.Wallet
	if r.Chain != w.Chain || r.Network != w.Network {
		return fmt.Errorf("%w: request on %s/%s, wallet on %s/%s", ErrPayload, r.Chain, r.Network, w.Chain, w.Network)
	}
	adapter, err := Adapter(w)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	u, err := adapter.ParseUnsigned(r.Network, r.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if ph := u.PayloadHash(); ph != r.PayloadHash {
		return fmt.Errorf("%w: the transaction hashes to %x, the operators approved %x", ErrPayload, ph, r.PayloadHash)
	}
	tr := u.Transfer()
	want := chains.Transfer{To: r.To, Asset: r.Asset, Amount: r.Amount, MaxFee: r.MaxFee, Nonce: r.Nonce, Outpoints: r.Outpoints}
	if err := chains.CheckTransfer(want, tr); err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if w.Chain == "btc" {
		if err := checkPSBT(c.Bundle.PSBT, w, r.PayloadHash); err != nil {
			return err
		}
	} else if len(c.Bundle.PSBT) != 0 {
		return fmt.Errorf("%w: a PSBT in an %s bundle", ErrPayload, w.Chain)
	}
	c.Unsigned, c.Transfer, c.Description = u, tr, u.Describe()
	return nil
}

// checkPSBT accepts the bundle's PSBT only when it is exactly the approved
// unsigned transaction with the wallet's witness UTXOs.
func checkPSBT(raw []byte, w WalletSpec, approved quorum.Hash) error {
	p, err := btc.ParsePSBT(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	params, err := btc.Network(w.BTCParams)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	u, err := btc.UnsignedFromPSBT(p, params, w.PubKey)
	if err != nil {
		return fmt.Errorf("%w: psbt: %w", ErrPayload, err)
	}
	if ph := u.PayloadHash(); !bytes.Equal(ph[:], approved[:]) {
		return fmt.Errorf("%w: the PSBT is another transaction (%x) than the approved one (%x)", ErrPayload, ph, approved)
	}
	return nil
}

func (c *Checked) checkDecision(now time.Time) error {
	r, st := c.Bundle.Request, c.State
	preq := policy.Request{ID: r.ID, Withdrawal: r.Withdrawal, Initiator: r.Initiator, PayloadHash: r.PayloadHash, VSize: c.Transfer.VSize}
	ev := policy.Evaluate(st.Rules, st.Policy, preq, now)
	if !ev.Allowed {
		return fmt.Errorf("%w: %w", ErrPolicy, ev.Err())
	}
	tally := quorum.Count(st.Registry, quorum.Subject{RequestID: r.ID, PayloadHash: r.PayloadHash, Initiator: r.Initiator},
		quorum.Requirement{Required: ev.Required, Roles: ev.Roles}, r.Approvals, now)
	for _, ig := range tally.Ignored {
		switch ig.Reason {
		case quorum.ReasonExpired, quorum.ReasonDeviceRevoked, quorum.ReasonOperatorInactive, quorum.ReasonRoleNotAllowed:
			// Legitimate changes since approval: the approval stops counting.
		default:
			return fmt.Errorf("%w: approval %d (device %s) is invalid: %s", ErrApprovals, ig.Index, ig.DeviceID, ig.Reason)
		}
	}
	if !tally.Met() {
		return fmt.Errorf("%w: %w", ErrApprovals, tally.Err())
	}
	if r.Initiation == nil {
		return fmt.Errorf("%w: the request carries no initiation", ErrApprovals)
	}
	initiator, err := quorum.VerifyInitiation(st.Registry, *r.Initiation, r.ID, r.IntentHash(r.ID), now, false)
	if err != nil {
		return fmt.Errorf("%w: initiation: %w", ErrApprovals, err)
	}
	if initiator != r.Initiator {
		return fmt.Errorf("%w: the bundle names %q as initiator, the signature %q", ErrApprovals, r.Initiator, initiator)
	}
	if !now.Before(r.ExpiresAt) {
		return fmt.Errorf("%w: the request expired at %s (this machine's time %s)", ErrPolicy, r.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	d := policy.Authorize(st.Rules, st.Policy, st.Registry, preq, r.Approvals, now)
	if !d.Approved {
		return fmt.Errorf("%w: %w", ErrPolicy, d.Err())
	}
	if d.Route != policy.RouteCold {
		return fmt.Errorf("%w: routed %s; only cold requests are signed offline", ErrPolicy, d.Route)
	}
	c.Decision = d
	return nil
}

// VerifySigned is Verify for a signed bundle (what `custody cold import`
// checks before it submits, and what the ledger's cold.import re-checks):
// the bundle verifies, and its signed transaction is exactly the approved
// payload signed by the wallet's key (every Bitcoin input run through
// txscript with the payload's prevouts), with the hash it names.
func VerifySigned(b *Bundle, pinned string, now time.Time) (*Checked, error) {
	if b.Signed == nil {
		return nil, fmt.Errorf("%w: the bundle is not signed", ErrBundle)
	}
	c, err := Verify(b, pinned, now)
	if err != nil {
		return nil, err
	}
	if err := CheckSigned(c.Wallet, b.Request.Payload, b.Request.PayloadHash, b.Signed.Tx, b.Signed.TxHash); err != nil {
		return nil, err
	}
	return c, nil
}

// CheckSigned checks that raw is the unsigned payload (approved as
// payloadHash) signed by the wallet's key, hashing to txHash.
func CheckSigned(w WalletSpec, payload []byte, payloadHash quorum.Hash, raw []byte, txHash string) error {
	adapter, err := Adapter(w)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	u, err := adapter.ParseUnsigned(w.Network, payload)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	var s chains.Signed
	if sp, ok := u.(chains.SignedParser); ok {
		s, err = sp.ParseSigned(raw)
	} else {
		s, err = adapter.ParseSigned(w.Network, raw)
	}
	if err != nil {
		return fmt.Errorf("%w: signed transaction: %w", ErrPayload, err)
	}
	if err := s.Verify(payloadHash, w.PubKey); err != nil {
		return fmt.Errorf("%w: signed transaction: %w", ErrPayload, err)
	}
	if s.Hash() != txHash {
		return fmt.Errorf("%w: the signed transaction hashes to %s, the bundle names %s", ErrPayload, s.Hash(), txHash)
	}
	return nil
}
