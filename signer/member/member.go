package member

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/watermark"
)

// Engine runs tss keygen and signing sessions; *tss.Engine implements it.
// Sign must not use the share after it returns: the member wipes it then.
type Engine interface {
	Self() pki.NodeID
	Sign(ctx context.Context, share *tss.Share, p tss.SignParams) (*tss.Signature, error)
	Keygen(ctx context.Context, p tss.KeygenParams, pre *keygen.LocalPreParams) (*tss.Share, error)
	Reshare(ctx context.Context, p tss.ReshareParams, old *tss.Share, pre *keygen.LocalPreParams) (*tss.Share, error)
}

// ShareStore opens and stores this node's sealed shares; *shares.Store
// implements it. Get returns an error wrapping shares.ErrNotFound for a
// share it does not hold; Put never overwrites; Delete removes a share a
// committed reshare retired (RetireOld).
type ShareStore interface {
	Get(wallet string, party pki.NodeID, shareID []byte) (*tss.Share, error)
	Put(share *tss.Share) error
	Delete(wallet string, party pki.NodeID, shareID []byte) error
}

var (
	_ Engine     = (*tss.Engine)(nil)
	_ ShareStore = (*shares.Store)(nil)
)

// Config wires a Member to its node's components.
type Config struct {
	// Engine is this node's tss engine; its Self is the member's identity.
	Engine Engine
	// Shares opens this node's shares (sealed by its HSM).
	Shares ShareStore
	// Watermark is this node's own high-water mark (opened once at start).
	Watermark *watermark.Store
	// Seen is this node's own record of when it first saw each governance
	// change (opened once at start, beside the watermark).
	Seen *Seen
	// Ledger is this node's ledger view (LocalLedger on any node).
	Ledger Ledger
	// Chains are the chain adapters this member signs for, by the ledger's
	// chain name ({"eth": eth.NewChain(...)}); each knows its networks, so a
	// transaction for another network is never signed.
	Chains map[string]chains.Chain
	// Logger receives refusals and signatures (nothing secret); nil discards.
	Logger *slog.Logger
	// Now is this member's own clock (default time.Now). Policy, approval
	// expiries and request expiries are judged at this time, with delays
	// counted from when this member first saw each change (Seen), so a
	// leader stamping an old or frozen time cannot skip a cooling-off or an
	// unlock delay; and a member refuses a ledger clock running ahead of its
	// own by more than MaxClockSkew (a leader stamping a future time).
	Now func() time.Time
	// MaxClockSkew bounds how far the ledger clock may run ahead of Now
	// (default DefaultMaxClockSkew).
	MaxClockSkew time.Duration
	// AttestWait bounds how long a member waits for the claim it is asked
	// to sign to be attested by the node set (default DefaultAttestWait);
	// the context's deadline bounds it too.
	AttestWait time.Duration
	// PreParams hands out fresh pre-params for keygens (a
	// *preparams.Pool); nil refuses Keygen.
	PreParams PreParams
	// NodeKey is this node's key as the node set pins it (its
	// certificate's key, or the same key in its HSM): the member attests
	// each wallet key its keygen produced with it. nil refuses Keygen.
	NodeKey crypto.Signer
}

// DefaultMaxClockSkew is the default Config.MaxClockSkew.
const DefaultMaxClockSkew = 2 * time.Minute

// DefaultAttestWait is the default Config.AttestWait.
const DefaultAttestWait = 30 * time.Second

// Signed is a released signature: verified against the wallet key, low-S,
// assembled into the transaction the operators approved.
type Signed struct {
	RequestID string
	SessionID tss.SessionID
	// Raw is the signed transaction (eth: what eth_sendRawTransaction takes).
	Raw []byte
	// TxHash is the transaction hash, 0x-prefixed hex.
	TxHash string
	// Signature is r || s || v (v = recovery id 0/1), one 65-byte signature
	// per digest in digest order (a Bitcoin spend: per input), empty when
	// the result was read back from the ledger.
	Signature []byte
}

// Member is one committee member's signing path (DESIGN.md step 5). It is
// safe for concurrent use.
type Member struct {
	cfg  Config
	self pki.NodeID
	log  *slog.Logger

	kgMu sync.Mutex // one keygen at a time

	mu      sync.Mutex
	wallets map[string]tss.WalletInfo
	// keyed are the wallets registered with the key the ledger recorded
	// (AddWallet, RetireOld): a keygen finishing late cannot replace them.
	keyed map[string]bool
	done  map[string]*Signed // by request ID + session, results this member released

	// reshared holds, per wallet in resharing, the new committee's
	// description of this member's new share until RetireOld adopts it;
	// leftReshare the session of a reshare this member (old only) finished.
	reshared    map[string]tss.WalletInfo
	leftReshare map[string]tss.SessionID
}

