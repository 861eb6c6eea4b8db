package ledger_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	. "github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// signedReq takes a new request through approval, claim and a signed
// result recording txHash.
func (h *fsmHarness) signedReq(id string, nonce uint64, txHash string) *Request {
	h.t.Helper()
	r := h.approved(id, nonce)
	cl := h.claimCmd(id)
	cl.SessionID = strings.Repeat("0", 62) + string(rune('a'+nonce%6)) + "b"
	h.must("n1", cl)
	r = h.must("n1", RecordResult{RequestID: r.ID, SessionID: cl.SessionID, Signed: []byte("raw " + id), TxHash: txHash})
	if r.Status != StatusSigned {
		h.t.Fatalf("%s is %s after its result", id, r.Status)
	}
	return r
}

// TestFSMBroadcastAndChainStatus: signed → broadcast only under the signed
// transaction's own hash; broadcast → confirmed, reverted, dropped or
// replaced; dropped → what the chain says later. Every refusal leaves the
// state unchanged; no chain status releases the nonce or leads back to a
// claim, a reclaim, a result or an expiry.
func TestFSMBroadcastAndChainStatus(t *testing.T) {
	h := newHarness(t)
	r := h.signedReq("b1", 1, "0xaa01")
	if enc := h.encoded(); bytes.Contains(enc, []byte(`"on_chain"`)) {
		t.Fatal("a state without broadcasts encodes on_chain: old states would hash differently")
	}

	h.refuse(ErrConflict, "n1", RecordBroadcast{RequestID: r.ID, TxHash: "0xaa02"})
	h.refuse(ErrConflict, "n1", RecordBroadcast{RequestID: r.ID})
	h.refuse(ErrNotFound, "n1", RecordBroadcast{RequestID: "nope", TxHash: "0xaa01"})
	h.refuse(ErrWrongStatus, "n1", RecordBroadcast{RequestID: h.approved("b-approved", 2).ID, TxHash: "0xaa01"})
	h.refuse(ErrWrongStatus, "n1", RecordChainStatus{RequestID: r.ID, TxHash: "0xaa01", Status: StatusConfirmed, Block: 3, Confirmations: 1})

	got := h.must("n1", RecordBroadcast{RequestID: r.ID, TxHash: "0xaa01"})
	if got.Status != StatusBroadcast || got.OnChain == nil || got.OnChain.TxHash != "0xaa01" ||
		got.OnChain.BroadcastIndex != h.idx || !got.OnChain.BroadcastAt.Equal(h.now) || got.OnChain.BroadcastBy != "n1" {
		t.Fatalf("after broadcast: %s %+v", got.Status, got.OnChain)
	}
	if got.UpdatedIdx != h.idx || !bytes.Equal(got.Result.Signed, r.Result.Signed) {
		t.Fatalf("broadcast changed the result or left the index: %+v", got)
	}
	h.refuse(ErrWrongStatus, "n1", RecordBroadcast{RequestID: r.ID, TxHash: "0xaa01"})

	for name, bad := range map[string]RecordChainStatus{
		"a status that is not the chain's":  {Status: StatusSigned},
		"empty status":                      {},
		"confirmed without block":           {Status: StatusConfirmed, Confirmations: 2},
		"confirmed without confirmations":   {Status: StatusConfirmed, Block: 9},
		"reverted without block":            {Status: StatusReverted, Confirmations: 1},
		"dropped with confirmations":        {Status: StatusDropped, Confirmations: 1},
		"replaced with confirmations":       {Status: StatusReplaced, Confirmations: 3},
		"a detail longer than 512 bytes":    {Status: StatusDropped, Detail: strings.Repeat("x", 513)},
		"confirmed naming another tx (ETH)": {Status: StatusConfirmed, Block: 9, Confirmations: 2, TxHash: "0xaa02"},
	} {
		bad.RequestID = r.ID
		want := ErrInvalid
		if bad.TxHash != "" {
			want = ErrConflict
		} else {
			bad.TxHash = "0xaa01"
		}
		before := h.hash()
		if _, err := h.apply("n1", bad); !errors.Is(err, want) || h.hash() != before {
			t.Errorf("%s: %v (state changed: %v), want %v", name, err, h.hash() != before, want)
		}
	}

	// Dropped: reported; still tracked; nothing released or re-signed.
	got = h.must("n1", RecordChainStatus{RequestID: r.ID, TxHash: "0xaa01", Status: StatusDropped, Detail: "not in the mempool"})
	if got.Status != StatusDropped || got.OnChain.Detail != "not in the mempool" || got.OnChain.StatusIndex != h.idx || got.OnChain.Block != 0 {
		t.Fatalf("after dropped: %s %+v", got.Status, got.OnChain)
	}
	h.refuse(ErrWrongStatus, "n1", RecordChainStatus{RequestID: r.ID, TxHash: "0xaa01", Status: StatusDropped})
	noResign := func(id string) {
		t.Helper()
		h.refuse(ErrAllocated, "backend", func() RequestCreate { c := createCmd(id+"-again", 1); c.ExpiresAt = h.now.Add(time.Hour); return c }())
		cl := h.claimCmd(id)
		cl.SessionID = "ff" + cl.SessionID[2:]
		h.refuse(ErrWrongStatus, "n1", cl)
		cl.ExpectStatus = h.req(id).Status
		h.refuse(ErrWrongStatus, "n1", cl)
		h.refuse(ErrWrongStatus, "n1", ReclaimSession{RequestID: id, FailedSession: h.req(id).Claim.SessionID, SessionID: "fe" + cl.SessionID[2:], Term: h.term, Signers: allSigners})
		h.refuse(ErrWrongStatus, "n1", RecordResult{RequestID: id, SessionID: h.req(id).Claim.SessionID, Signed: []byte("another")})
		h.refuse(ErrWrongStatus, "n1", RecordBroadcast{RequestID: id, TxHash: h.req(id).Result.TxHash})
		later := h.now
		h.now = h.now.Add(48 * time.Hour) // past the request's expiry
		h.refuse(ErrWrongStatus, "n1", ExpireRequest{RequestID: id})
		h.now = later
	}
	noResign(r.ID)

	// Replaced after dropped: final, still nothing released.
	got = h.must("n1", RecordChainStatus{RequestID: r.ID, TxHash: "0xaa01", Status: StatusReplaced, Detail: "nonce 1 mined by 0xbeef"})
	if got.Status != StatusReplaced || !got.Status.Terminal() || !got.Status.Signed() {
		t.Fatalf("after replaced: %s", got.Status)
	}
	h.refuse(ErrWrongStatus, "n1", RecordChainStatus{RequestID: r.ID, TxHash: "0xaa01", Status: StatusConfirmed, Block: 5, Confirmations: 1})
	h.refuse(ErrWrongStatus, "n1", RecordChainStatus{RequestID: r.ID, TxHash: "0xaa01", Status: StatusDropped})
	h.refuse(ErrWrongStatus, "n1", RecordChainStatus{RequestID: r.ID, TxHash: "0xaa01", Status: StatusReplaced})
	noResign(r.ID)
	var held []uint64
	_ = h.f.Read(func(st *State) error { held = st.HeldNonces("hot"); return nil })
	if len(held) == 0 || held[0] != 1 {
		t.Fatalf("nonce 1 released after replaced: held %v", held)
	}

	// Confirmed: the block and confirmations recorded; final.
	c := h.signedReq("b3", 3, "0xcc03")
	h.must("n1", RecordBroadcast{RequestID: c.ID, TxHash: "0xcc03"})
	got = h.must("n1", RecordChainStatus{RequestID: c.ID, TxHash: "0xcc03", Status: StatusConfirmed, Block: 41, Confirmations: 6})
	if got.Status != StatusConfirmed || got.OnChain.Block != 41 || got.OnChain.Confirmations != 6 || got.OnChain.BroadcastIndex == 0 {
		t.Fatalf("after confirmed: %s %+v", got.Status, got.OnChain)
	}
	h.refuse(ErrWrongStatus, "n1", RecordChainStatus{RequestID: c.ID, TxHash: "0xcc03", Status: StatusDropped})
	noResign(c.ID)

	// Reverted: mined, failed; the nonce is spent either way.
	v := h.signedReq("b5", 5, "0xee05")
	h.must("n1", RecordBroadcast{RequestID: v.ID, TxHash: "0xee05"})
	if got = h.must("n1", RecordChainStatus{RequestID: v.ID, TxHash: "0xee05", Status: StatusReverted, Block: 50, Confirmations: 1}); got.Status != StatusReverted {
		t.Fatalf("after reverted: %s", got.Status)
	}
	noResign(v.ID)

	// Dropped, then mined after all.
	d := h.signedReq("b4", 4, "0xdd04")
	h.must("n1", RecordBroadcast{RequestID: d.ID, TxHash: "0xdd04"})
	h.must("n1", RecordChainStatus{RequestID: d.ID, TxHash: "0xdd04", Status: StatusDropped})
	h.refuse(ErrConflict, "n1", RecordChainStatus{RequestID: d.ID, TxHash: "0xdd05", Status: StatusConfirmed, Block: 60, Confirmations: 2})
	if got = h.must("n1", RecordChainStatus{RequestID: d.ID, TxHash: "0xdd04", Status: StatusConfirmed, Block: 60, Confirmations: 2}); got.Status != StatusConfirmed || got.OnChain.Detail != "" {
		t.Fatalf("dropped then mined: %s %+v", got.Status, got.OnChain)
	}
}

