package tss

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/resharing"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/preparams"
)

// ReshareParams describes moving a wallet's key to a new committee (add,
// remove or replace members, change t) while keeping its public key.
type ReshareParams struct {
	Session SessionID
	// Old is the wallet's current public description (from the ledger).
	Old WalletInfo
	// OldSigners are the old members taking part: at least Old.Threshold+1.
	OldSigners []pki.NodeID
	// New is the new committee and NewThreshold its t.
	New          []pki.NodeID
	NewThreshold int
	// OnRetire is called on old members once every party confirmed that the
	// new committee holds the wallet key and test-signed with it: it must
	// destroy the old sealed share (and the caller logs it). Only after it
	// returns nil is the in-memory old share zeroed.
	OnRetire func(old *Share) error
}

// Reshare runs the two-phase reshare, all or nothing like Keygen. Phase one:
// tss-lib resharing, then new members check they agree on the public key and
// shares and that the key is the wallet's, and the first NewThreshold+1 of
// them test-sign. Then the test signature goes to every party (old signers
// and new members), each verifies it against the wallet key, and in a last
// confirmation round every party tells every other that it did (new
// members: and that they hold a share of that key). Only once all of them
// did does a new member return its share and an old member retire its old
// one (phase two, SECURITY.md item 8). A party that fails anywhere abandons
// the sessions it has yet to join, so its peers stop at once
// (ErrPeerAborted, the cause in the reason): no party returns a share and
// no old share is retired. old is required on old signers and pre on new
// members; the new share is returned on new members (nil on members that
// only leave).
func (e *Engine) Reshare(ctx context.Context, p ReshareParams, old *Share, pre *keygen.LocalPreParams) (*Share, error) {
	self := e.cfg.Self
	if err := checkCommittee(p.OldSigners, self, false); err != nil {
		return nil, err
	}
	if err := checkCommittee(p.New, self, false); err != nil {
		return nil, err
	}
	inOld, inNew := contains(p.OldSigners, self), contains(p.New, self)
	if !inOld && !inNew {
		return nil, fmt.Errorf("%w: %s is in neither committee", ErrBadParams, self)
	}
	if len(p.OldSigners) < p.Old.Threshold+1 || p.NewThreshold < 1 || p.NewThreshold >= len(p.New) {
		return nil, fmt.Errorf("%w: %d old signers for t=%d, new t=%d of %d", ErrBadParams,
			len(p.OldSigners), p.Old.Threshold, p.NewThreshold, len(p.New))
	}
	if inOld {
		if old == nil || old.Retired() || old.Wallet != p.Old.Wallet || !bytes.Equal(old.PubKey, p.Old.PubKey) {
			return nil, fmt.Errorf("%w: old share missing, retired or for another wallet", ErrBadParams)
		}
		// The ledger's description of the old committee must be the one
		// the share was made for: same t and the same node→key members.
		if old.Threshold != p.Old.Threshold || !sameMembers(old.Members, p.Old.Members) {
			return nil, fmt.Errorf("%w: old committee (threshold or members) differs from the old share's", ErrBadParams)
		}
	}
	if inNew {
		if err := preparams.Validate(pre); err != nil {
			return nil, fmt.Errorf("tss: reshare: %w", err)
		}
	}
	if err := e.cfg.Budget.Check(append(append([]pki.NodeID{}, p.OldSigners...), p.New...)); err != nil {
		return nil, err
	}
	if err := e.checkUnused(p.Session); err != nil {
		return nil, err
	}
	oldKeys := map[pki.NodeID][]byte{}
	for _, m := range p.Old.Members {
		oldKeys[m.Node] = m.Key
	}
	var oldMembers, newMembers []Party
	for _, n := range p.OldSigners {
		k, ok := oldKeys[n]
		if !ok {
			return nil, fmt.Errorf("%w: %s is not an old member", ErrBadParams, n)
		}
		oldMembers = append(oldMembers, Party{Node: n, Key: k})
	}
	for _, n := range p.New {
		newMembers = append(newMembers, Party{Node: n, Key: partyKey(p.Old.Wallet, p.Session, n, RoleNew).Bytes()})
	}
	sortMembers(newMembers)
	oldSorted, oldSelf, oldBy := sortedPIDs(oldMembers, self)
	newSorted, newSelf, newBy := sortedPIDs(newMembers, self)

	s := newSession(e, p.Session, p.Old.Wallet, protoReshare)
	s.threshold = func(string) int { return p.NewThreshold }
	var newRefs []partyRef
	for n, pid := range oldBy {
		s.addMember(partyRef{n, RoleOld}, pid)
	}
	for n, pid := range newBy {
		s.addMember(partyRef{n, RoleNew}, pid)
		newRefs = append(newRefs, partyRef{n, RoleNew})
	}
	sortRefs(newRefs)
	s.confirm = &confirmSpec{senders: newRefs, receivers: newRefs, digest: func(_ Role, r any) []byte {
		return resultDigest(r.(*keygen.LocalPartySaveData))
	}}
	oldCtx, newCtx := tsslib.NewPeerContext(oldSorted), tsslib.NewPeerContext(newSorted)
	if inOld {
		params := tsslib.NewReSharingParameters(tsslib.S256(), oldCtx, newCtx, oldSelf,
			len(oldSorted), p.Old.Threshold, len(newSorted), p.NewThreshold)
		end := make(chan *keygen.LocalPartySaveData, 1)
		old.mu.Lock()
		data := copySaveData(old.Data)
		old.mu.Unlock()
		s.addLocal(RoleOld, resharing.NewLocalParty(params, data, s.out, end))
		forward(s, RoleOld, end)
	}
	if inNew {
		params := tsslib.NewReSharingParameters(tsslib.S256(), oldCtx, newCtx, newSelf,
			len(oldSorted), p.Old.Threshold, len(newSorted), p.NewThreshold)
		end := make(chan *keygen.LocalPartySaveData, 1)
		key := keygen.NewLocalPartySaveData(len(newSorted))
		key.LocalPreParams = *pre
		s.addLocal(RoleNew, resharing.NewLocalParty(params, key, s.out, end))
		forward(s, RoleNew, end)
	}
	signers := testSubsets(newMembers, p.NewThreshold)[0]
	parties := append(append([]pki.NodeID{}, p.OldSigners...), p.New...)
	slices.Sort(parties)
	parties = slices.Compact(parties)
	testSess := derivedSession(p.Session, "reshare-test", 0)
	sigSess := derivedSession(p.Session, "reshare-signature", 0)
	testedSess := derivedSession(p.Session, "reshare-tested", 0)
	later := []laterSession{{testSess, signers}, {sigSess, parties}, {testedSess, parties}}
	fail := func(err error) (*Share, error) {
		e.abandonLater(p.Old.Wallet, later, err)
		return nil, err
	}

	res, _, err := s.run(ctx)
	if err != nil {
		return fail(err)
	}
	var newShare *Share
	var sig []byte // the test signature, on test signers
	digest := testDigest(p.Session, "reshare", 0)
	if inNew {
		data := res[RoleNew].(*keygen.LocalPartySaveData)
		newShare = &Share{
			WalletInfo: WalletInfo{Wallet: p.Old.Wallet, Threshold: p.NewThreshold, Members: newMembers, PubKey: compressPub(data)},
			Self:       self,
			Data:       *data,
		}
		if err := newShare.validate(); err != nil {
			return fail(err)
		}
		if !bytes.Equal(newShare.PubKey, p.Old.PubKey) {
			return fail(fmt.Errorf("%w: reshare changed the public key", ErrInconsistentResult))
		}
		if contains(signers, self) {
			ts, err := e.Sign(ctx, newShare, SignParams{Session: testSess, Signers: signers, Digest: digest})
			if err != nil {
				return fail(fmt.Errorf("tss: reshare test-sign: %w", err))
			}
			sig = ts.Bytes65()
		}
	}

	// The test signers send the signature to every party, who verifies it
	// against the wallet key.
	agreed, err := e.confirmRound(ctx, sigSess, p.Old.Wallet, "reshare-signature", signers, parties, sig)
	if err != nil {
		return fail(fmt.Errorf("tss: reshare test signature: %w", err))
	}
	if len(agreed) != 65 {
		return fail(fmt.Errorf("%w: malformed test signature from the new committee", ErrInconsistentResult))
	}
	if _, err := finishSignature(p.Old.PubKey, digest, agreed[:32], agreed[32:64]); err != nil {
		return fail(fmt.Errorf("%w: new committee test signature: %v", ErrInconsistentResult, err))
	}
	// Every party confirms to every other: the wallet key (a new member
	// holds a share of it) and the test signature that verified under it.
	if _, err := e.confirmRound(ctx, testedSess, p.Old.Wallet, "reshare-tested", parties, parties,
		taggedDigest("reshare-tested", p.Old.PubKey, agreed)); err != nil {
		return nil, fmt.Errorf("tss: reshare: %w", err)
	}

	// Phase two: every party holds the new key; old signers retire.
	if inOld {
		if p.OnRetire != nil {
			if err := p.OnRetire(old); err != nil {
				return newShare, fmt.Errorf("tss: retire old share: %w", err)
			}
		}
		old.retire()
		e.emit(Event{Kind: EventShareRetired, Session: p.Session, Wallet: p.Old.Wallet, Parties: []pki.NodeID{self},
			Detail: "old share destroyed after the new committee test-signed and every party confirmed"})
	}
	return newShare, nil
}

func contains(ps []pki.NodeID, p pki.NodeID) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// sameMembers reports whether a and b map the same nodes to the same keys.
func sameMembers(a, b []Party) bool {
	if len(a) != len(b) {
		return false
	}
	keys := make(map[pki.NodeID][]byte, len(a))
	for _, m := range a {
		keys[m.Node] = m.Key
	}
	if len(keys) != len(a) {
		return false
	}
	for _, m := range b {
		k, ok := keys[m.Node]
		if !ok || !bytes.Equal(k, m.Key) {
			return false
		}
		delete(keys, m.Node)
	}
	return len(keys) == 0
}

// ReshareShareID is the share ID (tss.Party.Key) new member node gets in a
// reshare of wallet under session: a member finds the share a reshare
// session stored (shares.Store.Get) without running it again.
func ReshareShareID(wallet string, session SessionID, node pki.NodeID) []byte {
	return partyKey(wallet, session, node, RoleNew).Bytes()
}
