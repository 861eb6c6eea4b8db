package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/custody-dev/custody/chains/btc/btctest"
	"github.com/custody-dev/custody/chains/eth/gethtest"
	"github.com/custody-dev/custody/devnet"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

// TestDevnetStory runs `custody devnet --json` (the real binary: the test
// binary as the CLI, its nodes on committed pre-params fixtures) and pipes
// its output into a verifier written here from go-ethereum's and btcd's own
// checks: every signed withdrawal's signature must verify independently of
// custody's code (types.Sender for Ethereum, txscript's engine against the
// spent outputs for Bitcoin), pay what the line says, and the story's steps
// must come out as the story says.
func TestDevnetStory(t *testing.T) {
	softhsmtest.SharedEnv(t)
	btcd := btctest.FindTool(t, "btcd")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "devnet")
	cmd := exec.CommandContext(ctx, os.Args[0], "devnet", "--json", "--keep", "--dir", dir, "--btcd", btcd)
	cmd.Env = append(os.Environ(), execEnv+"=1", devnetFixturesEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var steps []devnet.Step
	var raw bytes.Buffer
	kept := false
	var ceremonies *coldCeremonies
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		raw.Write(sc.Bytes())
		raw.WriteByte('\n')
		var st devnet.Step
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			t.Fatalf("a line that is not a step: %q: %v", sc.Text(), err)
		}
		if st.Step == "devnet" && st.Outcome == "kept running" {
			kept = true
			break
		}
		steps = append(steps, st)
		// The story funds its wallets once its keygens are done: from
		// then on it mostly waits, and the cold path's offline keygen
		// ceremonies run meanwhile.
		if ceremonies == nil && st.Step == "fund" && coldPathUnavailable() == "" {
			ceremonies = startColdCeremonies(t, dir)
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pipe); exited <- cmd.Wait() }()
	if !kept {
		err := <-exited
		for _, id := range []string{"n1", "n2", "n3", "n4"} {
			b, _ := os.ReadFile(filepath.Join(dir, "logs", id+".log"))
			t.Logf("%s log:\n%s", id, tail(string(b), 30))
		}
		t.Fatalf("custody devnet: %v\nstdout:\n%s\nstderr:\n%s", err, raw.String(), stderr.String())
	}
	coldOnDevnet(t, dir, ceremonies)
	keptDevnet(t, dir, exited)
	verifyStory(t, raw.Bytes(), []string{"ETH", "TKN", "BTC"})
}