// TestFSMBroadcastColdImport: a cold import with its hash is broadcast like
// a hot result; one recorded without a hash is refused.
func TestFSMBroadcastColdImport(t *testing.T) {
	h := newHarness(t)
	for i, hash := range []string{"c0ffee", ""} {
		id := []string{"cold-1", "cold-2"}[i]
		c := RequestCreate{
			ID:          id,
			Withdrawal:  policy.Withdrawal{Wallet: "cold", Asset: "BTC", Chain: "btc", Network: "regtest", To: "bcrt1qdest", Amount: amount.FromUint64(5000)},
			Payload:     []byte("psbt"),
			PayloadHash: quorum.Hash{byte(9 + i)},
			Outpoints:   []string{id + ":0"},
			ExpiresAt:   h.now.Add(time.Hour),
		}
		r := h.must("backend", c)
		h.must("api", alice.approve(t, r, h.now.Add(time.Hour)))
		h.must("api", carol.approve(t, r, h.now.Add(time.Hour)))
		h.exported(id)
		h.must("n1", h.importCmd(id, []byte("signed tx"), hash))
	}
	h.refuse(ErrInvalid, "n1", RecordBroadcast{RequestID: "cold-2", TxHash: ""})
	if got := h.must("n1", RecordBroadcast{RequestID: "cold-1", TxHash: "c0ffee"}); got.Status != StatusBroadcast {
		t.Fatalf("cold broadcast: %s", got.Status)
	}
	got := h.must("n1", RecordChainStatus{RequestID: "cold-1", TxHash: "c0ffee", Status: StatusConfirmed, Block: 500, Confirmations: 1})
	if got.Status != StatusConfirmed {
		t.Fatalf("cold confirmed: %s", got.Status)
	}
	var owner string
	_ = h.f.Read(func(st *State) error { owner = st.Outpoints["cold-1:0"]; return nil })
	if owner != "cold-1" {
		t.Fatalf("outpoint of a confirmed cold request held by %q", owner)
	}
}
