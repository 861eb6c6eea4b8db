package eth

import (
	"context"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// sendFrom signs a plain ETH transfer with a go-ethereum key at the
// chain's pending nonce and suggested fees.
func sendFrom(ctx context.Context, t *testing.T, c RPC, key []byte, to common.Address, value *big.Int) *Signed {
	t.Helper()
	k, err := crypto.ToECDSA(key)
	if err != nil {
		t.Fatal(err)
	}
	nonce, err := c.Nonce(ctx, crypto.PubkeyToAddress(k.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	fees, err := c.SuggestFees(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := types.SignNewTx(k, types.LatestSignerForChainID(SimulatedChainID), &types.DynamicFeeTx{
		ChainID: SimulatedChainID, Nonce: nonce, GasTipCap: fees.GasTipCap, GasFeeCap: fees.GasFeeCap, Gas: 21000, To: &to, Value: value})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSigned(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestServeOverHTTP: a client in front of the served chain (eth.Dial, as
// a node in another process would) reads the chain ID and a funded
// account's balance, broadcasts a transfer and finds it mined at once
// (CommitOnSend), with the balances moved; the same chain answers through
// its in-process client. Unknown receipts are ErrNotMined through the
// proxy too; a GET is refused.
func TestServeOverHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := crypto.Keccak256([]byte("serve-test-funded"))
	k, _ := crypto.ToECDSA(key)
	from := crypto.PubkeyToAddress(k.PublicKey)
	start := ether(t, "100")
	sv, err := NewServed(types.GenesisAlloc{from: {Balance: start}}, ServeConfig{CommitOnSend: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	if !strings.HasPrefix(sv.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %s", sv.URL())
	}
	c, err := Dial(ctx, sv.URL())
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.ChainID(ctx)
	if err != nil || id.Cmp(SimulatedChainID) != 0 {
		t.Fatalf("chain ID %v, %v", id, err)
	}
	bal, err := c.Balance(ctx, from, nil)
	if err != nil || bal.Cmp(start) != 0 {
		t.Fatalf("balance %v, %v; want %v", bal, err, start)
	}
	if _, err := c.Receipt(ctx, common.HexToHash("0x01")); !errors.Is(err, ErrNotMined) {
		t.Fatalf("unknown receipt: %v, want ErrNotMined", err)
	}
	to := common.HexToAddress("0x00000000000000000000000000000000000000aa")
	s := sendFrom(ctx, t, c, key, to, ether(t, "1.5"))
	h, err := c.Broadcast(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := WaitMined(ctx, c, h, 20*time.Millisecond)
	if err != nil || !rc.Success || rc.BlockNumber == 0 {
		t.Fatalf("receipt %+v, %v", rc, err)
	}
	for _, cl := range []RPC{c, sv} {
		got, err := cl.Balance(ctx, to, nil)
		if err != nil || got.Cmp(ether(t, "1.5")) != 0 {
			t.Fatalf("destination balance %v, %v", got, err)
		}
	}
	if n, err := c.Nonce(ctx, from); err != nil || n != 1 {
		t.Fatalf("nonce %d, %v", n, err)
	}
	// A second broadcast of the same transaction is the chain's error.
	if _, err := c.Broadcast(ctx, s); err == nil {
		t.Fatal("a replayed transaction was accepted")
	}
	resp, err := http.Get(sv.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

// TestServeBlockPeriod: without CommitOnSend, a transaction waits for
// the block loop, which mines it.
func TestServeBlockPeriod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := crypto.Keccak256([]byte("serve-test-period"))
	k, _ := crypto.ToECDSA(key)
	sv, err := NewServed(types.GenesisAlloc{crypto.PubkeyToAddress(k.PublicKey): {Balance: ether(t, "10")}}, ServeConfig{BlockPeriod: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	c, err := Dial(ctx, sv.URL())
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.Broadcast(ctx, sendFrom(ctx, t, c, key, common.HexToAddress("0xbb"), ether(t, "1")))
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := WaitMined(ctx, c, h, 20*time.Millisecond); err != nil || !rc.Success {
		t.Fatalf("receipt %+v, %v", rc, err)
	}
}

// TestServeRefusesNonLoopback: the chain has no authentication; it is
// served on loopback only.
func TestServeRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.1.2.3:8545", "example.com:1", "nonsense"} {
		if sv, err := NewServed(nil, ServeConfig{Addr: addr}); err == nil {
			sv.Close()
			t.Fatalf("%s: served", addr)
		}
	}
}
