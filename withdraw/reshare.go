package withdraw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// ReshareMember is a member the leader reaches for a reshare:
// *member.Member in-process, *noderpc.RemoteMember over the node RPC.
// WalletConfig.Members that implement it take part in reshares.
type ReshareMember interface {
	KeygenMember
	Reshare(ctx context.Context, walletID string, session tss.SessionID, oldSigners []pki.NodeID, oldMembers []tss.Party) (*member.ReshareResult, error)
	WalletInfo(ctx context.Context, walletID string) (tss.WalletInfo, error)
}

var _ ReshareMember = (*member.Member)(nil)

// ErrReshare: a wallet's reshare did not produce the wallet's key attested
// by the whole new committee and test-signed by two different t'+1 subsets
// of it. The wallet stays in resharing, its old committee signing; Reshare
// may be run again (a new session).
var ErrReshare = errors.New("withdraw: wallet reshare failed")

// PendingReshares lists the wallets in resharing (sorted): the daemon's
// leader loop calls Reshare for each.
func (c *WalletCreator) PendingReshares(ctx context.Context) ([]string, error) {
	var out []string
	err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		for id, w := range st.Wallets {
			if w.Status == ledger.WalletResharing {
				out = append(out, id)
			}
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// Reshare moves walletID's key to the committee the admins approved
// (ledger.WalletReshare; the wallet is resharing) and returns the key:
// t+1 old members (those also in the new committee first) describe the
// old committee and must agree; under a fresh session they and every new
// member run the two-phase reshare concurrently (a node in both committees
// once); every party must report the ledger's key and every new member
// attest it; two different t'+1 subsets of the new committee test-sign
// WalletTestDigest and each signature is verified; then WalletReshared
// names the session and carries every new member's attestation of it
// (the ledger records it: Wallet.KeySession). Any failure leaves the wallet
// resharing with its old committee (ErrReshare); run Reshare again, which
// uses a new session. Members delete their old shares themselves
// (member.RetireOld) once their ledgers show the new committee.
func (c *WalletCreator) Reshare(ctx context.Context, walletID string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var w *ledger.Wallet
	var spec ledger.ReshareSpec
	err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		lw := st.Wallets[walletID]
		if lw == nil || lw.Status != ledger.WalletResharing || lw.Reshare == nil {
			return fmt.Errorf("%w: %q is not resharing", ErrWalletStatus, walletID)
		}
		w = lw.Clone()
		spec = *lw.Reshare
		spec.NewCommittee = slices.Clone(lw.Reshare.NewCommittee)
		return nil
	})
	if err != nil {
		return nil, err
	}
	reach := func(id pki.NodeID) (ReshareMember, error) {
		m, ok := c.members[id].(ReshareMember)
		if !ok {
			return nil, fmt.Errorf("%w: member %s of %q is not reachable for a reshare", ErrReshare, id, walletID)
		}
		return m, nil
	}

	// Old signers: t+1 reachable old members, those staying first.
	var candidates []pki.NodeID
	for _, stay := range []bool{true, false} {
		for _, id := range w.Committee {
			if _, ok := c.members[id].(ReshareMember); ok && slices.Contains(spec.NewCommittee, id) == stay {
				candidates = append(candidates, id)
			}
		}
	}
	if len(candidates) < w.Threshold+1 {
		return nil, fmt.Errorf("%w: %q: %d of the old committee reachable, %d needed", ErrReshare, walletID, len(candidates), w.Threshold+1)
	}
	oldSigners := slices.Clone(candidates[:w.Threshold+1])
	slices.Sort(oldSigners)
	var old tss.WalletInfo
	for i, id := range oldSigners {
		m, _ := reach(id)
		info, err := m.WalletInfo(ctx, walletID)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %s's description of the old committee: %w", ErrReshare, walletID, id, err)
		}
		if !bytes.Equal(info.PubKey, w.PubKey) || (i > 0 && !sameParties(info.Members, old.Members)) {
			return nil, fmt.Errorf("%w: %q: old members disagree on the old committee (%s)", ErrReshare, walletID, id)
		}
		old = info
	}

	parties := slices.Clone(oldSigners)
	for _, id := range spec.NewCommittee {
		if !slices.Contains(parties, id) {
			parties = append(parties, id)
		}
	}
	var ms []KeygenMember
	for _, id := range parties {
		m, err := reach(id)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	session := tss.NewSessionID()
	results, err := all(ctx, ms, func(ctx context.Context, m KeygenMember) (*member.ReshareResult, error) {
		return m.(ReshareMember).Reshare(ctx, walletID, session, oldSigners, old.Members)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %q session %s: %w", ErrReshare, walletID, session, err)
	}
	var atts []ledger.CheckpointSig
	for i, r := range results {
		id := parties[i]
		if r == nil || !bytes.Equal(r.PubKey, w.PubKey) || r.Wallet != walletID || r.Session != session {
			return nil, fmt.Errorf("%w: %q: %s did not reshare the wallet's key", ErrReshare, walletID, id)
		}
		if slices.Contains(spec.NewCommittee, id) {
			if r.Attestation.Node != id {
				return nil, fmt.Errorf("%w: %q: %s attested as %q", ErrReshare, walletID, id, r.Attestation.Node)
			}
			atts = append(atts, r.Attestation)
		}
	}
	if err := c.testSign(ctx, walletID, w.PubKey, spec.NewCommittee, spec.NewThreshold); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReshare, err)
	}
	if _, err := c.cfg.Ledger.Submit(ctx, c.cfg.Actor, ledger.WalletReshared{Wallet: walletID, PubKey: w.PubKey, Session: session.String(), Attestations: atts}); err != nil {
		return nil, fmt.Errorf("%w: %q: record the reshare: %w", ErrReshare, walletID, err)
	}
	return slices.Clone(w.PubKey), nil
}

func sameParties(a, b []tss.Party) bool {
	return slices.EqualFunc(a, b, func(x, y tss.Party) bool { return x.Node == y.Node && bytes.Equal(x.Key, y.Key) })
}
