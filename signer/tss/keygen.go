package tss

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/preparams"
)

// KeygenParams describes a distributed key generation (no dealer).
type KeygenParams struct {
	Wallet    string
	Session   SessionID
	Committee []pki.NodeID // all n members, self included
	Threshold int          // t: any t+1 members sign; 1 <= t < n
}

// Keygen runs distributed key generation with this node's pre-params, checks
// that every member ended with the same public key and public shares, and
// test-signs with two different t+1 subsets before returning the share
// (SECURITY.md item 8). A member in neither test subset (only when
// n > 2(t+1)) returns after the key agreement check.
func (e *Engine) Keygen(ctx context.Context, p KeygenParams, pre *keygen.LocalPreParams) (*Share, error) {
	n := len(p.Committee)
	if err := checkCommittee(p.Committee, e.cfg.Self, true); err != nil {
		return nil, err
	}
	if p.Wallet == "" || p.Threshold < 1 || p.Threshold >= n {
		return nil, fmt.Errorf("%w: wallet %q, threshold %d of %d", ErrBadParams, p.Wallet, p.Threshold, n)
	}
	if err := preparams.Validate(pre); err != nil {
		return nil, fmt.Errorf("tss: keygen: %w", err)
	}
	if err := e.cfg.Budget.Check(p.Committee); err != nil {
		return nil, err
	}
	if err := e.checkUnused(p.Session); err != nil {
		return nil, err
	}
	var members []Party
	for _, node := range p.Committee {
		members = append(members, Party{Node: node, Key: partyKey(p.Wallet, p.Session, node, RoleMain).Bytes()})
	}
	sortMembers(members)
	sorted, self, byNode := sortedPIDs(members, e.cfg.Self)

	s := newSession(e, p.Session, p.Wallet, protoKeygen)
	s.threshold = func(string) int { return p.Threshold }
	var refs []partyRef
	for node, pid := range byNode {
		s.addMember(partyRef{node, RoleMain}, pid)
		refs = append(refs, partyRef{node, RoleMain})
	}
	sortRefs(refs)
	s.confirm = &confirmSpec{senders: refs, receivers: refs, digest: func(_ Role, r any) []byte {
		return resultDigest(r.(*keygen.LocalPartySaveData))
	}}
	params := tsslib.NewParameters(tsslib.S256(), tsslib.NewPeerContext(sorted), self, n, p.Threshold)
	end := make(chan *keygen.LocalPartySaveData, 1)
	party := keygen.NewLocalParty(params, s.out, end, *pre)
	s.addLocal(RoleMain, party)
	forward(s, RoleMain, end)

	res, _, err := s.run(ctx)
	if err != nil {
		return nil, err
	}
	data := res[RoleMain].(*keygen.LocalPartySaveData)
	share := &Share{
		WalletInfo: WalletInfo{Wallet: p.Wallet, Threshold: p.Threshold, Members: members, PubKey: compressPub(data)},
		Self:       e.cfg.Self,
		Data:       *data,
	}
	if err := share.validate(); err != nil {
		return nil, err
	}
	if err := e.testSign(ctx, share, p.Session, testSubsets(share.Members, p.Threshold)); err != nil {
		return nil, fmt.Errorf("tss: keygen test-sign: %w", err)
	}
	return share, nil
}

// testSubsets returns two different t+1 subsets (first and last members);
// when n == t+1 there is only one.
func testSubsets(members []Party, t int) [][]pki.NodeID {
	var first, last []pki.NodeID
	for i := 0; i <= t; i++ {
		first = append(first, members[i].Node)
		last = append(last, members[len(members)-1-t+i].Node)
	}
	if len(members) == t+1 {
		return [][]pki.NodeID{first}
	}
	return [][]pki.NodeID{first, last}
}

func derivedSession(parent SessionID, label string, i int) SessionID {
	return sha256.Sum256(fmt.Appendf(nil, "custody/tss/%s/%d\x00%s", label, i, parent[:]))
}

func testDigest(parent SessionID, label string, i int) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "custody/tss/test-sign/%s/%d\x00%s", label, i, parent[:]))
}

// testSign signs a fixed digest with each subset this node belongs to.
func (e *Engine) testSign(ctx context.Context, share *Share, parent SessionID, subsets [][]pki.NodeID) error {
	for i, sub := range subsets {
		in := false
		for _, n := range sub {
			in = in || n == e.cfg.Self
		}
		if !in {
			continue
		}
		_, err := e.Sign(ctx, share, SignParams{
			Session: derivedSession(parent, "test-sign", i),
			Signers: sub,
			Digest:  testDigest(parent, "keygen", i),
		})
		if err != nil {
			return err
		}
	}
	return nil
}
