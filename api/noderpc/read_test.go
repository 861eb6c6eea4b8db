package noderpc_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/custody-dev/custody/api/noderpc"
	"github.com/custody-dev/custody/ledger"
)

// TestReadRequestAndWallet: GET /node/v1/request and /node/v1/wallet
// answer from the asked node's own replica: a request written through the
// leader, read on every node, with its status and no sessions yet; the
// wallet with its committee; an unknown ID is ledger.ErrNotFound; a
// missing, repeated or extra query parameter and a POST are refused; no
// read changes the state.
func TestReadRequestAndWallet(t *testing.T) {
	h := newHarness(t, nil, 0)
	ctx := ctxT(t)
	leader := h.c.WaitLeader(nil)
	cl := h.client(h.follower())
	c := create(t, "wd-read", 1, "unsigned-tx:wd-read")
	out, err := cl.Submit(ctx, "backend:exchange", c)
	if err != nil {
		t.Fatal(err)
	}
	h.c.WaitConverged(h.c.Nodes...)
	for _, n := range h.c.Nodes {
		v, err := cl.Request(ctx, n.ID, "wd-read")
		if err != nil {
			t.Fatalf("%s: %v", n.ID, err)
		}
		if v.Request.Status != ledger.StatusAwaitingApprovals || v.Request.PayloadHash != c.PayloadHash || v.StateIndex < out.Index || len(v.Sessions) != 0 {
			t.Fatalf("%s: %+v", n.ID, v)
		}
		w, err := cl.Wallet(ctx, n.ID, "hot")
		if err != nil || w.Wallet.Threshold != 1 || len(w.Wallet.Committee) != 3 {
			t.Fatalf("%s: wallet %+v, %v", n.ID, w.Wallet, err)
		}
	}
	before := stateOf(t, leader.Store)
	if _, err := cl.Request(ctx, leader.ID, "no-such"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("unknown request: %v", err)
	}
	if _, err := cl.Wallet(ctx, leader.ID, "no-such"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("unknown wallet: %v", err)
	}
	tr := rawClient(h.follower().Identity, h.c.PKI.CA)
	for _, q := range []string{"", "?id=", "?id=a&id=b", "?id=a&x=1", "?ID=a"} {
		resp, err := tr.Get("https://" + h.addrs[leader.ID] + noderpc.PathRequest + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("query %q: %d", q, resp.StatusCode)
		}
	}
	resp, err := tr.Post("https://"+h.addrs[leader.ID]+noderpc.PathWallet+"?id=hot", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST wallet: %d", resp.StatusCode)
	}
	if after := stateOf(t, leader.Store); after != before {
		t.Fatalf("reads changed the state: %+v -> %+v", before, after)
	}
}
