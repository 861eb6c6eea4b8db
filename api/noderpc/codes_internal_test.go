package noderpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// TestErrorCodesRoundTrip: every ledger sentinel, member refusal and RPC
// error, wrapped as the handlers see it, goes through the wire shape and
// comes back matching its sentinel (and only its own), with its code;
// the not-leader error keeps the leader; codes are unique; an unknown
// error is internal and its text does not cross the wire.
func TestErrorCodesRoundTrip(t *testing.T) {
	if codes := Codes(); len(slices.Compact(slices.Sorted(slices.Values(codes)))) != len(codes) {
		t.Fatalf("duplicate codes in %v", codes)
	}
	wire := func(err error, requestID string) (error, wireError, int) {
		we, status, _ := encodeError(err)
		b, _ := json.Marshal(errorBody{Error: we})
		var eb errorBody
		if err := decodeStrict(b, &eb); err != nil {
			t.Fatal(err)
		}
		return decodeError("n2", status, eb.Error, requestID), eb.Error, status
	}
	for _, c := range ledgerCodes {
		got, we, status := wire(fmt.Errorf("ledger: submit: %w: detail", c.err), "")
		var e *Error
		if !errors.Is(got, c.err) || we.Code != c.code || status != c.status || !errors.As(got, &e) || e.Peer != "n2" || e.Code != c.code {
			t.Errorf("%s: %v (%d %s)", c.code, got, status, we.Code)
		}
		for _, o := range ledgerCodes {
			if o.err != c.err && errors.Is(got, o.err) {
				t.Errorf("%s also matches %s", c.code, o.code)
			}
		}
	}
	got, _, _ := wire(&ledger.NotLeaderError{LeaderID: "n3", LeaderAddr: "127.0.0.1:7"}, "")
	var nl *ledger.NotLeaderError
	if !errors.Is(got, ledger.ErrNotLeader) || !errors.As(got, &nl) || nl.LeaderID != "n3" || nl.LeaderAddr != "127.0.0.1:7" {
		t.Errorf("not leader: %v", got)
	}
	for _, c := range memberCodes {
		got, we, _ := wire(&member.RefusalError{Member: "n2", RequestID: "wd", Err: fmt.Errorf("%w: detail", c.err)}, "wd")
		var ref *member.RefusalError
		if !errors.Is(got, c.err) || we.Code != c.code || !errors.As(got, &ref) || ref.Member != "n2" || ref.RequestID != "wd" {
			t.Errorf("%s: %v", c.code, got)
		}
		for _, o := range memberCodes {
			if o.err != c.err && errors.Is(got, o.err) {
				t.Errorf("%s also matches %s", c.code, o.code)
			}
		}
	}
	for _, c := range rpcCodes {
		got, we, status := wire(fail(c.code, "noderpc: detail"), "")
		if !errors.Is(got, c.err) || we.Code != c.code || status != c.status {
			t.Errorf("%s: %v", c.code, got)
		}
	}
	// A creator's build refusal (the daemon wraps the sentinel) keeps its
	// message: it is about the caller's request.
	if got, we, status := wire(fmt.Errorf("%w: btc: insufficient funds", ErrCreateRefused), ""); !errors.Is(got, ErrCreateRefused) ||
		we.Code != CodeCreateRefused || status != http.StatusUnprocessableEntity || !strings.Contains(we.Message, "insufficient funds") {
		t.Errorf("create refused: %v (%d %+v)", got, status, we)
	}
	got, we, status := wire(errors.New("hsm: pin 1234 rejected"), "")
	if !errors.Is(got, ErrInternal) || status != http.StatusInternalServerError || we.Message == "" {
		t.Errorf("internal: %v", got)
	}
	if b, _ := json.Marshal(we); strings.Contains(string(b), "1234") {
		t.Errorf("internal error text crossed the wire: %s", b)
	}
	// A code from a newer build: an *Error, no sentinel.
	var e *Error
	if got := decodeError("n2", 409, wireError{Code: "ledger.future", Message: "m"}, ""); !errors.As(got, &e) || errors.Unwrap(got) != nil {
		t.Errorf("unknown code: %v", got)
	}
}

