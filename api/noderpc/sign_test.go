package noderpc_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/api/requestid"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/withdraw"
)

var (
	_ withdraw.Member       = (*noderpc.RemoteMember)(nil)
	_ withdraw.KeygenMember = (*noderpc.RemoteMember)(nil)
)

// fakeMember records what it was asked and answers refuse's error when
// set, else a signature (fault injection: the real member's checks have
// their own tests in signer/member).
type fakeMember struct {
	id    pki.NodeID
	mu    sync.Mutex
	asked []member.Claim
	// oldMembers is what the last Reshare was given.
	oldMembers []tss.Party
	refuse     error
	// requestIDs are the API request IDs the sign calls' contexts carried.
	requestIDs []string
}

func (m *fakeMember) SignClaimed(ctx context.Context, requestID string, c member.Claim) (*member.Signed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, c)
	m.requestIDs = append(m.requestIDs, requestid.From(ctx))
	if m.refuse != nil {
		return nil, &member.RefusalError{Member: m.id, RequestID: requestID, Err: m.refuse}
	}
	return &member.Signed{RequestID: requestID, SessionID: c.SessionID, Raw: []byte("signed:" + requestID), TxHash: "0xabc", Signature: make([]byte, 65)}, nil
}

func (m *fakeMember) Keygen(_ context.Context, walletID string, session tss.SessionID) (*member.KeygenResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, member.Claim{SessionID: session})
	if m.refuse != nil {
		return nil, &member.RefusalError{Member: m.id, RequestID: "wallet:" + walletID, Err: m.refuse}
	}
	return &member.KeygenResult{Wallet: walletID, Session: session, PubKey: append([]byte{2}, make([]byte, 32)...),
		Attestation: ledger.CheckpointSig{Node: m.id, PublicKey: []byte("pub"), Signature: []byte("sig")}}, nil
}

func (m *fakeMember) TestSign(_ context.Context, walletID string, pubkey []byte, session tss.SessionID, signers []pki.NodeID) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, member.Claim{SessionID: session, Signers: signers})
	if m.refuse != nil {
		return nil, &member.RefusalError{Member: m.id, RequestID: "wallet:" + walletID, Err: m.refuse}
	}
	return append([]byte("sig:"+walletID+":"), pubkey...), nil
}

func (m *fakeMember) Reshare(_ context.Context, walletID string, session tss.SessionID, oldSigners []pki.NodeID, oldMembers []tss.Party) (*member.ReshareResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, member.Claim{SessionID: session, Signers: oldSigners})
	m.oldMembers = oldMembers
	if m.refuse != nil {
		return nil, &member.RefusalError{Member: m.id, RequestID: "wallet:" + walletID, Err: m.refuse}
	}
	return &member.ReshareResult{Wallet: walletID, Session: session, PubKey: append([]byte{3}, make([]byte, 32)...),
		Attestation: ledger.CheckpointSig{Node: m.id, PublicKey: []byte("pub"), Signature: []byte("rsig")}}, nil
}

func (m *fakeMember) WalletInfo(_ context.Context, walletID string) (tss.WalletInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, member.Claim{})
	if m.refuse != nil {
		return tss.WalletInfo{}, &member.RefusalError{Member: m.id, RequestID: "wallet:" + walletID, Err: m.refuse}
	}
	return tss.WalletInfo{Wallet: walletID, Threshold: 1, Members: []tss.Party{{Node: "n1", Key: []byte{1}}, {Node: m.id, Key: []byte{2}}},
		PubKey: append([]byte{3}, make([]byte, 32)...)}, nil
}

func (m *fakeMember) calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.asked)
}

