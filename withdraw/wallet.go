package withdraw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// KeygenMember is a committee member as the leader reaches it for a new
// wallet: *member.Member in-process, *noderpc.RemoteMember over the node
// RPC.
type KeygenMember interface {
	Self() pki.NodeID
	Keygen(ctx context.Context, walletID string, session tss.SessionID) (*member.KeygenResult, error)
	TestSign(ctx context.Context, walletID string, pubkey []byte, session tss.SessionID, signers []pki.NodeID) ([]byte, error)
}

var _ KeygenMember = (*member.Member)(nil)

// WalletLedger is what wallet creation needs of the leader's ledger;
// *ledger.Store implements it.
type WalletLedger interface {
	ReadLinearizable(ctx context.Context, fn func(*ledger.State) error) error
	Submit(ctx context.Context, actor string, cmd ledger.Command) (ledger.Outcome, error)
}

var _ WalletLedger = (*ledger.Store)(nil)

// ErrKeygen: a wallet's keygen did not produce one key attested by the
// whole committee and test-signed by two different t+1 subsets. The
// wallet stays in keygen; CreateWallet may be run again (a new session).
var ErrKeygen = errors.New("withdraw: wallet keygen failed")

// ErrWalletStatus: the wallet is not waiting for its keygen (unknown, or
// a wallet.set wallet).
var ErrWalletStatus = errors.New("withdraw: wallet is not in keygen")

// WalletConfig wires a WalletCreator.
type WalletConfig struct {
	// Ledger is the leader's ledger store.
	Ledger WalletLedger
	// Actor is this node's principal on WalletKeyed ("node:n1").
	Actor string
	// Members are the committee members reachable from here (this node's
	// own in-process, the others over the node RPC).
	Members []KeygenMember
}

// WalletCreator runs the leader's side of creating admin-approved wallets
// (ledger.WalletCreate): keygen on every committee member, the two-subset
// test signature, then ledger.WalletKeyed with every member's attestation.
// It decides nothing: each member runs the keygen only for a wallet its
// own ledger holds in keygen, and the ledger accepts the key only with
// every committee member's attestation.
type WalletCreator struct {
	cfg     WalletConfig
	members map[pki.NodeID]KeygenMember
	mu      sync.Mutex // one wallet creation at a time
}

// NewWalletCreator returns a WalletCreator.
func NewWalletCreator(cfg WalletConfig) (*WalletCreator, error) {
	if cfg.Ledger == nil || cfg.Actor == "" || len(cfg.Members) == 0 {
		return nil, errors.New("withdraw: wallet creation needs a ledger, an actor and the committee members")
	}
	c := &WalletCreator{cfg: cfg, members: map[pki.NodeID]KeygenMember{}}
	for _, m := range cfg.Members {
		c.members[m.Self()] = m
	}
	return c, nil
}

