package tss

import (
	"context"
	"fmt"
	"math/big"

	"github.com/bnb-chain/tss-lib/v2/common"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/signing"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"
)

// SignLateBound runs one signing session like Sign, but signs the integer m
// the caller owns instead of p.Digest (which is ignored). tss-lib keeps the
// *big.Int it is given and reads it only in round 1 (m < N), round 5, round
// 7 and finalize, so the caller may start with a placeholder and write the
// real digest into m while it holds every round-4 message back (the
// presignature pool, package signer/presign, #7). The caller must make the
// write happen before any round-4 message reaches this party or leaves it.
//
// The returned signature is verified against the wallet key for the value
// m holds when the session ends.
func (e *Engine) SignLateBound(ctx context.Context, share *Share, p SignParams, m *big.Int) (*Signature, error) {
	if m == nil || m.Sign() < 0 || m.Cmp(tsslib.S256().Params().N) >= 0 {
		return nil, fmt.Errorf("%w: message integer out of range", ErrBadParams)
	}
	if share == nil || share.Retired() {
		return nil, ErrShareRetired
	}
	if err := checkCommittee(p.Signers, e.cfg.Self, true); err != nil {
		return nil, err
	}
	if len(p.Signers) < share.Threshold+1 {
		return nil, fmt.Errorf("%w: %d signers for threshold %d", ErrBadParams, len(p.Signers), share.Threshold)
	}
	if err := e.cfg.Budget.Check(p.Signers); err != nil {
		return nil, err
	}
	if err := e.checkUnused(p.Session); err != nil {
		return nil, err
	}
	keys := map[PartyID][]byte{}
	for _, mb := range share.Members {
		keys[mb.Node] = mb.Key
	}
	var members []Member
	for _, n := range p.Signers {
		k, ok := keys[n]
		if !ok {
			return nil, fmt.Errorf("%w: signer %s is not a member of wallet %s", ErrBadParams, n, share.Wallet)
		}
		members = append(members, Member{Node: n, Key: k})
	}
	sorted, self, byNode := sortedPIDs(members, e.cfg.Self)

	s := newSession(e, p.Session, share.Wallet, protoSign)
	s.hook = p.Hook
	s.threshold = func(string) int { return share.Threshold }
	for n, pid := range byNode {
		s.addMember(partyRef{n, RoleMain}, pid)
	}
	params := tsslib.NewParameters(tsslib.S256(), tsslib.NewPeerContext(sorted), self, len(sorted), share.Threshold)
	end := make(chan *common.SignatureData, 1)
	share.mu.Lock()
	data := share.Data
	share.mu.Unlock()
	if data.Xi == nil {
		return nil, ErrShareRetired
	}
	party := signing.NewLocalParty(m, params, data, s.out, end, 32)
	s.addLocal(RoleMain, party)
	forward(s, RoleMain, end)

	res, _, err := s.run(ctx)
	if err != nil {
		return nil, err
	}
	sd := res[RoleMain].(*common.SignatureData)
	var digest [32]byte
	m.FillBytes(digest[:])
	sig, err := finishSignature(share.PubKey, digest, sd.R, sd.S)
	if err != nil {
		ae := s.abort(ErrProtocol, err.Error())
		e.fail(s, ae)
		return nil, ae
	}
	return sig, nil
}
