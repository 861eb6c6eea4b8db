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
// test-signs with two different t+1 subsets; then every member tells every
// other that its part succeeded (a last confirmation round), and only then
// does any member return the share (SECURITY.md item 8). So a share, and the
// address derived from it, is returned by all members or by none: a member
// whose key agreement or test-sign fails abandons the sessions it has yet to
// join (its peers stop at once, ErrPeerAborted) and never confirms, and a
// member outside a failed test subset learns of the failure. A member in
// neither test subset (only when n > 2(t+1)) still waits for everyone's
// confirmation.
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
	s.check = newKeygenCheck().check
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

	subsets := testSubsets(members, p.Threshold)
	res, agreed, err := s.run(ctx)
	if err != nil {
		e.abandonKeygen(p, members, subsets, err)
		return nil, err
	}
	data := res[RoleMain].(*keygen.LocalPartySaveData)
	share := &Share{
		WalletInfo: WalletInfo{Wallet: p.Wallet, Threshold: p.Threshold, Members: members, PubKey: compressPub(data)},
		Self:       e.cfg.Self,
		Data:       *data,
	}
	if err := share.validate(); err != nil {
		e.abandonKeygen(p, members, subsets, err)
		return nil, err
	}
	if err := e.testSign(ctx, share, p.Session, subsets); err != nil {
		e.abandonKeygen(p, members, subsets, err)
		return nil, fmt.Errorf("tss: keygen test-sign: %w", err)
	}
	if err := e.confirmTested(ctx, p, members, agreed); err != nil {
		return nil, fmt.Errorf("tss: keygen: %w", err)
	}
	return share, nil
}

// testedSession is the last session of a keygen, in which every member
// confirms that its key agreement and test-signs succeeded.
func testedSession(parent SessionID) SessionID { return derivedSession(parent, "keygen-tested", 0) }

// confirmTested runs the last keygen round: every member sends every other a
// digest of the agreed result, and waits for all of them (a confirm-only
// session, like the retire phase of a reshare).
func (e *Engine) confirmTested(ctx context.Context, p KeygenParams, members []Party, agreed []byte) error {
	fs := newSession(e, testedSession(p.Session), p.Wallet, "keygen-tested")
	var refs []partyRef
	for _, m := range members {
		ref := partyRef{m.Node, RoleMain}
		fs.addMember(ref, tsslib.NewPartyID(string(m.Node), "", partyKey(p.Wallet, fs.id, m.Node, RoleMain)))
		refs = append(refs, ref)
	}
	h := sha256.New()
	h.Write([]byte("custody/tss/keygen-tested/v1\x00"))
	h.Write(agreed)
	digest := h.Sum(nil)
	fs.confirm = &confirmSpec{senders: refs, receivers: refs, digest: func(Role, any) []byte { return digest }}
	_, _, err := fs.run(ctx)
	return err
}

// abandonKeygen tells the peers of every keygen session this node will not
// run any more (its test-sign sessions and the last confirmation) that it
// aborted, so they end at once instead of at their deadline, and never
// confirm a key this node does not hold.
func (e *Engine) abandonKeygen(p KeygenParams, members []Party, subsets [][]pki.NodeID, cause error) {
	for i, sub := range subsets {
		if contains(sub, e.cfg.Self) {
			e.abandon(derivedSession(p.Session, "test-sign", i), p.Wallet, sub, cause)
		}
	}
	all := make([]pki.NodeID, 0, len(members))
	for _, m := range members {
		all = append(all, m.Node)
	}
	e.abandon(testedSession(p.Session), p.Wallet, all, cause)
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