// Pending lists the wallets in keygen (sorted): the daemon's leader loop
// calls CreateWallet for each.
func (c *WalletCreator) Pending(ctx context.Context) ([]string, error) {
	var out []string
	err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		for id, w := range st.Wallets {
			if w.Status == ledger.WalletKeygen {
				out = append(out, id)
			}
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// CreateWallet creates the key of walletID, a wallet the admins approved
// (in keygen in the ledger), and returns its public key (33-byte
// compressed secp256k1): under a fresh session every committee member runs
// the keygen; they must return one key; two different t+1 subsets
// test-sign WalletTestDigest and each signature is verified; then
// WalletKeyed carries every member's attestation. A wallet already active
// returns its ledger key. Any failure leaves the wallet in keygen
// (ErrKeygen): run CreateWallet again, which uses a new session.
func (c *WalletCreator) CreateWallet(ctx context.Context, walletID string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, err := c.readWallet(ctx, walletID)
	if err != nil {
		return nil, err
	}
	if w.Status == ledger.WalletActive {
		return w.PubKey, nil
	}
	var ms []KeygenMember
	for _, id := range w.Committee {
		m, ok := c.members[id]
		if !ok {
			return nil, fmt.Errorf("%w: committee member %s of %q is not reachable", ErrKeygen, id, walletID)
		}
		ms = append(ms, m)
	}

	session := tss.NewSessionID()
	results, err := all(ctx, ms, func(ctx context.Context, m KeygenMember) (*member.KeygenResult, error) {
		return m.Keygen(ctx, walletID, session)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %q session %s: %w", ErrKeygen, walletID, session, err)
	}
	pub := results[0].PubKey
	var atts []ledger.CheckpointSig
	for i, r := range results {
		if r == nil || !bytes.Equal(r.PubKey, pub) || r.Wallet != walletID || r.Session != session {
			return nil, fmt.Errorf("%w: %q: members disagree on the key (%s)", ErrKeygen, walletID, ms[i].Self())
		}
		if r.Attestation.Node != ms[i].Self() {
			return nil, fmt.Errorf("%w: %q: %s attested as %s", ErrKeygen, walletID, ms[i].Self(), r.Attestation.Node)
		}
		atts = append(atts, r.Attestation)
	}

	// SECURITY 8: two different t+1 subsets sign before the key is
	// recorded (and any address published).
	if err := c.testSign(ctx, walletID, pub, w.Committee, w.Threshold); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeygen, err)
	}

	if _, err := c.cfg.Ledger.Submit(ctx, c.cfg.Actor, ledger.WalletKeyed{Wallet: walletID, PubKey: pub, Session: session.String(), Attestations: atts}); err != nil {
		return nil, fmt.Errorf("%w: %q: record the key: %w", ErrKeygen, walletID, err)
	}
	return slices.Clone(pub), nil
}

// testSign has two different t+1 subsets of committee test-sign
// WalletTestDigest of pub under fresh sessions, and verifies every
// signature.
func (c *WalletCreator) testSign(ctx context.Context, walletID string, pub []byte, committee []pki.NodeID, t int) error {
	for _, sub := range testSubsets(committee, t) {
		var signers []KeygenMember
		for _, id := range sub {
			m, ok := c.members[id]
			if !ok {
				return fmt.Errorf("%q: test signer %s is not reachable", walletID, id)
			}
			signers = append(signers, m)
		}
		ts := tss.NewSessionID()
		sigs, err := all(ctx, signers, func(ctx context.Context, m KeygenMember) ([]byte, error) {
			return m.TestSign(ctx, walletID, pub, ts, sub)
		})
		if err != nil {
			return fmt.Errorf("%q test signature by %v: %w", walletID, sub, err)
		}
		for i, s := range sigs {
			if err := member.VerifyTestSignature(walletID, pub, s); err != nil {
				return fmt.Errorf("%q test signature from %s: %w", walletID, sub[i], err)
			}
		}
	}
	return nil
}

func (c *WalletCreator) readWallet(ctx context.Context, walletID string) (*ledger.Wallet, error) {
	var w *ledger.Wallet
	err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		lw := st.Wallets[walletID]
		if lw == nil || (lw.Status != ledger.WalletKeygen && lw.Status != ledger.WalletActive) {
			return fmt.Errorf("%w: %q", ErrWalletStatus, walletID)
		}
		w = lw.Clone()
		return nil
	})
	return w, err
}

// testSubsets returns two different t+1 subsets of the (sorted) committee:
// its first and its last t+1 members (one when n == t+1).
func testSubsets(committee []pki.NodeID, t int) [][]pki.NodeID {
	first := slices.Clone(committee[:t+1])
	last := slices.Clone(committee[len(committee)-t-1:])
	if slices.Equal(first, last) {
		return [][]pki.NodeID{first}
	}
	return [][]pki.NodeID{first, last}
}

// all runs fn on every member at once (a tss session needs them all) and
// returns their answers in order; the first failure cancels the others.
func all[T any](ctx context.Context, ms []KeygenMember, fn func(context.Context, KeygenMember) (T, error)) ([]T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]T, len(ms))
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = fn(ctx, m)
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
