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
	all := make([]pki.NodeID, 0, len(members))
	for _, m := range members {
		all = append(all, m.Node)
	}
	var later []laterSession
	for i, sub := range subsets {
		later = append(later, laterSession{derivedSession(p.Session, "test-sign", i), sub})
	}
	tested := testedSession(p.Session)
	later = append(later, laterSession{tested, all})
	fail := func(err error) (*Share, error) {
		e.abandonLater(p.Wallet, later, err)
		return nil, err
	}

	res, agreed, err := s.run(ctx)
	if err != nil {
		return fail(err)
	}
	data := res[RoleMain].(*keygen.LocalPartySaveData)
	share := &Share{
		WalletInfo: WalletInfo{Wallet: p.Wallet, Threshold: p.Threshold, Members: members, PubKey: compressPub(data)},
		Self:       e.cfg.Self,
		Data:       *data,
	}
	if err := share.validate(); err != nil {
		return fail(err)
	}
	if err := e.testSign(ctx, share, p.Session, subsets); err != nil {
		return fail(fmt.Errorf("tss: keygen test-sign: %w", err))
	}
	if _, err := e.confirmRound(ctx, tested, p.Wallet, "keygen-tested", all, all,
		taggedDigest("keygen-tested", agreed)); err != nil {
		return nil, fmt.Errorf("tss: keygen: %w", err)
	}
	return share, nil
}

// testedSession is the last session of a keygen, in which every member
// confirms that its key agreement and test-signs succeeded.
func testedSession(parent SessionID) SessionID { return derivedSession(parent, "keygen-tested", 0) }

// taggedDigest is SHA-256 of a domain-separated label and parts, the
// digest a confirmation round agrees on.
func taggedDigest(label string, parts ...[]byte) []byte {
	h := sha256.New()
	h.Write([]byte("custody/tss/" + label + "/v1\x00"))
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// confirmRound runs a session without tss-lib parties: the last rounds of
// keygen ("keygen-tested") and reshare ("reshare-signature",
// "reshare-tested"). Every sender sends digest to every receiver, and each
// receiver waits for every sender's digest and requires them all equal
// (ErrInconsistentResult naming those that differ). Every node speaks in
// RoleMain, so an abort reaches all of them. digest is ignored on a node
// that is not a sender. It returns the agreed digest.
func (e *Engine) confirmRound(ctx context.Context, id SessionID, wallet, proto string, senders, receivers []pki.NodeID, digest []byte) ([]byte, error) {
	s := newSession(e, id, wallet, proto)
	refs := func(nodes []pki.NodeID) []partyRef {
		out := make([]partyRef, 0, len(nodes))
		for _, n := range nodes {
			ref := partyRef{n, RoleMain}
			if _, ok := s.members[ref]; !ok {
				s.addMember(ref, tsslib.NewPartyID(string(n), "", partyKey(wallet, id, n, RoleMain)))
			}
			out = append(out, ref)
		}
		return out
	}
	s.confirm = &confirmSpec{senders: refs(senders), receivers: refs(receivers), digest: func(Role, any) []byte { return digest }}
	_, agreed, err := s.run(ctx)
	return agreed, err
}

// laterSession is a session of a keygen or reshare that a member joins
// after the step it is in, and the nodes taking part in it.
type laterSession struct {
	id      SessionID
	members []pki.NodeID
}

// abandonLater tells the peers of every later session this node belongs to
// (and will not run any more, the keygen or reshare having failed here)
// that it aborted, so they end at once instead of at their deadline, and
// never confirm a result this node does not hold. cause is the text they
// receive.
func (e *Engine) abandonLater(wallet string, later []laterSession, cause error) {
	for _, l := range later {
		if contains(l.members, e.cfg.Self) {
			e.abandon(l.id, wallet, l.members, cause)
		}
	}
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

// KeygenShareID is the share ID (tss.Party.Key) node gets in a keygen of
// wallet under session: a member finds the share a keygen session stored
// (shares.Store.Get) without running it again.
func KeygenShareID(wallet string, session SessionID, node pki.NodeID) []byte {
	return partyKey(wallet, session, node, RoleMain).Bytes()
}