// TestDevnetStoryGeth runs the story's Ethereum part against a real geth
// --dev process (custody devnet --eth-node geth --no-btc): the nodes' ETH
// adapter estimates, broadcasts and tracks the ETH and ERC-20 withdrawals
// over geth's own JSON-RPC, and the same verifier checks every signed
// withdrawal. geth is large to build, so it is not in make tools: the test
// skips without it unless CUSTODY_REQUIRE_GETH=1 (make test-geth).
func TestDevnetStoryGeth(t *testing.T) {
	geth := gethtest.Find(t)
	softhsmtest.SharedEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, os.Args[0], "devnet", "--json", "--dir", filepath.Join(dir, "devnet"), "--eth-node", "geth", "--geth", geth, "--no-btc")
	cmd.Env = append(os.Environ(), execEnv+"=1", devnetFixturesEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		for _, id := range []string{"n1", "n2", "n3", "n4"} {
			b, _ := os.ReadFile(filepath.Join(dir, "devnet", "logs", id+".log"))
			t.Logf("%s log:\n%s", id, tail(string(b), 30))
		}
		b, _ := os.ReadFile(filepath.Join(dir, "devnet", "geth", "geth.log"))
		t.Logf("geth log:\n%s", tail(string(b), 30))
		t.Fatalf("custody devnet --eth-node geth: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("devnet progress:\n%s", stderr.String())
	if !strings.Contains(stderr.String(), "Ethereum: geth --dev (Geth/v") {
		t.Errorf("the devnet does not say it runs geth --dev:\n%s", stderr.String())
	}
	verifyStory(t, stdout.Bytes(), []string{"ETH", "TKN"})
}

// verifyStory reads `custody devnet --json`'s lines and checks them: every
// signed withdrawal verifies independently and is confirmed, one per asset
// of assets, and the steps come out as the story says.
func verifyStory(t *testing.T, out []byte, assets []string) {
	t.Helper()
	var steps []devnet.Step
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var st devnet.Step
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			t.Fatalf("a line that is not a step: %q: %v", sc.Text(), err)
		}
		steps = append(steps, st)
	}
	outcomes := map[string]int{}
	signed := map[string]int{}
	for _, st := range steps {
		outcomes[st.Outcome]++
		if st.RawTx == "" {
			continue
		}
		switch st.Chain {
		case "eth":
			verifyETH(t, st)
		case "btc":
			verifyBTC(t, st)
		default:
			t.Fatalf("%s: chain %q", st.RequestID, st.Chain)
		}
		if st.Confirmed == nil || !*st.Confirmed {
			t.Errorf("%s: not confirmed", st.RequestID)
		}
		signed[st.Asset]++
	}
	for _, asset := range assets {
		if signed[asset] != 1 {
			t.Errorf("%d signed %s withdrawals verified, want 1", signed[asset], asset)
		}
	}
	if len(signed) != len(assets) {
		t.Errorf("signed withdrawals of %v, want one each of %v", signed, assets)
	}
	// Each signed withdrawal first waits with one approval.
	for outcome, want := range map[string]int{"denied": 2, "awaiting_ceremony": 1, "rejected": 1, "waits": len(assets), "locked": 1, "enrolled": 1} {
		if outcomes[outcome] != want {
			t.Errorf("%d steps %q, want %d", outcomes[outcome], outcome, want)
		}
	}
	if t.Failed() {
		t.Logf("steps:\n%s", out)
	}
}

// verifyETH: the sender recovered from the signature is the wallet, and
// the transaction pays what the step says (a token transfer's calldata for
// an ERC-20).
func verifyETH(t *testing.T, st devnet.Step) {
	t.Helper()
	raw, err := hex.DecodeString(strings.TrimPrefix(st.RawTx, "0x"))
	if err != nil {
		t.Fatalf("%s: raw tx: %v", st.RequestID, err)
	}
	var tx types.Transaction
	if err := tx.UnmarshalBinary(raw); err != nil {
		t.Fatalf("%s: %v", st.RequestID, err)
	}
	from, err := types.Sender(types.LatestSignerForChainID(tx.ChainId()), &tx)
	if err != nil {
		t.Fatalf("%s: signature: %v", st.RequestID, err)
	}
	if from != common.HexToAddress(st.WalletAddress) {
		t.Errorf("%s: signed by %s, want the wallet %s", st.RequestID, from.Hex(), st.WalletAddress)
	}
	if tx.Hash().Hex() != st.TxHash {
		t.Errorf("%s: hash %s, line says %s", st.RequestID, tx.Hash().Hex(), st.TxHash)
	}
	amt, ok := new(big.Int).SetString(st.Amount, 10)
	if !ok {
		t.Fatalf("%s: amount %q", st.RequestID, st.Amount)
	}
	if st.Asset == "ETH" {
		if tx.To() == nil || *tx.To() != common.HexToAddress(st.To) || tx.Value().Cmp(amt) != 0 {
			t.Errorf("%s: pays %v to %v, want %s to %s", st.RequestID, tx.Value(), tx.To(), amt, st.To)
		}
		return
	}
	// transfer(address,uint256): a9059cbb, the recipient and the amount.
	d := tx.Data()
	if len(d) != 68 || hex.EncodeToString(d[:4]) != "a9059cbb" || common.BytesToAddress(d[4:36]) != common.HexToAddress(st.To) ||
		new(big.Int).SetBytes(d[36:68]).Cmp(amt) != 0 || tx.Value().Sign() != 0 {
		t.Errorf("%s: calldata %x does not transfer %s to %s", st.RequestID, d, amt, st.To)
	}
}