// TestSignClaimed: the leader's client gets the member's signature for
// exactly the claim it sent; a refusal comes back as a
// *member.RefusalError naming the member with the check's sentinel; a
// node that is not the member's leader is refused before the member is
// asked.
func TestSignClaimed(t *testing.T) {
	fakes := map[pki.NodeID]*fakeMember{}
	members := map[pki.NodeID]noderpc.Member{}
	for _, id := range []pki.NodeID{"n1", "n2", "n3"} {
		fakes[id] = &fakeMember{id: id}
		members[id] = fakes[id]
	}
	h := newHarness(t, members, 0)
	ctx := ctxT(t)
	leader := h.c.WaitLeader(nil)
	m := h.follower()
	fake := fakes[m.ID]
	remote := h.client(leader).Member(m.ID)
	if remote.Self() != m.ID {
		t.Fatalf("Self %s", remote.Self())
	}
	claim := member.Claim{SessionID: sha256.Sum256([]byte("session")), Index: 42, Signers: []pki.NodeID{leader.ID, m.ID},
		PayloadHash: quorum.Hash(sha256.Sum256([]byte("payload"))), Digest: sha256.Sum256([]byte("digest"))}

	// The call carries the API request ID of its context to the member's
	// node (X-Request-ID); a call without one carries none.
	signed, err := remote.SignClaimed(requestid.With(ctx, "api-req-7"), "wd-s", claim)
	if err != nil {
		t.Fatal(err)
	}
	if fake.requestIDs[0] != "api-req-7" {
		t.Fatalf("the member's context carried the request ID %q", fake.requestIDs[0])
	}
	if signed.RequestID != "wd-s" || signed.SessionID != claim.SessionID || string(signed.Raw) != "signed:wd-s" || signed.TxHash != "0xabc" || len(signed.Signature) != 65 {
		t.Fatalf("signed %+v", signed)
	}
	if fake.calls() != 1 || !reflect.DeepEqual(fake.asked[0], claim) {
		t.Fatalf("member was asked %+v, want %+v", fake.asked, claim)
	}

	for _, sentinel := range []error{member.ErrQuorum, member.ErrPayload, member.ErrWatermark, member.ErrNotAttested} {
		fake.mu.Lock()
		fake.refuse = fmt.Errorf("%w: injected", sentinel)
		fake.mu.Unlock()
		_, err := remote.SignClaimed(ctx, "wd-s", claim)
		var ref *member.RefusalError
		var re *noderpc.Error
		if !errors.Is(err, sentinel) || !errors.As(err, &ref) || ref.Member != m.ID || ref.RequestID != "wd-s" || !errors.As(err, &re) || re.Peer != m.ID {
			t.Fatalf("refusal %v: got %v", sentinel, err)
		}
		if errors.Is(err, member.ErrPolicy) {
			t.Fatalf("refusal %v also matches ErrPolicy", sentinel)
		}
	}
	fake.mu.Lock()
	for i, rid := range fake.requestIDs[1:] {
		if rid != "" {
			t.Errorf("call %d without a request ID reached the member with %q", i+2, rid)
		}
	}
	fake.mu.Unlock()

	// Another node asking the member to sign: refused, member not asked.
	third := h.c.Others(leader)[1]
	if third == m {
		third = h.c.Others(leader)[0]
	}
	n := fake.calls()
	_, err = h.client(third).Member(m.ID).SignClaimed(ctx, "wd-s", claim)
	if !errors.Is(err, noderpc.ErrForbidden) || fake.calls() != n {
		t.Fatalf("non-leader asking: %v (member asked %d times, was %d)", err, fake.calls(), n)
	}
}

// TestKeygenAndTestSign: the leader's client gets a member's keygen result
// (key and attestation) and test signature for exactly the wallet,
// session, key and signers it sent; refusals come back as
// *member.RefusalError with member.ErrKeygen; a node that is not the
// member's leader is refused before the member is asked.
func TestKeygenAndTestSign(t *testing.T) {
	fakes := map[pki.NodeID]*fakeMember{}
	members := map[pki.NodeID]noderpc.Member{}
	for _, id := range []pki.NodeID{"n1", "n2", "n3"} {
		fakes[id] = &fakeMember{id: id}
		members[id] = fakes[id]
	}
	h := newHarness(t, members, 0)
	ctx := ctxT(t)
	leader := h.c.WaitLeader(nil)
	m := h.follower()
	fake := fakes[m.ID]
	remote := h.client(leader).Member(m.ID)
	session := tss.SessionID(sha256.Sum256([]byte("keygen")))

	res, err := remote.Keygen(ctx, "w1", session)
	if err != nil {
		t.Fatal(err)
	}
	if res.Wallet != "w1" || res.Session != session || len(res.PubKey) != 33 || res.Attestation.Node != m.ID || string(res.Attestation.Signature) != "sig" {
		t.Fatalf("keygen result %+v", res)
	}
	signers := []pki.NodeID{leader.ID, m.ID}
	sig, err := remote.TestSign(ctx, "w1", res.PubKey, session, signers)
	if err != nil || string(sig) != "sig:w1:"+string(res.PubKey) {
		t.Fatalf("test sign: %q %v", sig, err)
	}
	if fake.calls() != 2 || fake.asked[0].SessionID != session || !reflect.DeepEqual(fake.asked[1].Signers, signers) {
		t.Fatalf("member was asked %+v", fake.asked)
	}

	fake.mu.Lock()
	fake.refuse = fmt.Errorf("%w: injected", member.ErrKeygen)
	fake.mu.Unlock()
	for name, call := range map[string]func() error{
		"keygen":    func() error { _, err := remote.Keygen(ctx, "w1", session); return err },
		"test-sign": func() error { _, err := remote.TestSign(ctx, "w1", res.PubKey, session, signers); return err },
	} {
		var ref *member.RefusalError
		if err := call(); !errors.Is(err, member.ErrKeygen) || !errors.As(err, &ref) || ref.Member != m.ID {
			t.Fatalf("%s refusal: %v", name, err)
		}
	}

	third := h.c.Others(leader)[1]
	if third == m {
		third = h.c.Others(leader)[0]
	}
	n := fake.calls()
	other := h.client(third).Member(m.ID)
	if _, err := other.Keygen(ctx, "w1", session); !errors.Is(err, noderpc.ErrForbidden) {
		t.Fatalf("non-leader keygen: %v", err)
	}
	if _, err := other.TestSign(ctx, "w1", res.PubKey, session, signers); !errors.Is(err, noderpc.ErrForbidden) {
		t.Fatalf("non-leader test-sign: %v", err)
	}
	if fake.calls() != n {
		t.Fatalf("the member was asked by a non-leader (%d calls, was %d)", fake.calls(), n)
	}
}

