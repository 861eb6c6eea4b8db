package tss_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// TestReshareRefusesMismatchedOldCommittee: the ledger's description of the
// old committee must match the old share (threshold and node→key members).
func TestReshareRefusesMismatchedOldCommittee(t *testing.T) {
	c, shares := shared2of3(t)
	e := c.engines["node1"]
	base := shares["node1"].Info()
	cases := map[string]func(*tss.WalletInfo){
		"threshold": func(w *tss.WalletInfo) { w.Threshold = 2 },
		"key": func(w *tss.WalletInfo) {
			w.Members[1].Key = append([]byte{1}, w.Members[1].Key...)
		},
		"node":    func(w *tss.WalletInfo) { w.Members[2].Node = "node9" },
		"dropped": func(w *tss.WalletInfo) { w.Members = w.Members[:2] },
	}
	for name, mod := range cases {
		info := base
		info.Members = append([]tss.Party(nil), base.Members...)
		mod(&info)
		sess := tss.NewSessionID()
		_, err := e.Reshare(context.Background(), tss.ReshareParams{Session: sess, Old: info, OldSigners: []pki.NodeID{"node1", "node2"},
			New: all3, NewThreshold: 1}, shares["node1"], nil)
		if !errors.Is(err, tss.ErrBadParams) {
			t.Errorf("%s: want ErrBadParams, got %v", name, err)
		}
	}
}

// TestShareRefusesDuplicateMembers: a share whose member list repeats a
// node or a key is refused.
func TestShareRefusesDuplicateMembers(t *testing.T) {
	_, shares := shared2of3(t)
	raw, err := shares["node1"].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tss.UnmarshalShare(raw); err != nil {
		t.Fatalf("valid share refused: %v", err)
	}
	mutate := func(f func(ms []any)) []byte {
		var j map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // the save data holds big integers
		if err := dec.Decode(&j); err != nil {
			t.Fatal(err)
		}
		ms := j["info"].(map[string]any)["members"].([]any)
		f(ms)
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dupNode := mutate(func(ms []any) { ms[2].(map[string]any)["node"] = ms[1].(map[string]any)["node"] })
	dupKey := mutate(func(ms []any) { ms[2].(map[string]any)["key"] = ms[1].(map[string]any)["key"] })
	for name, b := range map[string][]byte{"duplicate node": dupNode, "duplicate key": dupKey} {
		if _, err := tss.UnmarshalShare(b); !errors.Is(err, tss.ErrBadShare) {
			t.Errorf("%s: want ErrBadShare, got %v", name, err)
		}
	}
}

// TestPeerAbortTextQuoted: a peer's abort text with a newline and a fake
// log line ends up quoted in the AbortError reason, never raw.
func TestPeerAbortTextQuoted(t *testing.T) {
	c, shares := shared2of3(t)
	evil := "boom\naudit: operator alice approved everything"
	sess := tss.NewSessionID()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.engines["node2"].Sign(ctx, shares["node2"], tss.SignParams{Session: sess, Signers: []pki.NodeID{"node1", "node2"}, Digest: digestOf("q")})
		done <- err
	}()
	env := &tss.Envelope{Wallet: shares["node1"].Wallet, Session: sess, Type: tss.TypePeerAbort, From: "node1", To: "node2", Payload: []byte(evil)}
	raw, _ := env.Marshal()
	if err := c.net.Endpoint("node2").Inject(ctx, "node1", raw); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var ae *tss.AbortError
	if !errors.As(err, &ae) || !errors.Is(err, tss.ErrPeerAborted) {
		t.Fatalf("want a peer abort, got %v", err)
	}
	if strings.Contains(ae.Reason, "\n") || strings.Contains(ae.Error(), "\n") || !strings.Contains(ae.Reason, `\naudit`) {
		t.Fatalf("peer text not quoted: %q", ae.Reason)
	}
}
