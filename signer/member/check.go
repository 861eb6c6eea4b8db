package member

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/watermark"
)

// Claim is what the leader hands a member: which claim of the ledger to
// sign under, with whom, and what the leader believes is being signed.
// None of it is trusted: the member checks every field against its own
// ledger read and its own recomputation.
type Claim struct {
	// SessionID is the claim's 256-bit session ID (ledger Claim.SessionID).
	SessionID tss.SessionID
	// Index is the raft index of the claim entry: the fencing token.
	Index uint64
	// Signers is the t+1 (or more) committee members taking part.
	Signers []pki.NodeID
	// PayloadHash is the approved payload hash the leader read.
	PayloadHash quorum.Hash
	// Digest is the signing hash the leader computed, ClaimDigest of the
	// transaction's digests (for several, a Bitcoin spend of several
	// inputs, their watermark.DigestOf in input order); members refuse when
	// theirs differs, so a leader's disagreement is loud.
	Digest [32]byte
}

// plan is everything a member derived and checked from one ledger state.
type plan struct {
	wallet      string
	network     string
	info        tss.WalletInfo
	chain       chains.Chain
	unsigned    chains.Unsigned
	payloadHash [32]byte
	// digests are the signing hashes, one tss session each (InputSession),
	// in the order Assemble takes the signatures; digest is their
	// ClaimDigest, what the watermark reserves.
	digests [][32]byte
	digest  [32]byte
	keys    []watermark.Key
	// stored is the ledger's signed result of exactly this claim, if the
	// request is already signed (an idempotent repeat).
	stored []byte
}