// TestReshareAndWalletInfo: the leader's client gets the member's reshare
// result for exactly the wallet, session, old signers and old members it
// sent, and the member's wallet description; refusals come back as a
// *member.RefusalError with member.ErrKeygen; a non-leader is refused
// before the member is asked.
func TestReshareAndWalletInfo(t *testing.T) {
	fakes := map[pki.NodeID]*fakeMember{}
	members := map[pki.NodeID]noderpc.Member{}
	for _, id := range []pki.NodeID{"n1", "n2", "n3"} {
		fakes[id] = &fakeMember{id: id}
		members[id] = fakes[id]
	}
	h := newHarness(t, members, 0)
	ctx := ctxT(t)
	leader := h.c.WaitLeader(nil)
	m := h.follower()
	fake := fakes[m.ID]
	remote := h.client(leader).Member(m.ID)
	session := tss.SessionID(sha256.Sum256([]byte("reshare")))

	info, err := remote.WalletInfo(ctx, "w1")
	if err != nil || info.Wallet != "w1" || info.Threshold != 1 || len(info.Members) != 2 || info.Members[1].Node != m.ID || string(info.Members[1].Key) != "\x02" || len(info.PubKey) != 33 {
		t.Fatalf("wallet info %+v %v", info, err)
	}
	old := []pki.NodeID{"n1", m.ID}
	res, err := remote.Reshare(ctx, "w1", session, old, info.Members)
	if err != nil {
		t.Fatal(err)
	}
	if res.Wallet != "w1" || res.Session != session || len(res.PubKey) != 33 || res.Attestation.Node != m.ID || string(res.Attestation.Signature) != "rsig" {
		t.Fatalf("reshare result %+v", res)
	}
	if fake.calls() != 2 || fake.asked[1].SessionID != session || !reflect.DeepEqual(fake.asked[1].Signers, old) || !reflect.DeepEqual(fake.oldMembers, info.Members) {
		t.Fatalf("member was asked %+v with %+v", fake.asked, fake.oldMembers)
	}

	fake.mu.Lock()
	fake.refuse = fmt.Errorf("%w: injected", member.ErrKeygen)
	fake.mu.Unlock()
	for name, call := range map[string]func() error{
		"reshare":     func() error { _, err := remote.Reshare(ctx, "w1", session, old, info.Members); return err },
		"wallet-info": func() error { _, err := remote.WalletInfo(ctx, "w1"); return err },
	} {
		var ref *member.RefusalError
		if err := call(); !errors.Is(err, member.ErrKeygen) || !errors.As(err, &ref) || ref.Member != m.ID {
			t.Fatalf("%s refusal: %v", name, err)
		}
	}

	third := h.c.Others(leader)[1]
	if third == m {
		third = h.c.Others(leader)[0]
	}
	n := fake.calls()
	other := h.client(third).Member(m.ID)
	if _, err := other.Reshare(ctx, "w1", session, old, info.Members); !errors.Is(err, noderpc.ErrForbidden) {
		t.Fatalf("non-leader reshare: %v", err)
	}
	if _, err := other.WalletInfo(ctx, "w1"); !errors.Is(err, noderpc.ErrForbidden) {
		t.Fatalf("non-leader wallet-info: %v", err)
	}
	if fake.calls() != n {
		t.Fatalf("the member was asked by a non-leader (%d calls, was %d)", fake.calls(), n)
	}
}
