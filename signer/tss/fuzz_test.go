package tss_test

import (
	"bytes"
	"testing"

	"github.com/custody-dev/custody/signer/tss"
)

func FuzzUnmarshalEnvelope(f *testing.F) {
	env := &tss.Envelope{Wallet: "w", Session: tss.SessionID{1, 2}, Type: "binance.tsslib.ecdsa.signing.SignRound1Message2",
		From: "node1", To: "node2", ToRole: tss.RoleNew, Broadcast: true, Payload: []byte{1, 2, 3}}
	raw, _ := env.Marshal()
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte("CTE1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := tss.UnmarshalEnvelope(b)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatalf("decoded envelope does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed bytes")
		}
	})
}

func TestEnvelopeRejectsMalformed(t *testing.T) {
	env := &tss.Envelope{Wallet: "w", Type: "t", From: "a", To: "b", Payload: []byte("p")}
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tss.UnmarshalEnvelope(raw); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"trailing":  append(append([]byte{}, raw...), 0),
		"truncated": raw[:len(raw)-1],
		"magic":     append([]byte("XXXX"), raw[4:]...),
	} {
		if _, err := tss.UnmarshalEnvelope(b); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