// checkClaim runs the member's ledger-side checks, in order, on one state
// read at or after the claim index. Time is the member's own: now is its
// clock, and seen says when it first saw a governance change committed, so
// cooling-off and unlock delays run from then (SECURITY 29); the ledger's
// times are the leader's word.
func checkClaim(st *ledger.State, self pki.NodeID, wallets map[string]tss.WalletInfo, adapters map[string]chains.Chain, requestID string, c Claim,
	now time.Time, seen func(changeID string) time.Time) (*plan, error) {
	// 1. The claim is the ledger's current claim of the request (fencing).
	r := st.Requests[requestID]
	if r == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownRequest, requestID)
	}
	if st.Index < c.Index {
		return nil, fmt.Errorf("%w: ledger read at index %d, before the claim index %d", ErrLedgerRead, st.Index, c.Index)
	}
	if r.Claim == nil {
		return nil, fmt.Errorf("%w: request is %s and has no claim", ErrClaimMismatch, r.Status)
	}
	if r.Claim.Index != c.Index || r.Claim.SessionID != hex.EncodeToString(c.SessionID[:]) {
		return nil, fmt.Errorf("%w: ledger claim is session %s at index %d, presented %s at %d",
			ErrClaimMismatch, r.Claim.SessionID, r.Claim.Index, c.SessionID, c.Index)
	}
	p := &plan{wallet: r.Wallet, network: r.Network}
	switch {
	case r.Status == ledger.StatusClaimed:
	case r.Status.Signed() && r.Result != nil && r.Result.SessionID == r.Claim.SessionID:
		// Signed, broadcast or tracked on chain: the stored signature of
		// exactly this claim, re-checked below; never a new one.
		p.stored = slices.Clone(r.Result.Signed)
	default:
		return nil, fmt.Errorf("%w: request is %s", ErrClaimMismatch, r.Status)
	}

	// 2. The wallet: known locally from keygen, recorded in the ledger with
	// the same committee, and the signer set is a quorum of it with us in it.
	info, ok := wallets[r.Wallet]
	if !ok {
		return nil, fmt.Errorf("%w: wallet %q has no share on this member", ErrWallet, r.Wallet)
	}
	lw := st.Wallets[r.Wallet]
	if lw == nil {
		return nil, fmt.Errorf("%w: wallet %q is not in the ledger", ErrWallet, r.Wallet)
	}
	// A wallet signs only once its committee attested its key, and only
	// with the key this member's keygen produced.
	if !lw.Active() {
		return nil, fmt.Errorf("%w: wallet %q is %s", ErrWallet, r.Wallet, lw.Status)
	}
	if len(lw.PubKey) != 0 && !bytes.Equal(lw.PubKey, info.PubKey) {
		return nil, fmt.Errorf("%w: the ledger's key of wallet %q is not this member's", ErrWallet, r.Wallet)
	}
	if err := checkCommittee(lw, info, self, c.Signers); err != nil {
		return nil, err
	}
	if err := checkClaimSigners(r.Claim.Signers, c.Signers); err != nil {
		return nil, err
	}
	p.info = info

	// 3. The payload: parse the stored unsigned transaction with the
	// chain's adapter, recompute its hash and compare what it does with
	// what the request says.
	if err := checkPayload(r, lw, adapters, c, p); err != nil {
		return nil, err
	}

	// 4. Policy at this state, at this member's time, with delays counted
	// from when it first saw each change (locks, rule, allowlist,
	// cooling-off, fee cap, limits, velocity: policy never counts this
	// request's own recorded spend twice); it also gives the approval
	// requirement.
	rules := st.ActivePolicy()
	if rules == nil {
		return nil, fmt.Errorf("%w: no rules in force", ErrPolicy)
	}
	pst := st.Policy.AsSeen(rules, seen)
	preq := r.PolicyRequest()
	preq.PayloadHash = p.payloadHash
	// The virtual size for the fee-rate cap is this member's own reading
	// of the payload (the ledger records none: it does not parse chains).
	preq.VSize = p.unsigned.Transfer().VSize
	ev := policy.Evaluate(rules, pst, preq, now)
	if !ev.Allowed {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, ev.Err())
	}

	// 5. The approvals: every stored approval verifies, and enough distinct,
	// currently enrolled operators approved exactly the recomputed payload
	// hash, under the registry of this state. The stored decision is ignored.
	tally := quorum.Count(st.Registry, quorum.Subject{RequestID: r.ID, PayloadHash: p.payloadHash, Initiator: r.Initiator},
		quorum.Requirement{Required: ev.Required, Roles: ev.Roles}, r.Approvals, now)
	for _, ig := range tally.Ignored {
		switch ig.Reason {
		case quorum.ReasonExpired, quorum.ReasonDeviceRevoked, quorum.ReasonOperatorInactive, quorum.ReasonRoleNotAllowed:
			// Legitimate changes since approval: the approval stops counting.
		default:
			return nil, fmt.Errorf("%w: stored approval %d (device %s) is invalid: %s", ErrQuorum, ig.Index, ig.DeviceID, ig.Reason)
		}
	}
	if !tally.Met() {
		return nil, fmt.Errorf("%w: %w", ErrQuorum, tally.Err())
	}
	// The initiator is whoever signed the create (SECURITY 31), checked
	// here against this state's registry: never the leader's word, and
	// never counted as an approver (the count above
	// excluded the ledger's initiator, which must be the signer).
	if r.Initiation == nil {
		return nil, fmt.Errorf("%w: the request carries no initiation", ErrInitiation)
	}
	initiator, err := quorum.VerifyInitiation(st.Registry, *r.Initiation, r.ID, r.IntentHash(r.ID), now, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInitiation, err)
	}
	if initiator != r.Initiator {
		return nil, fmt.Errorf("%w: the ledger names %q as initiator, the signature %q", ErrInitiation, r.Initiator, initiator)
	}

	// Policy and approvals as a whole, expiry, hot route.
	if !now.Before(r.ExpiresAt) {
		return nil, fmt.Errorf("%w: request expired at %s (this member's time %s)", ErrPolicy, r.ExpiresAt, now.UTC().Format(time.RFC3339))
	}
	d := policy.Authorize(rules, pst, st.Registry, preq, r.Approvals, now)
	if !d.Approved {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, d.Err())
	}
	if d.Route != policy.RouteHot {
		return nil, fmt.Errorf("%w: routed %s; only hot requests are signed online", ErrPolicy, d.Route)
	}

	// 6. The digest the leader expects is the one recomputed here.
	if c.Digest != p.digest {
		return nil, fmt.Errorf("%w: the leader's digest %x differs from the recomputed signing hash %x (of %d digests)", ErrPayload, c.Digest, p.digest, len(p.digests))
	}

	// 7. The claim is the node set's, not only this replica's: a checkpoint
	// quorum of the node set attested the history it was granted on (a
	// leader can feed one follower a log the others never see; the others
	// do not attest it). Checked last: every check above judges this
	// replica on its own terms first.
	if p.stored == nil {
		if err := r.VerifyAttestation(st.Registry.ClusterID, st.GenesisHash, st.Nodes); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotAttested, err)
		}
	}
	return p, nil
}