// FuzzDecodeSubmit: the submit decoder never panics; what it accepts has
// an actor and a command of a known type that re-encodes to a body it
// accepts again.
func FuzzDecodeSubmit(f *testing.F) {
	p, _ := json.Marshal(ledger.CheckpointSign{Index: 9, Term: 2, AuditSeq: 4, AuditHead: ledger.GenesisHash})
	good, _ := json.Marshal(submitRequest{Actor: "node:n2", Type: ledger.CmdCheckpointSign, Payload: p})
	f.Add(good)
	f.Add([]byte(`{"actor":"a","type":"request.approve","payload":{"request_id":"x"}}`))
	f.Add([]byte(`{"actor":"a","type":"request.approve","payload":null}`))
	f.Add([]byte(`{"actor":"a","type":"x","payload":{},"extra":1}`))
	f.Add([]byte(`{"actor":"a"}{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		actor, cmd, err := decodeSubmit(body)
		if err != nil {
			if cmd != nil {
				t.Fatal("a command with an error")
			}
			return
		}
		if actor == "" || cmd == nil || !slices.Contains(ledger.CommandTypes(), cmd.Type()) {
			t.Fatalf("accepted actor %q command %v", actor, cmd)
		}
		p, err := json.Marshal(cmd)
		if err != nil {
			return
		}
		b, _ := json.Marshal(submitRequest{Actor: actor, Type: cmd.Type(), Payload: p})
		if _, _, err := decodeSubmit(b); err != nil {
			t.Fatalf("re-encoded body refused: %v\n%s", err, b)
		}
	})
}

// FuzzDecodeSign: the sign decoder never panics; what it accepts has a
// request ID and round-trips through the wire claim unchanged.
func FuzzDecodeSign(f *testing.F) {
	good, _ := json.Marshal(signRequest{RequestID: "wd", Claim: toWireClaim(member.Claim{Index: 3, Signers: []pki.NodeID{"n1", "n2"}})})
	f.Add(good)
	f.Add([]byte(`{"request_id":"x","claim":{"session_id":"zz"}}`))
	f.Add([]byte(`{"request_id":"x","claim":{"payload_hash":"0x00"}}`))
	f.Add([]byte(`{"request_id":"","claim":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		id, c, err := decodeSign(body)
		if err != nil {
			return
		}
		if id == "" {
			t.Fatal("accepted an empty request ID")
		}
		b, _ := json.Marshal(signRequest{RequestID: id, Claim: toWireClaim(c)})
		id2, c2, err := decodeSign(b)
		if err != nil || id2 != id || c2.SessionID != c.SessionID || c2.Digest != c.Digest || c2.PayloadHash != c.PayloadHash || c2.Index != c.Index || !slices.Equal(c2.Signers, c.Signers) {
			t.Fatalf("round trip: %v %q %+v -> %+v", err, id2, c, c2)
		}
	})
}

// FuzzDecodeKeygen: the keygen decoder never panics and round-trips what
// it accepts.
func FuzzDecodeKeygen(f *testing.F) {
	good, _ := json.Marshal(keygenRequest{Wallet: "w1", Session: strings.Repeat("ab", 32)})
	f.Add(good)
	f.Add([]byte(`{"wallet":"w1","session":"zz"}`))
	f.Add([]byte(`{"wallet":"","session":""}`))
	f.Add([]byte(`{"wallet":"w1","session":"` + strings.Repeat("ab", 32) + `","extra":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		w, sid, err := decodeKeygen(body)
		if err != nil {
			return
		}
		if w == "" {
			t.Fatal("accepted an empty wallet")
		}
		b, _ := json.Marshal(keygenRequest{Wallet: w, Session: sid.String()})
		w2, sid2, err := decodeKeygen(b)
		if err != nil || w2 != w || sid2 != sid {
			t.Fatalf("round trip: %v %q %s", err, w2, sid2)
		}
	})
}

// FuzzDecodeTestSign: the test-sign decoder never panics and round-trips
// what it accepts.
func FuzzDecodeTestSign(f *testing.F) {
	good, _ := json.Marshal(testSignRequest{Wallet: "w1", PubKey: make([]byte, 33), Session: strings.Repeat("cd", 32), Signers: []pki.NodeID{"n1", "n2"}})
	f.Add(good)
	f.Add([]byte(`{"wallet":"w1","pubkey":"AA==","session":"` + strings.Repeat("cd", 32) + `","signers":[]}`))
	f.Add([]byte(`{"wallet":"w1","pubkey":"!!","session":"x","signers":["n1"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, sid, err := decodeTestSign(body)
		if err != nil {
			return
		}
		if req.Wallet == "" || len(req.PubKey) == 0 || len(req.Signers) == 0 {
			t.Fatalf("accepted an incomplete request %+v", req)
		}
		req.Session = sid.String()
		b, _ := json.Marshal(req)
		req2, sid2, err := decodeTestSign(b)
		if err != nil || sid2 != sid || req2.Wallet != req.Wallet || string(req2.PubKey) != string(req.PubKey) || !slices.Equal(req2.Signers, req.Signers) {
			t.Fatalf("round trip: %v %+v", err, req2)
		}
	})
}

// FuzzDecodeReshare: the reshare and wallet-info decoders never panic and
// round-trip what they accept.
func FuzzDecodeReshare(f *testing.F) {
	good, _ := json.Marshal(reshareRequest{Wallet: "w1", Session: strings.Repeat("ef", 32), OldSigners: []pki.NodeID{"n1", "n2"},
		OldMembers: []tss.Party{{Node: "n1", Key: []byte{1}}, {Node: "n2", Key: []byte{2}}}})
	f.Add(good)
	f.Add([]byte(`{"wallet":"w1","session":"` + strings.Repeat("ef", 32) + `","old_signers":[],"old_members":null}`))
	f.Add([]byte(`{"wallet":"w1","session":"x","old_signers":["n1"],"extra":1}`))
	f.Add([]byte(`{"wallet":"w1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if w, err := decodeWallet(body); err == nil {
			b, _ := json.Marshal(walletRequest{Wallet: w})
			if w2, err := decodeWallet(b); err != nil || w2 != w || w == "" {
				t.Fatalf("wallet round trip: %v %q", err, w2)
			}
		}
		req, sid, err := decodeReshare(body)
		if err != nil {
			return
		}
		if req.Wallet == "" || len(req.OldSigners) == 0 {
			t.Fatalf("accepted an incomplete request %+v", req)
		}
		req.Session = sid.String()
		b, _ := json.Marshal(req)
		req2, sid2, err := decodeReshare(b)
		if err != nil || sid2 != sid || !reflect.DeepEqual(req2, req) {
			t.Fatalf("round trip: %v %+v", err, req2)
		}
	})
}

// FuzzDecodeCreate: the withdrawal-create decoder never panics; what it
// accepts has a principal, the required fields, a positive amount, an
// expiry and a signed initiate statement, and re-encodes to a body it accepts again unchanged.
func FuzzDecodeCreate(f *testing.F) {
	f.Add([]byte(`{"principal":"backend","withdrawal":{"id":"wd-1","wallet":"hot-eth","asset":"ETH","to":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","amount":"1000","expires_at":"2026-12-01T00:00:00Z","initiation":{"cluster_id":"c","request_id":"wd-1","payload_hash":"` + strings.Repeat("ab", 32) + `","decision":"initiate","expiry":"2026-12-01T00:00:00Z","device_id":"d","signature":"AAEC"}}}`))
	f.Add([]byte(`{"principal":"backend","withdrawal":{"id":"wd-1","amount":"0"}}`))
	f.Add([]byte(`{"principal":"backend","withdrawal":{"id":"wd-1","amount":"-1"}}`))
	f.Add([]byte(`{"principal":"","withdrawal":{},"extra":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, w, err := decodeCreate(body)
		if err != nil {
			return
		}
		if p == "" || w.ID == "" || w.Wallet == "" || w.Asset == "" || w.To == "" || w.Amount.Sign() <= 0 || w.ExpiresAt.IsZero() ||
			w.Initiation.Decision != quorum.Initiate || len(w.Initiation.Signature) == 0 {
			t.Fatalf("accepted %q %+v", p, w)
		}
		b, err := json.Marshal(createRequest{Principal: p, Withdrawal: w})
		if err != nil {
			t.Fatal(err)
		}
		p2, w2, err := decodeCreate(b)
		b2, _ := json.Marshal(createRequest{Principal: p2, Withdrawal: w2})
		if err != nil || string(b2) != string(b) {
			t.Fatalf("round trip: %v\n%s\n%s", err, b, b2)
		}
	})
}