// New checks cfg and returns a member with no wallets yet.
func New(cfg Config) (*Member, error) {
	if cfg.Engine == nil || cfg.Shares == nil || cfg.Watermark == nil || cfg.Seen == nil || cfg.Ledger == nil || len(cfg.Chains) == 0 {
		return nil, errors.New("member: needs an engine, a share store, a watermark, a first-seen record, a ledger and at least one chain")
	}
	for name, c := range cfg.Chains {
		if c == nil || c.Name() != name {
			return nil, fmt.Errorf("member: chain adapter under %q is not that chain's", name)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	if cfg.AttestWait <= 0 {
		cfg.AttestWait = DefaultAttestWait
	}
	return &Member{cfg: cfg, self: cfg.Engine.Self(), log: log,
		wallets: map[string]tss.WalletInfo{}, keyed: map[string]bool{}, done: map[string]*Signed{},
		reshared: map[string]tss.WalletInfo{}, leftReshare: map[string]tss.SessionID{}}, nil
}

// Self returns the member's node identity.
func (m *Member) Self() pki.NodeID { return m.self }

// AddWallet registers a wallet this member holds a share of, with the public
// description its keygen produced. The wallet key used to verify every
// signature comes from here, never from the ledger (which does not record it).
func (m *Member) AddWallet(info tss.WalletInfo) error {
	if !slices.ContainsFunc(info.Members, func(x tss.Party) bool { return x.Node == m.self }) {
		return fmt.Errorf("member: %s is not a member of wallet %q", m.self, info.Wallet)
	}
	if _, err := btcec.ParsePubKey(info.PubKey); err != nil {
		return fmt.Errorf("member: wallet %q key: %w", info.Wallet, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// A registration from a keygen of this member (registerKeygen) is
	// replaced: the caller registers the key the ledger recorded.
	if old, ok := m.wallets[info.Wallet]; ok && m.keyed[info.Wallet] && string(old.PubKey) != string(info.PubKey) {
		return fmt.Errorf("member: wallet %q already registered with another key", info.Wallet)
	}
	m.wallets[info.Wallet] = info
	m.keyed[info.Wallet] = true
	return nil
}

// seenAt returns the lookup checkClaim uses for first-seen times, and the
// map it fills with changes this member sees for the first time (at now),
// to be recorded once the ledger read is over.
func (m *Member) seenAt(now time.Time) (func(string) time.Time, map[string]time.Time) {
	unseen := map[string]time.Time{}
	return func(id string) time.Time {
		if t, ok := m.cfg.Seen.Lookup(id); ok {
			return t
		}
		unseen[id] = now
		return now
	}, unseen
}

// Observe records, by this member's own clock, the first sight of every
// time-sensitive governance change (allowlist additions, unlocks) in its
// ledger's current state, so their delays start as early as this member can
// vouch for. The daemon calls it as the ledger applies entries; SignClaimed
// records what it sees too.
func (m *Member) Observe(ctx context.Context) error {
	now := m.cfg.Now()
	seen, unseen := m.seenAt(now)
	if err := m.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		for _, id := range st.Policy.SeenKeys() {
			seen(id)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("member: observe: %w", err)
	}
	return m.cfg.Seen.Record(unseen)
}

func (m *Member) refuse(requestID string, err error) error {
	m.log.Warn("member: refused to sign", "member", m.self, "request", requestID, "err", err)
	return &RefusalError{Member: m.self, RequestID: requestID, Err: err}
}

// SignClaimed runs the member's side of a claimed hot withdrawal: every check
// of docs/member.md on its own ledger read, then the watermark reservation
// (every digest and every nonce or outpoint the transaction spends), one
// tss session per digest bound to claim.SessionID (InputSession), the
// verification of the assembled transaction and the watermark completion. Any failure returns a
// *RefusalError and releases nothing; checks that fail before the
// reservation leave no trace in the watermark and start no session.
//
// Asking again for a claim this member already signed returns the same
// result (from memory, or from the ledger once the result is committed).
func (m *Member) SignClaimed(ctx context.Context, requestID string, c Claim) (*Signed, error) {
	if requestID == "" || c.Index == 0 || c.SessionID == (tss.SessionID{}) {
		return nil, m.refuse(requestID, fmt.Errorf("%w: request ID, claim index and session ID are required", ErrBadClaim))
	}
	key := requestID + "/" + c.SessionID.String()
	m.mu.Lock()
	prev := m.done[key]
	wallets := make(map[string]tss.WalletInfo, len(m.wallets))
	for k, v := range m.wallets {
		wallets[k] = v
	}
	m.mu.Unlock()

	var p *plan
	// The claim must be attested by the node set before anything else
	// counts; the attestations come in right after the claim, so a refusal
	// for that reason alone is retried until AttestWait.
	attestBy := time.Now().Add(m.cfg.AttestWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		now := m.cfg.Now()
		seen, unseen := m.seenAt(now)
		err = m.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
			if ahead := st.Clock.Sub(now); ahead > m.cfg.MaxClockSkew {
				return fmt.Errorf("%w: ledger clock %s is %s ahead of this member's clock (allowed %s)",
					ErrLedgerClock, st.Clock.Format(time.RFC3339), ahead.Round(time.Second), m.cfg.MaxClockSkew)
			}
			var err error
			p, err = checkClaim(st, m.self, wallets, m.cfg.Chains, requestID, c, now, seen)
			return err
		})
		// Changes seen for the first time are recorded whatever the
		// outcome, so their delays start now and not at some later attempt.
		if rerr := m.cfg.Seen.Record(unseen); rerr != nil {
			return nil, m.refuse(requestID, fmt.Errorf("%w: %w", ErrSeen, rerr))
		}
		if !errors.Is(err, ErrNotAttested) || time.Now().After(attestBy) {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	if err != nil {
		if !isRefusal(err) {
			err = fmt.Errorf("%w: %w", ErrLedgerRead, err)
		}
		return nil, m.refuse(requestID, err)
	}
	if prev != nil && p.stored == nil {
		return prev, nil
	}
	if p.stored != nil {
		return m.fromLedger(requestID, c, p, prev)
	}

	// Reserve before unsealing anything or sending any tss message.
	ticket, err := m.cfg.Watermark.Reserve(watermark.Intent{
		RequestID:   requestID,
		Digest:      p.digest,
		PayloadHash: p.payloadHash,
		Keys:        p.keys,
	})
	if err != nil {
		return nil, m.refuse(requestID, fmt.Errorf("%w: %w", ErrWatermark, err))
	}

	sigs, sigBytes, err := m.signDigests(ctx, c, p)
	if err != nil {
		return nil, m.refuse(requestID, err)
	}
	// Invariant 7: every signature is checked again as the chain's
	// transaction (for Bitcoin: each input through btcd's script engine
	// against the output it spends) before anything is released. A claim
	// is signed in full or not at all.
	signedTx, err := p.unsigned.Assemble(p.info.PubKey, sigs)
	if err != nil {
		return nil, m.refuse(requestID, fmt.Errorf("%w: %w", ErrSignature, err))
	}
	if err := signedTx.Verify(p.payloadHash, p.info.PubKey); err != nil {
		return nil, m.refuse(requestID, fmt.Errorf("%w: %w", ErrSignature, err))
	}
	if err := m.cfg.Watermark.Complete(ticket, sha256.Sum256(sigBytes)); err != nil {
		// The reservation was fsynced before signing, so the signature is
		// for the reserved message and may be released; the store is failed
		// and the node must reopen it before signing again.
		m.log.Error("member: watermark complete failed; reopen the store", "member", m.self, "request", requestID, "err", err)
	}
	out := &Signed{RequestID: requestID, SessionID: c.SessionID, Raw: signedTx.Bytes(), TxHash: signedTx.Hash(), Signature: sigBytes}
	m.mu.Lock()
	m.done[key] = out
	m.mu.Unlock()
	m.log.Info("member: signed", "member", m.self, "request", requestID, "session", c.SessionID.String(), "tx", out.TxHash)
	return out, nil
}

// signDigests runs one tss session per digest of p, in order, digest i
// under InputSession(c.SessionID, i), each with a share unsealed for that
// session alone and wiped as soon as the engine returns. It returns the
// signatures in digest order and their r || s || v forms concatenated. The
// first failure ends it: the signatures of earlier digests are dropped
// (under SIGHASH_ALL each commits to the whole transaction, which needs
// them all), and a re-claim signs the same digests again in new sessions.
func (m *Member) signDigests(ctx context.Context, c Claim, p *plan) ([]chains.Signature, []byte, error) {
	shareID, ok := memberKey(p.info, m.self)
	if !ok {
		return nil, nil, fmt.Errorf("%w: no share ID for %s", ErrShare, m.self)
	}
	sigs := make([]chains.Signature, 0, len(p.digests))
	sigBytes := make([]byte, 0, 65*len(p.digests))
	for i, d := range p.digests {
		share, err := m.cfg.Shares.Get(p.wallet, m.self, shareID)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrShare, err)
		}
		if string(share.PubKey) != string(p.info.PubKey) {
			share.Wipe()
			return nil, nil, fmt.Errorf("%w: the unsealed share is for another key", ErrShare)
		}
		sid := InputSession(c.SessionID, i)
		sig, err := m.cfg.Engine.Sign(ctx, share, tss.SignParams{Session: sid, Signers: slices.Clone(c.Signers), Digest: d})
		// Sign returns only once the engine is done with the share (success
		// or failure): zero its secrets now (invariant 4).
		share.Wipe()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: digest %d of %d (session %s): %w", ErrSession, i+1, len(p.digests), sid, err)
		}
		// Invariant 7: under the key from keygen; low-S and the digest are
		// checked by Assemble and Verify.
		if string(sig.PubKey) != string(p.info.PubKey) {
			return nil, nil, fmt.Errorf("%w: digest %d of %d signed under another key", ErrSignature, i+1, len(p.digests))
		}
		sigs = append(sigs, chains.Signature{R: sig.R, S: sig.S, V: sig.V})
		sigBytes = append(sigBytes, sig.Bytes65()...)
	}
	return sigs, sigBytes, nil
}

// fromLedger returns the committed result of this very claim after checking
// it is the approved transaction signed by the wallet.
func (m *Member) fromLedger(requestID string, c Claim, p *plan, prev *Signed) (*Signed, error) {
	var st chains.Signed
	var err error
	if sp, ok := p.unsigned.(chains.SignedParser); ok {
		// Bitcoin: only the payload carries the spent amounts the
		// signatures commit to.
		st, err = sp.ParseSigned(p.stored)
	} else {
		st, err = p.chain.ParseSigned(p.network, p.stored)
	}
	if err != nil {
		return nil, m.refuse(requestID, fmt.Errorf("%w: stored result: %w", ErrSignature, err))
	}
	if err := st.Verify(p.payloadHash, p.info.PubKey); err != nil {
		return nil, m.refuse(requestID, fmt.Errorf("%w: stored result: %w", ErrSignature, err))
	}
	if prev != nil && string(prev.Raw) == string(p.stored) {
		return prev, nil
	}
	return &Signed{RequestID: requestID, SessionID: c.SessionID, Raw: st.Bytes(), TxHash: st.Hash()}, nil
}

func memberKey(info tss.WalletInfo, self pki.NodeID) ([]byte, bool) {
	for _, x := range info.Members {
		if x.Node == self {
			return x.Key, true
		}
	}
	return nil, false
}

func isRefusal(err error) bool {
	for _, s := range []error{ErrUnknownRequest, ErrClaimMismatch, ErrWallet, ErrQuorum, ErrInitiation, ErrPolicy, ErrPayload, ErrLedgerRead, ErrLedgerClock, ErrNotAttested} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// PolicyReady reports whether policy, as this member sees it, allows r at
// time at: the rules in force and the policy state st records, with every
// allowlist cooling-off and unlock delay counted from when this member
// first saw the change (a change it has not seen yet counts from at). It
// records nothing. The leader asks its own member before it claims a hot
// request, at a time a little in the past, so that members which saw a
// change slightly later than it did accept the claim too: a claim every
// member would refuse for a delay still running only burns a signing
// attempt.
func (m *Member) PolicyReady(st *ledger.State, r *ledger.Request, at time.Time) error {
	rules := st.ActivePolicy()
	if rules == nil {
		return fmt.Errorf("%w: no rules in force", ErrPolicy)
	}
	seen := func(id string) time.Time {
		if t, ok := m.cfg.Seen.Lookup(id); ok {
			return t
		}
		return at
	}
	ev := policy.Evaluate(rules, st.Policy.AsSeen(rules, seen), r.PolicyRequest(), at)
	if !ev.Allowed {
		return fmt.Errorf("%w: %w", ErrPolicy, ev.Err())
	}
	return nil
}