func checkCommittee(lw *ledger.Wallet, info tss.WalletInfo, self pki.NodeID, signers []pki.NodeID) error {
	local := make([]pki.NodeID, len(info.Members))
	for i, m := range info.Members {
		local[i] = m.Node
	}
	ledgerCommittee := slices.Clone(lw.Committee)
	slices.Sort(local)
	slices.Sort(ledgerCommittee)
	if !slices.Equal(local, ledgerCommittee) || lw.Threshold != info.Threshold {
		return fmt.Errorf("%w: ledger committee %v (t=%d) differs from the keygen committee %v (t=%d)",
			ErrWallet, ledgerCommittee, lw.Threshold, local, info.Threshold)
	}
	if len(signers) < info.Threshold+1 {
		return fmt.Errorf("%w: %d signers, the wallet needs %d", ErrWallet, len(signers), info.Threshold+1)
	}
	seen := map[pki.NodeID]bool{}
	for _, s := range signers {
		if seen[s] || !slices.Contains(local, s) {
			return fmt.Errorf("%w: signer %q is repeated or not in the committee", ErrWallet, s)
		}
		seen[s] = true
	}
	if !seen[self] {
		return fmt.Errorf("%w: this member (%s) is not among the signers", ErrWallet, self)
	}
	return nil
}

// checkClaimSigners compares the presented signer set with the one the
// ledger recorded in the claim, so every member runs the session with the
// same, ledger-fixed set (a leader cannot hand members different sets).
func checkClaimSigners(recorded, presented []pki.NodeID) error {
	got := slices.Clone(presented)
	slices.Sort(got)
	want := slices.Clone(recorded)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%w: signers %v, the ledger's claim records %v", ErrClaimMismatch, got, want)
	}
	return nil
}

// checkPayload is step 3 for any chain: the adapter parses the stored
// transaction for the request's network; its payload hash must be the one
// the ledger recorded and the claim presents, and what it does (destination,
// asset, amount, nonce or outpoints) must be what the request says.
func checkPayload(r *ledger.Request, lw *ledger.Wallet, adapters map[string]chains.Chain, c Claim, p *plan) error {
	if lw.Chain != r.Chain || lw.Network != r.Network {
		return fmt.Errorf("%w: request on %s/%s, wallet on %s/%s", ErrPayload, r.Chain, r.Network, lw.Chain, lw.Network)
	}
	chain, ok := adapters[r.Chain]
	if !ok {
		return fmt.Errorf("%w: this member signs no %s transactions", ErrPayload, r.Chain)
	}
	u, err := chain.ParseUnsigned(r.Network, r.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	ph := u.PayloadHash()
	if ph != r.PayloadHash || !bytes.Equal(ph[:], c.PayloadHash[:]) {
		return fmt.Errorf("%w: stored tx hashes to %x; ledger records %x, claim presents %x", ErrPayload, ph, r.PayloadHash, c.PayloadHash)
	}
	want := chains.Transfer{To: r.To, Asset: r.Asset, Amount: r.Amount, MaxFee: r.MaxFee, Nonce: r.Nonce, Outpoints: r.Outpoints}
	if err := chains.CheckTransfer(want, u.Transfer()); err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	digests := u.Digests()
	if len(digests) == 0 {
		return fmt.Errorf("%w: the adapter computed no signing digest", ErrPayload)
	}
	p.chain, p.unsigned, p.payloadHash = chain, u, ph
	p.digests, p.digest = digests, ClaimDigest(digests)
	for _, k := range u.SpendKeys(r.Wallet) {
		p.keys = append(p.keys, watermark.Key(k))
	}
	return nil
}
