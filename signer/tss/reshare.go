package tss

import (
	"bytes"
	"context"
	"fmt"

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
	// OnRetire is called on old members once the new committee has
	// test-signed: it must destroy the old sealed share (and the caller logs
	// it). Only after it returns nil is the in-memory old share zeroed.
	OnRetire func(old *Share) error
}

// Reshare runs the two-phase reshare. Phase one: tss-lib resharing, then new
// members check they agree on the public key and shares and the first
// NewThreshold+1 of them test-sign. Phase two: the test signature is sent to
// the old members, who verify it against the unchanged wallet key and only
// then retire their old share (SECURITY.md item 8). old is required on old
// signers and pre on new members; the new share is returned on new members
// (nil on members that only leave).
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
	var newRefs, oldRefs []partyRef
	for n, pid := range oldBy {
		s.addMember(partyRef{n, RoleOld}, pid)
		oldRefs = append(oldRefs, partyRef{n, RoleOld})
	}
	for n, pid := range newBy {
		s.addMember(partyRef{n, RoleNew}, pid)
		newRefs = append(newRefs, partyRef{n, RoleNew})
	}
	sortRefs(newRefs)
	sortRefs(oldRefs)
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
	res, _, err := s.run(ctx)
	if err != nil {
		return nil, err
	}

	var newShare *Share
	signers := make([]pki.NodeID, 0, p.NewThreshold+1)
	for i := 0; i <= p.NewThreshold; i++ {
		signers = append(signers, newMembers[i].Node)
	}
	var sig *Signature
	digest := testDigest(p.Session, "reshare", 0)
	if inNew {
		data := res[RoleNew].(*keygen.LocalPartySaveData)
		newShare = &Share{
			WalletInfo: WalletInfo{Wallet: p.Old.Wallet, Threshold: p.NewThreshold, Members: newMembers, PubKey: compressPub(data)},
			Self:       self,
			Data:       *data,
		}
		if err := newShare.validate(); err != nil {
			return nil, err
		}
		if !bytes.Equal(newShare.PubKey, p.Old.PubKey) {
			return nil, fmt.Errorf("%w: reshare changed the public key", ErrInconsistentResult)
		}
		if contains(signers, self) {
			sig, err = e.Sign(ctx, newShare, SignParams{Session: derivedSession(p.Session, "reshare-test", 0), Signers: signers, Digest: digest})
			if err != nil {
				return nil, fmt.Errorf("tss: reshare test-sign: %w", err)
			}
		}
	}

	// Phase two: the test signers tell the old signers; old signers verify.
	rs := newSession(e, derivedSession(p.Session, "retire", 0), p.Old.Wallet, "reshare-retire")
	var senders []partyRef
	for _, n := range signers {
		ref := partyRef{n, RoleNew}
		senders = append(senders, ref)
		rs.addMember(ref, tsslib.NewPartyID(string(n), "", partyKey(p.Old.Wallet, rs.id, n, RoleNew)))
	}
	for _, ref := range oldRefs {
		rs.addMember(ref, tsslib.NewPartyID(string(ref.Node), "", partyKey(p.Old.Wallet, rs.id, ref.Node, RoleOld)))
	}
	rs.confirm = &confirmSpec{senders: senders, receivers: oldRefs, digest: func(Role, any) []byte { return sig.Bytes65() }}
	if !inOld && sig == nil {
		return newShare, nil // new member outside the test subset: nothing to send or receive
	}
	_, agreed, err := rs.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("tss: reshare retire phase: %w", err)
	}
	if inOld {
		if len(agreed) != 65 {
			return nil, fmt.Errorf("%w: malformed test signature from the new committee", ErrInconsistentResult)
		}
		if _, err := finishSignature(p.Old.PubKey, digest, agreed[:32], agreed[32:64]); err != nil {
			return nil, fmt.Errorf("%w: new committee test signature: %v", ErrInconsistentResult, err)
		}
		if p.OnRetire != nil {
			if err := p.OnRetire(old); err != nil {
				return newShare, fmt.Errorf("tss: retire old share: %w", err)
			}
		}
		old.retire()
		e.emit(Event{Kind: EventShareRetired, Session: p.Session, Wallet: p.Old.Wallet, Parties: []pki.NodeID{self},
			Detail: "old share destroyed after the new committee test-signed"})
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
