package ledger_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// TestRefusalLeavesStateIdentical: for every command type this build
// applies, a refused command leaves the state byte-identical (canonical
// encoding, not only the hash), and the table covers every type, so a new
// command cannot be added without a refusal case. The guarantee is
// structural (handlers stage their effect in a txn the FSM commits only on
// success); TestTxnRefusalDiscardsStagedWrites shows it for a handler that
// writes and then fails.
func TestRefusalLeavesStateIdentical(t *testing.T) {
	h := newHarness(t)
	approved := h.approved("approved", 1)
	waiting := h.create("waiting", 2)
	claimed := h.approved("claimed", 3)
	cl := h.claimCmd(claimed.ID)
	cl.SessionID = "cc" + cl.SessionID[2:]
	h.must("n1", cl)
	signed := h.approved("signed", 4)
	scl := h.claimCmd(signed.ID)
	scl.SessionID = "5c" + scl.SessionID[2:]
	h.must("n1", scl)
	h.must("n1", RecordResult{RequestID: signed.ID, SessionID: scl.SessionID, Signed: []byte("raw"), TxHash: "0xabc"})
	badSig := bob.approve(t, waiting, h.now.Add(time.Hour))
	badSig.Approval.Signature[0] ^= 1
	conflict := createCmd("waiting", 2)
	conflict.To = "0xsomeoneelse"
	badNote := createCmd("noted", 9)
	badNote.Note = "pay\u202eevil" // a format character hides text from the reader
	allocated := createCmd("fresh", 1)
	allocated.ExpiresAt = h.now.Add(time.Hour)
	lock := policy.Change{ID: "lock-1", Kind: policy.ChangeLock, Wallet: "hot"}
	enroll := quorum.Change{ID: "enroll-1", Kind: quorum.ChangeEnrollOperator}
	unlock := policy.Change{ID: "unlock-r", Kind: policy.ChangeUnlock, Wallet: "hot"}

	cases := []struct {
		name string
		want error
		cmd  Command
	}{
		{"second genesis", ErrInvalid, genesisCmd()},
		{"voter without address", ErrInvalid, VoterSet{ID: "n9"}},
		{"voter removal without id", ErrInvalid, VoterRemove{}},
		{"registry change without approvals", ErrInvalid, RegistryChange{Change: enroll}},
		{"lock without approvals", ErrQuorum, PolicyChange{Change: lock}},
		{"governance change without an ID", ErrInvalid, PolicyChange{Change: policy.Change{Kind: policy.ChangeLock, Wallet: "hot"}}},
		{"unparsable rules", ErrInvalid, RulesSet{ID: "r-1", Body: []byte("version: [")}},
		{"wallet with threshold 0", ErrInvalid, WalletSet{Wallet{ID: "w0", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1"}}}},
		{"wallet redescribed", ErrConflict, WalletSet{Wallet{ID: "hot", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1", "n2"}, Threshold: 1}}},
		{"wallet.set with a key", ErrInvalid, WalletSet{Wallet{ID: "wk", Chain: "eth", Network: "devnet", Committee: []pki.NodeID{"n1", "n2"}, Threshold: 1, PubKey: testPubKey(1)}}},
		{"wallet create without the admin quorum", ErrQuorum, WalletCreate{Change: WalletSpec{ID: "wc-r", Wallet: "wr", Chain: "eth", Network: "devnet", Committee: allSigners, Threshold: 1}}},
		{"wallet keyed for a wallet not in keygen", ErrWrongStatus, WalletKeyed{Wallet: "hot", PubKey: testPubKey(1)}},
		{"wallet reshare of a wallet without a key", ErrWrongStatus, WalletReshare{Change: ReshareSpec{ID: "rs-r", Wallet: "hot", NewCommittee: allSigners, NewThreshold: 1}}},
		{"wallet reshared for a wallet not resharing", ErrWrongStatus, WalletReshared{Wallet: "hot", PubKey: testPubKey(1), Session: strings.Repeat("d4", 32)}},
		{"create conflict", ErrConflict, conflict},
		{"create on a held nonce", ErrAllocated, allocated},
		{"create with an unprintable note", ErrInvalid, badNote},
		{"approval with a bad signature", ErrApproval, badSig},
		{"claim from a stale term", ErrStaleLeader, func() ClaimSession { c := h.claimCmd(approved.ID); c.Term--; return c }()},
		{"reclaim of a live session", ErrWrongStatus, ReclaimSession{RequestID: claimed.ID, FailedSession: cl.SessionID, SessionID: "dd" + cl.SessionID[2:], Term: 1, Signers: allSigners}},
		{"result of another session", ErrStaleSession, RecordResult{RequestID: claimed.ID, SessionID: "ee" + cl.SessionID[2:], Signed: []byte("x")}},
		{"expiry before its time", ErrInvalid, ExpireRequest{RequestID: waiting.ID}},
		{"export of a hot request", ErrWrongStatus, ColdExport{RequestID: approved.ID, BundleHash: "h"}},
		{"import without export", ErrWrongStatus, ColdImport{RequestID: approved.ID, Signed: []byte("x")}},
		{"attestation of a request never exported", ErrCheckpoint, ColdAttest{Request: approved.ID, Sig: CheckpointSig{Node: "n1"}}},
		{"cold wallet registered without the admin quorum", ErrQuorum, WalletRegister{Change: ColdWalletSpec{ID: "wr-r", Wallet: "cold-r", Chain: "eth", Network: "devnet",
			ChainID: 1337, PubKey: testPubKey(1), Threshold: 1, Custodians: []string{"ann", "ben", "cat"}, Transcript: strings.Repeat("ab", 32)}}},
		{"cold wallet with its key's ID taken", ErrConflict, WalletRegister{Change: ColdWalletSpec{ID: "wr-h", Wallet: "hot", Chain: "eth", Network: "devnet",
			ChainID: 1337, PubKey: testPubKey(1), Threshold: 1, Custodians: []string{"ann", "ben"}, Transcript: strings.Repeat("ab", 32)}}},
		{"cold wallet with one custodian", ErrInvalid, WalletRegister{Change: ColdWalletSpec{ID: "wr-1", Wallet: "cold-1", Chain: "eth", Network: "devnet",
			ChainID: 1337, PubKey: testPubKey(1), Threshold: 1, Custodians: []string{"ann"}, Transcript: strings.Repeat("ab", 32)}}},
		{"broadcast of another transaction", ErrConflict, RecordBroadcast{RequestID: signed.ID, TxHash: "0xdef"}},
		{"chain status before the broadcast", ErrWrongStatus, RecordChainStatus{RequestID: signed.ID, TxHash: "0xabc", Status: StatusConfirmed, Block: 7, Confirmations: 1}},
		{"chain witness of a request with no chain status", ErrWrongStatus, ChainWitness{RequestID: signed.ID, TxHash: "0xabc", Status: StatusConfirmed, Block: 7, Sig: CheckpointSig{Node: "n1"}}},
		{"node change without the admin quorum", ErrQuorum, NodeChange{Change: NodeSetChange{ID: "add-n4", Kind: NodeAdd, Node: Node{ID: "n4", KeyFingerprint: strings.Repeat("ab", 32)}}}},
		{"token declared with a key the node set does not pin", ErrApproval, h.nodeToken("n1", "serial-1", otherKey(t))},
		{"proposal of an unlock while nothing is locked", ErrInvalid, ChangePropose{Change: ProposedChange{Policy: &unlock},
			Approval: alice.sign(t, unlock.ID, unlock.PayloadHash(), quorum.Approve, h.now.Add(time.Hour))}},
		{"approval of a change nobody proposed", ErrNotFound, ChangeApprove{ID: "nobody", Approval: alice.sign(t, "nobody", lock.PayloadHash(), quorum.Approve, h.now.Add(time.Hour))}},
		{"webhook ack beyond the request's history", ErrInvalid, h.webhookAcks("n1", nil, WebhookAck{RequestID: waiting.ID, Entry: 5})},
		{"checkpoint signed with a key the node set does not pin", ErrCheckpoint, signCP(t, CheckpointHead{ClusterID: testCluster, Index: 1}, "n1", otherKey(t))},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.cmd.Type()] = true
		t.Run(c.name, func(t *testing.T) {
			before := h.encoded()
			if _, err := h.apply("n1", c.cmd); !errors.Is(err, c.want) {
				t.Fatalf("%s: %v, want %v", c.cmd.Type(), err, c.want)
			}
			if after := h.encoded(); !bytes.Equal(before, after) {
				t.Fatalf("refused %s changed the state", c.cmd.Type())
			}
		})
	}
	for _, typ := range CommandTypes() {
		if !covered[typ] {
			t.Errorf("command type %s has no refusal case", typ)
		}
	}
	if !slices.Equal(CommandTypes(), sortedKeys(covered)) {
		t.Errorf("cases cover %v, the ledger applies %v", sortedKeys(covered), CommandTypes())
	}
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (h *fsmHarness) encoded() []byte {
	h.t.Helper()
	var b []byte
	if err := h.f.Read(func(st *State) error {
		var err error
		b, err = st.Encode()
		return err
	}); err != nil {
		h.t.Fatal(err)
	}
	return b
}
