package ledger

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// scribble is a test-only command that stages a write to every part of the
// state a handler can reach, then fails or succeeds as told.
type scribble struct {
	Fail bool `json:"fail"`
}

func (scribble) Type() string { return "test.scribble" }

const scribbleRules = `version: 1
assets:
  ETH: {decimals: 18}
allowlist:
  cooling_off: 1h
  approvals: 1
  roles: [admin]
lock:
  unlock_delay: 1h
wallets:
  - name: eth
    wallets: [w]
    asset: ETH
    class: hot
    allowlist_required: false
    limits:
      per_tx: "1"
      max_fee: "0.01"
    approvals:
      - {min: "0", required: 1, roles: [admin]}
`

var errScribble = errors.New("scribble refused after writing")

func (p scribble) apply(t *txn) (applyOut, error) {
	t.putRequest(&Request{RequestCreate: RequestCreate{ID: "scribbled"}})
	t.putWallet(&Wallet{ID: "scribbled"})
	t.putVoter(Voter{ID: "scribbled", Address: "x"})
	t.holdNonce("scribbled/1", "scribbled")
	t.holdOutpoint("scribbled:0", "scribbled")
	t.recordSession("scribbled", "scribbled")
	t.putProposal(&Proposal{Change: ProposedChange{Policy: &policy.Change{ID: "proposed"}}})
	t.recordChange("scribbled")
	t.setApprovalCeiling(time.Hour)
	t.setGenesis("scribbled", []Node{{ID: "scribbled", KeyFingerprint: "scribbled"}}, 7)
	t.setRegistry(quorum.Registry{ClusterID: "scribbled"})
	t.setPolicy(t.policyState().RecordSpend(policy.Spend{RequestID: "scribbled", At: t.now}, time.Hour))
	r, err := policy.ParseRules([]byte(scribbleRules))
	if err != nil {
		return applyOut{}, err
	}
	t.setRules(RulesDoc{Hash: r.Hash(), Body: []byte(scribbleRules)}, r)
	if p.Fail {
		return applyOut{}, errScribble
	}
	return changed("scribbled")
}

// TestTxnRefusalDiscardsStagedWrites: a handler that stages writes to every
// collection and then refuses leaves the state byte-identical; the same
// handler accepting commits all of them.
func TestTxnRefusalDiscardsStagedWrites(t *testing.T) {
	commandTypes["test.scribble"] = func() Command { return new(scribble) }
	t.Cleanup(func() { delete(commandTypes, "test.scribble") })
	f := NewFSM(nil, nil)
	encode := func() []byte {
		var b []byte
		_ = f.Read(func(st *State) error { b, _ = st.Encode(); return nil })
		return b
	}
	before := encode()
	entry, err := EncodeCommand("tester", time.Now(), scribble{Fail: true})
	if err != nil {
		t.Fatal(err)
	}
	res := f.Apply(&raft.Log{Index: 1, Term: 1, Data: entry}).(*applyResult)
	if !errors.Is(res.err, errScribble) {
		t.Fatalf("apply: %v, want the scribble refusal", res.err)
	}
	if !bytes.Equal(before, encode()) {
		t.Fatal("a refused command's staged writes reached the state")
	}
	entry, _ = EncodeCommand("tester", time.Now(), scribble{})
	if res := f.Apply(&raft.Log{Index: 2, Term: 1, Data: entry}).(*applyResult); res.err != nil {
		t.Fatal(res.err)
	}
	_ = f.Read(func(st *State) error {
		if st.Requests["scribbled"] == nil || st.Wallets["scribbled"] == nil || st.Voters["scribbled"] == nil ||
			st.Nonces["scribbled/1"] == "" || st.Outpoints["scribbled:0"] == "" || st.Sessions["scribbled"] == "" || st.Proposals["proposed"] == nil || st.Changes["scribbled"] != 2 || st.MaxApprovalValidity != time.Hour ||
			st.GenesisHash != "scribbled" || st.Nodes["scribbled"] == nil ||
			st.Registry.ClusterID != "scribbled" || len(st.Policy.History()) != 1 || st.ActivePolicy() == nil || st.Index != 2 {
			t.Fatalf("accepted command's writes not all committed: %+v", st)
		}
		return nil
	})
}
