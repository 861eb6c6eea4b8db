package ledger_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
)

// decodeSamples are commands carrying operator signatures, whose payloads
// must survive DecodeCommand byte for byte.
func decodeSamples(t testing.TB) []Command {
	exp := fsmT0.Add(time.Hour)
	c := initiated(createCmd("dc-1", 7), dave, exp)
	c.ExpiresAt = exp
	if c.Initiation == nil {
		t.Fatal("no initiation signature")
	}
	r := &Request{RequestCreate: c}
	return []Command{
		c,
		bob.approve(t, r, exp),
		ClaimSession{RequestID: "dc-1", ExpectStatus: StatusApproved, SessionID: strings.Repeat("ab", 32), Term: 3, Signers: allSigners},
		CheckpointSign{Index: 9, Term: 2, StateHash: strings.Repeat("cd", 32), AuditSeq: 4, AuditHead: GenesisHash},
		genesisCmd(),
		walletCreate(t, "dc-wallet", "dcw", allSigners, 1, exp, alice, carol),
		WalletKeyed{Wallet: "dcw", PubKey: testPubKey(3), Attestations: []CheckpointSig{{Node: "n1", PublicKey: []byte{1, 2}, Signature: []byte{3, 4}}}},
		RecordBroadcast{RequestID: "dc-1", TxHash: "0x" + strings.Repeat("5e", 32)},
		RecordChainStatus{RequestID: "dc-1", TxHash: "0x" + strings.Repeat("5e", 32), Status: StatusConfirmed, Block: 12, Confirmations: 3, Detail: "receipt status 1"},
		ChainWitness{RequestID: "dc-1", TxHash: "0x" + strings.Repeat("5e", 32), Status: StatusConfirmed, Block: 12, Sig: CheckpointSig{Node: "n2", PublicKey: []byte{1, 2}, Signature: []byte{3, 4}}},
		walletReshare(t, "dc-reshare", "dcw", []pki.NodeID{"n2", "n3"}, 1, exp, alice, carol),
		WalletReshared{Wallet: "dcw", PubKey: testPubKey(3), Session: strings.Repeat("c3", 32), Attestations: []CheckpointSig{{Node: "n2", PublicKey: []byte{1, 2}, Signature: []byte{3, 4}}}},
	}
}

// TestDecodeCommand: every command type decodes from its payload into the
// command EncodeCommand would write again byte for byte (signatures
// included); malformed payloads are refused with ErrInvalid.
func TestDecodeCommand(t *testing.T) {
	for _, cmd := range decodeSamples(t) {
		p, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommand(cmd.Type(), p)
		if err != nil {
			t.Fatalf("%s: %v", cmd.Type(), err)
		}
		if got.Type() != cmd.Type() {
			t.Errorf("decoded %s as %s", cmd.Type(), got.Type())
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, p) {
			t.Errorf("%s: re-encoded payload differs:\n got %s\nwant %s", cmd.Type(), again, p)
		}
		want, _ := EncodeCommand("node:n1", fsmT0, cmd)
		have, _ := EncodeCommand("node:n1", fsmT0, got)
		if !bytes.Equal(want, have) {
			t.Errorf("%s: log entry differs after decoding", cmd.Type())
		}
	}
	if a, ok := decodeSamples(t)[1].(Approve); ok {
		p, _ := json.Marshal(a)
		got, err := DecodeCommand(CmdApprove, p)
		if err != nil {
			t.Fatal(err)
		}
		if sig := got.(*Approve).Approval.Signature; !bytes.Equal(sig, a.Approval.Signature) || len(sig) == 0 {
			t.Errorf("approval signature %x, want %x", sig, a.Approval.Signature)
		}
	} else {
		t.Fatal("second sample is not an Approve")
	}
	for _, typ := range CommandTypes() {
		if _, err := DecodeCommand(typ, []byte(`{}`)); err != nil {
			t.Errorf("%s: empty object refused: %v", typ, err)
		}
	}

	refused := map[string]struct {
		typ     string
		payload string
	}{
		"unknown type":       {"request.nuke", `{}`},
		"empty type":         {"", `{}`},
		"unknown field":      {CmdApprove, `{"request_id":"x","extra":1}`},
		"trailing data":      {CmdApprove, `{"request_id":"x"} {}`},
		"null":               {CmdApprove, `null`},
		"null with space":    {CmdApprove, " null\n"},
		"empty":              {CmdApprove, ``},
		"not an object":      {CmdApprove, `[1]`},
		"wrong field type":   {CmdApprove, `{"request_id":7}`},
		"truncated":          {CmdRequestCreate, `{"id":"x"`},
		"bad signature b64":  {CmdApprove, `{"approval":{"signature":"!!"}}`},
		"envelope, not body": {CmdApprove, `{"v":1,"type":"request.approve","payload":{}}`},
	}
	for name, tc := range refused {
		cmd, err := DecodeCommand(tc.typ, []byte(tc.payload))
		if !errors.Is(err, ErrInvalid) || cmd != nil {
			t.Errorf("%s: got %v, %v; want ErrInvalid and no command", name, cmd, err)
		}
	}
}

// FuzzDecodeCommand: DecodeCommand never panics, and what it accepts
// re-encodes to a payload it accepts again as the same command.
func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range decodeSamples(f) {
		p, err := json.Marshal(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(cmd.Type(), p)
	}
	f.Add(CmdApprove, []byte(`{"request_id":"x","extra":1}`))
	f.Add(CmdApprove, []byte(`null`))
	f.Add("request.nuke", []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		cmd, err := DecodeCommand(typ, payload)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || cmd != nil {
				t.Fatalf("refusal %v with command %v", err, cmd)
			}
			return
		}
		if cmd.Type() != typ {
			t.Fatalf("decoded %q as %q", typ, cmd.Type())
		}
		p, err := json.Marshal(cmd)
		if err != nil {
			return // e.g. a time outside what encoding/json writes
		}
		again, err := DecodeCommand(typ, p)
		if err != nil {
			t.Fatalf("re-encoded %s refused: %v\n%s", typ, err, p)
		}
		p2, _ := json.Marshal(again)
		if !bytes.Equal(p, p2) {
			t.Fatalf("%s not stable:\n%s\n%s", typ, p, p2)
		}
	})
}