// verifyBTC: every input's witness passes btcd's script engine against the
// output it spends, and an output pays the destination the amount.
func verifyBTC(t *testing.T, st devnet.Step) {
	t.Helper()
	raw, err := hex.DecodeString(st.RawTx)
	if err != nil {
		t.Fatalf("%s: raw tx: %v", st.RequestID, err)
	}
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
		t.Fatalf("%s: %v", st.RequestID, err)
	}
	if len(st.Prevouts) != len(tx.TxIn) {
		t.Fatalf("%s: %d prevouts for %d inputs", st.RequestID, len(st.Prevouts), len(tx.TxIn))
	}
	fetcher := txscript.NewMultiPrevOutFetcher(nil)
	prev := make([]*wire.TxOut, len(tx.TxIn))
	for i, in := range tx.TxIn {
		script, err := hex.DecodeString(st.Prevouts[i].Script)
		if err != nil {
			t.Fatal(err)
		}
		prev[i] = wire.NewTxOut(st.Prevouts[i].Amount, script)
		fetcher.AddPrevOut(in.PreviousOutPoint, prev[i])
	}
	hashes := txscript.NewTxSigHashes(&tx, fetcher)
	for i := range tx.TxIn {
		vm, err := txscript.NewEngine(prev[i].PkScript, &tx, i, txscript.StandardVerifyFlags, nil, hashes, prev[i].Value, fetcher)
		if err != nil {
			t.Fatalf("%s input %d: %v", st.RequestID, i, err)
		}
		if err := vm.Execute(); err != nil {
			t.Errorf("%s input %d: the script engine refuses the signature: %v", st.RequestID, i, err)
		}
	}
	if tx.TxHash().String() != st.TxHash {
		t.Errorf("%s: txid %s, line says %s", st.RequestID, tx.TxHash(), st.TxHash)
	}
	to, err := btcutil.DecodeAddress(st.To, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := txscript.PayToAddrScript(to)
	paid := false
	for _, o := range tx.TxOut {
		if bytes.Equal(o.PkScript, want) && fmt.Sprint(o.Value) == st.Amount {
			paid = true
		}
	}
	if !paid {
		t.Errorf("%s: no output pays %s sat to %s", st.RequestID, st.Amount, st.To)
	}
}

// keptDevnet: devnet.json names running nodes whose API serves the
// backend's certificate from the files it lists; custody devnet stop ends
// the devnet process, which stops every node.
func keptDevnet(t *testing.T, dir string, exited chan error) {
	t.Helper()
	info, b := readDevnetInfo(t, dir)
	if len(info.APIs) != 4 || len(info.PIDs) != 4 || info.PID <= 0 {
		t.Fatalf("devnet.json: %s", b)
	}
	resp, err := backendHTTP(t, info).Get(info.APIs["n2"] + "/v1/wallets")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), devnet.ETHWallet) {
		t.Fatalf("GET /v1/wallets on the kept devnet: %d %s", resp.StatusCode, body)
	}
	if code, _, errOut := runCLI("devnet", "stop", "--dir", filepath.Join(dir, "missing")); code == 0 || !strings.Contains(errOut, "devnet.json") {
		t.Fatalf("devnet stop of no devnet: exit %d %q", code, errOut)
	}
	if code, out, errOut := runCLI("devnet", "stop", "--dir", dir); code != 0 {
		t.Fatalf("devnet stop: exit %d %q %q", code, out, errOut)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the devnet exited with %v after devnet stop", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the devnet did not exit within a minute of devnet stop")
	}
	for id, pid := range info.PIDs {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("node %s (process %d) still runs after the devnet stopped", id, pid)
		}
	}
}
