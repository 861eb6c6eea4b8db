package member_test

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/shares"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/watermark"
)

// btcWalletID is the harness's hot Bitcoin wallet (rule btc-hot).
const btcWalletID = "hot-btc"

// btcNet is what the harness's network is for the members' btc adapter.
var btcNet = &chaincfg.RegressionNetParams

// addBTCWallet registers the hot Bitcoin wallet: the package's one keygen
// key under a second wallet ID (a test shortcut that saves a keygen; each
// member's share is resealed under that ID in its own store), recorded in
// the ledger on chain btc, and known to every member and the orchestrator.
// It returns the wallet's P2WPKH output script.
func (h *harness) addBTCWallet() []byte {
	h.t.Helper()
	info := h.info
	info.Wallet = btcWalletID
	for id, sh := range walletShares(h.t) {
		b, err := sh.Marshal()
		if err != nil {
			h.t.Fatal(err)
		}
		cp, err := tss.UnmarshalShare(b)
		if err != nil {
			h.t.Fatal(err)
		}
		cp.Wallet = btcWalletID
		mb := h.members[id]
		if err := mb.shares.ShareStore.(*shares.Store).Put(cp); err != nil {
			h.t.Fatal(err)
		}
		cp.Wipe()
		if err := mb.m.AddWallet(info); err != nil {
			h.t.Fatal(err)
		}
	}
	h.orch.AddWallet(info)
	h.propose("node:n1", ledger.WalletSet{Wallet: ledger.Wallet{ID: btcWalletID, Chain: "btc", Network: network, Committee: committee, Threshold: 1}})
	addr, err := btc.WalletAddress(info.PubKey, btcNet)
	if err != nil {
		h.t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		h.t.Fatal(err)
	}
	return script
}

// btcSpend is a Bitcoin withdrawal in the ledger: its unsigned transaction
// and the outputs it spends, by outpoint (the test's own record of them).
type btcSpend struct {
	id       string
	u        *btc.Unsigned
	prevouts map[wire.OutPoint]*wire.TxOut
	// keys are the watermark keys of the spent outpoints, in input order.
	keys []watermark.Key
}

// fakeUTXOs are outputs paying script, one per value (satoshi), with
// outpoints derived from tag: the member signs whatever the approved
// payload says they hold; txscript checks the signatures against exactly
// these amounts and scripts.
func fakeUTXOs(tag string, script []byte, values ...int64) []btc.UTXO {
	out := make([]btc.UTXO, len(values))
	for i, v := range values {
		h := sha256.Sum256(fmt.Appendf(nil, "member-test-utxo/%s/%d", tag, i))
		out[i] = btc.UTXO{OutPoint: wire.OutPoint{Hash: h, Index: uint32(i)}, Value: v, PkScript: script, Confirmations: 6}
	}
	return out
}

// btcDest is a fresh regtest P2WPKH address, not the wallet's.
func btcDest(t testing.TB) string {
	t.Helper()
	k, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := btc.WalletAddress(k.PubKey().SerializeCompressed(), btcNet)
	if err != nil {
		t.Fatal(err)
	}
	return a.EncodeAddress()
}

// btcRequest builds a spend of amt satoshi to dest from utxos (at 10
// sat/vB), creates it in the ledger with the backend's initiation and
// records the approvals of ops.
func (h *harness) btcRequest(id, dest string, amt int64, utxos []btc.UTXO, ops ...operator) btcSpend {
	h.t.Helper()
	u, err := btc.Build(btc.Intent{Net: btcNet, WalletPubKey: h.info.PubKey, To: dest, Amount: amt, FeeRate: 10, UTXOs: utxos})
	if err != nil {
		h.t.Fatal(err)
	}
	s := btcSpend{id: id, u: u, prevouts: map[wire.OutPoint]*wire.TxOut{}}
	for _, x := range utxos {
		s.prevouts[x.OutPoint] = wire.NewTxOut(x.Value, x.PkScript)
	}
	for _, op := range u.Spent() {
		s.keys = append(s.keys, watermark.BTCOutpointKey(btcWalletID, op.Hash.String(), op.Index))
	}
	r, err := h.createBTC(id, u)
	if err != nil {
		h.t.Fatalf("create %s: %v", id, err)
	}
	if r.Status != ledger.StatusAwaitingApprovals {
		h.t.Fatalf("create %s: %s (%+v)", id, r.Status, r.Decision)
	}
	for _, o := range ops {
		if _, err := h.orch.Approve(h.ctx, id, o.sign(h.t, id, r.PayloadHash, quorum.Approve)); err != nil {
			h.t.Fatalf("approve %s by %s: %v", id, o.ID, err)
		}
	}
	return s
}

// createBTC commits the creation of a withdrawal carried out by u, with
// what u does (read through the members' adapter) as the request and the
// backend's initiation of it.
func (h *harness) createBTC(id string, u *btc.Unsigned) (*ledger.Request, error) {
	h.t.Helper()
	cu, err := testChains()["btc"].ParseUnsigned(network, u.Bytes())
	if err != nil {
		h.t.Fatal(err)
	}
	tr := cu.Transfer()
	r, _, err := h.leader().CreateRequest(h.ctx, backend.ID, ledger.RequestCreate{
		ID:          id,
		Withdrawal:  policy.Withdrawal{Wallet: btcWalletID, Asset: "BTC", Chain: "btc", Network: network, To: tr.To, Amount: tr.Amount, MaxFee: tr.MaxFee},
		Payload:     u.Bytes(),
		PayloadHash: u.PayloadHash(),
		Outpoints:   tr.Outpoints,
		ExpiresAt:   time.Now().Add(time.Hour),
		Initiation:  ptr(h.initiateAsset(id, btcWalletID, "BTC", tr.To, tr.Amount.Big())),
	})
	return r, err
}

// verifyScripts runs every input of raw through btcd's script engine
// against the output it spends (from the test's own record), and checks
// raw is s's transaction with witnesses added.
func (s btcSpend) verifyScripts(t testing.TB, raw []byte) *wire.MsgTx {
	t.Helper()
	tx := wire.NewMsgTx(0)
	if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
		t.Fatalf("%s: signed tx: %v", s.id, err)
	}
	if tx.TxHash() != s.u.TxID() || len(tx.TxIn) != len(s.prevouts) {
		t.Fatalf("%s: signed tx %s with %d inputs, approved %s with %d", s.id, tx.TxHash(), len(tx.TxIn), s.u.TxID(), len(s.prevouts))
	}
	if err := s.scriptsErr(tx); err != nil {
		t.Fatalf("%s: %v", s.id, err)
	}
	return tx
}

func (s btcSpend) scriptsErr(tx *wire.MsgTx) error {
	fetch := txscript.NewMultiPrevOutFetcher(s.prevouts)
	hashes := txscript.NewTxSigHashes(tx, fetch)
	for i, in := range tx.TxIn {
		prev := s.prevouts[in.PreviousOutPoint]
		if prev == nil {
			return fmt.Errorf("input %d spends unknown %s", i, in.PreviousOutPoint)
		}
		vm, err := txscript.NewEngine(prev.PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, prev.Value, fetch)
		if err == nil {
			err = vm.Execute()
		}
		if err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
	}
	return nil
}

// digests are s's per-input BIP-143 digests.
func (s btcSpend) digests(t testing.TB) [][32]byte {
	t.Helper()
	d, err := s.u.SigHashes()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// wantSessions is the session of every input of a claim, as every member
// derives it.
func wantSessions(cl member.Claim, n int) []tss.SessionID {
	out := make([]tss.SessionID, n)
	for i := range out {
		out[i] = member.InputSession(cl.SessionID, i)
	}
	return out
}

// signedAll asserts what a fully signed spend leaves behind: every signer
// ran exactly one session per input under the derived IDs (from its
// engine's before-th session on), and its watermark holds the spend's
// digests and every outpoint, signed.
func (h *harness) signedAll(s btcSpend, cl member.Claim, before map[pki.NodeID]int) {
	h.t.Helper()
	digests := s.digests(h.t)
	if cl.Digest != watermark.DigestOf(digests...) {
		h.t.Errorf("%s: claim digest %x, want DigestOf the %d input digests", s.id, cl.Digest, len(digests))
	}
	for _, id := range cl.Signers {
		mb := h.members[id]
		if got, want := mb.engine.sessionsFrom(before[id]), wantSessions(cl, len(digests)); !slices.Equal(got, want) {
			h.t.Errorf("%s: %s ran sessions %v, want %v", s.id, id, got, want)
		}
		rec, ok := mb.wm.Lookup(s.id)
		if !ok || !rec.Signed || rec.Digest != cl.Digest || rec.PayloadHash != s.u.PayloadHash() || len(rec.Keys) != len(s.keys) {
			h.t.Errorf("%s: %s watermark record %+v, want the claim digest over %d outpoints, signed", s.id, id, rec, len(s.keys))
		}
		for _, k := range s.keys {
			if owner, ok := mb.wm.Owner(k); !ok || owner != s.id {
				h.t.Errorf("%s: %s: %s owned by %q", s.id, id, k, owner)
			}
		}
	}
}

func sessionCounts(h *harness) map[pki.NodeID]int {
	out := map[pki.NodeID]int{}
	for id, mb := range h.members {
		out[id] = int(mb.engine.signs.Load())
	}
	return out
}

// TestBTCMultiInputWithdrawal: P2WPKH spends of two and of three inputs
// (with change) from the hot Bitcoin wallet, approved, claimed and signed
// by two different 2-of-3 signer sets through the orchestrator. Each
// signer runs one tss session per input under the IDs derived from the
// claim's, every input's signature passes btcd's script engine against the
// output it spends, the result is committed, and each signer's watermark
// holds every outpoint. A tampered input signature fails the script
// engine; asking again returns the committed transaction without a
// session; another payload on one of the spent outpoints is refused by the
// ledger.
func TestBTCMultiInputWithdrawal(t *testing.T) {
	h := newHarness(t)
	script := h.addBTCWallet()
	for _, tc := range []struct {
		name    string
		signers []pki.NodeID
		values  []int64
		amount  int64
	}{
		{"two inputs", []pki.NodeID{"n1", "n2"}, []int64{30_000_000, 40_000_000}, 60_000_000},
		{"three inputs", []pki.NodeID{"n2", "n3"}, []int64{20_000_000, 25_000_000, 30_000_000}, 70_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "wd-btc-" + strings.ReplaceAll(tc.name, " ", "-")
			s := h.btcRequest(id, btcDest(t), tc.amount, fakeUTXOs(id, script, tc.values...), bob, carol)
			if got := len(s.u.Spent()); got != len(tc.values) {
				t.Fatalf("built with %d inputs, want %d", got, len(tc.values))
			}
			before := sessionCounts(h)
			cl, err := h.orch.Claim(h.ctx, id, tc.signers)
			if err != nil {
				t.Fatal(err)
			}
			signed, err := h.orch.Collect(h.ctx, id, cl)
			if err != nil {
				t.Fatalf("collect: %v", err)
			}
			tx := s.verifyScripts(t, signed.Raw)
			for i, in := range tx.TxIn {
				if len(in.Witness) != 2 || !bytes.Equal(in.Witness[1], h.info.PubKey) {
					t.Fatalf("input %d witness is not [sig, wallet key]: %x", i, in.Witness)
				}
			}
			if signed.TxHash != tx.TxHash().String() || len(signed.Signature) != 65*len(tc.values) {
				t.Fatalf("released tx %s with %d signature bytes", signed.TxHash, len(signed.Signature))
			}
			h.signedAll(s, cl, before)
			if r := h.read(id); r.Status != ledger.StatusSigned || !bytes.Equal(r.Result.Signed, signed.Raw) || r.Result.TxHash != signed.TxHash {
				t.Fatalf("ledger: %s, result %+v", r.Status, r.Result)
			}

			// The check can fail: one byte of the last input's signature.
			bad := tx.Copy()
			last := bad.TxIn[len(bad.TxIn)-1].Witness
			last[0] = bytes.Clone(last[0])
			last[0][10] ^= 1
			if err := s.scriptsErr(bad); err == nil {
				t.Fatal("a tampered input signature passed the script engine")
			}

			// Again: the committed transaction, no new session.
			n := h.members[tc.signers[0]]
			runs := n.engine.signs.Load()
			again, err := n.m.SignClaimed(h.ctx, id, cl)
			if err != nil || !bytes.Equal(again.Raw, signed.Raw) || n.engine.signs.Load() != runs {
				t.Fatalf("asked again: %v, same tx %v, sessions %d → %d", err, again != nil && bytes.Equal(again.Raw, signed.Raw), runs, n.engine.signs.Load())
			}

			// The ledger holds the outpoints: another payload spending one is refused.
			other := fakeUTXOs(id+"-other", script, 50_000_000)
			other[0].OutPoint = s.u.Spent()[1]
			ou, err := btc.Build(btc.Intent{Net: btcNet, WalletPubKey: h.info.PubKey, To: btcDest(t), Amount: 10_000_000, FeeRate: 10, UTXOs: other})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.createBTC(id+"-steal", ou); !errors.Is(err, ledger.ErrAllocated) {
				t.Fatalf("another payload on a spent outpoint: %v, want ErrAllocated", err)
			}
		})
	}
}

// TestBTCOutpointReservedUnderAnotherPayload: n1's watermark already holds
// one outpoint of a two-input spend under another request and payload (a
// spend n1 signed before its ledger was rolled back). n1 refuses the claim
// with ErrWatermark naming that request and outpoint: nothing reserved for
// the new request (not its other outpoint either), the old reservation
// unchanged, no share unsealed, no session. Collected through the
// orchestrator, the claim fails as a whole and nothing is signed.
func TestBTCOutpointReservedUnderAnotherPayload(t *testing.T) {
	h := newHarness(t)
	script := h.addBTCWallet()
	s := h.btcRequest("wd-btc-new", btcDest(t), 60_000_000, fakeUTXOs("wd-btc-new", script, 30_000_000, 40_000_000), bob, carol)
	taken := s.u.Spent()[1]
	takenKey := watermark.BTCOutpointKey(btcWalletID, taken.Hash.String(), taken.Index)

	old, err := btc.Build(btc.Intent{Net: btcNet, WalletPubKey: h.info.PubKey, To: btcDest(t), Amount: 10_000_000, FeeRate: 10,
		UTXOs: []btc.UTXO{{OutPoint: taken, Value: s.prevouts[taken].Value, PkScript: script}}})
	if err != nil {
		t.Fatal(err)
	}
	oldDigests, err := old.SigHashes()
	if err != nil {
		t.Fatal(err)
	}
	n1 := h.members["n1"]
	if _, err := n1.wm.Reserve(watermark.Intent{RequestID: "wd-btc-old", Digest: member.ClaimDigest(oldDigests), PayloadHash: old.PayloadHash(),
		Keys: []watermark.Key{takenKey}}); err != nil {
		t.Fatal(err)
	}
	oldRec, _ := n1.wm.Lookup("wd-btc-old")

	cl, err := h.orch.Claim(h.ctx, s.id, []pki.NodeID{"n1", "n2"})
	if err != nil {
		t.Fatal(err)
	}
	signs, gets := n1.engine.signs.Load(), n1.shares.gets.Load()
	got, err := n1.m.SignClaimed(h.ctx, s.id, cl)
	if err == nil {
		t.Fatalf("n1 signed %s: %x", s.id, got.Raw)
	}
	var re *member.RefusalError
	if !errors.As(err, &re) || !errors.Is(err, member.ErrWatermark) || !errors.Is(err, watermark.ErrConflict) {
		t.Fatalf("refusal %v; want a *RefusalError wrapping ErrWatermark and watermark.ErrConflict", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "wd-btc-old") || !strings.Contains(msg, takenKey.ID) {
		t.Errorf("refusal %q does not name the reserving request and the outpoint", msg)
	}
	if rec, ok := n1.wm.Lookup(s.id); ok {
		t.Errorf("n1 reserved %s: %+v", s.id, rec)
	}
	for _, k := range s.keys {
		if owner, ok := n1.wm.Owner(k); k != takenKey && ok {
			t.Errorf("n1: %s reserved by %q", k, owner)
		}
	}
	if rec, _ := n1.wm.Lookup("wd-btc-old"); rec.Digest != oldRec.Digest || rec.Signed || !slices.Equal(rec.Keys, oldRec.Keys) {
		t.Errorf("the earlier reservation changed: %+v, was %+v", rec, oldRec)
	}
	if owner, _ := n1.wm.Owner(takenKey); owner != "wd-btc-old" {
		t.Errorf("%s now owned by %q", takenKey, owner)
	}
	if n1.engine.signs.Load() != signs || n1.shares.gets.Load() != gets {
		t.Errorf("n1 started a session or unsealed a share")
	}

	// Through the orchestrator: n1 refuses, the claim fails, nothing signed.
	signed, err := h.orch.Collect(h.ctx, s.id, cl)
	if !errors.Is(err, member.ErrWatermark) || signed != nil {
		t.Fatalf("collect: %v, %v; want n1's ErrWatermark and nothing", signed, err)
	}
	if r := h.read(s.id); r.Status != ledger.StatusFailed || r.Result == nil || len(r.Result.Signed) != 0 {
		t.Fatalf("ledger after the refusal: %s %+v", r.Status, r.Result)
	}
	if _, ok := n1.wm.Lookup(s.id); ok {
		t.Errorf("n1 reserved %s on the orchestrator's call", s.id)
	}
}

// TestBTCReclaimAfterFailedInput: the session of the second of three
// inputs fails on n2 (its peer "times out") after the first input was
// signed; the claim fails as a whole (nothing released, nothing committed
// but the failure) and both signers' reservations stay reserved over all
// three outpoints. The re-claim signs the same digests in the sessions
// derived from the new claim (both watermarks accept the same message),
// and every input passes btcd's script engine.
func TestBTCReclaimAfterFailedInput(t *testing.T) {
	h := newHarness(t)
	script := h.addBTCWallet()
	s := h.btcRequest("wd-btc-r", btcDest(t), 70_000_000, fakeUTXOs("wd-btc-r", script, 20_000_000, 25_000_000, 30_000_000), bob, carol)
	signers := []pki.NodeID{"n1", "n2"}

	n2 := h.members["n2"]
	n2.engine.failAt.Store(n2.engine.signs.Load() + 2)
	first, err := h.orch.Sign(h.ctx, s.id, signers)
	if !errors.Is(err, errInjectedTimeout) || !errors.Is(err, member.ErrSession) || first != nil {
		t.Fatalf("first claim: %v, %v; want the injected timeout", first, err)
	}
	failed := h.read(s.id)
	if failed.Status != ledger.StatusFailed || failed.Result == nil || len(failed.Result.Signed) != 0 {
		t.Fatalf("after the failed input: %s %+v", failed.Status, failed.Result)
	}
	fsid, err := tss.ParseSessionID(failed.Claim.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if got := n2.engine.sessionsFrom(0); !slices.Equal(got, wantSessions(member.Claim{SessionID: fsid}, 2)) {
		t.Fatalf("n2 asked for sessions %v; want the failed claim's first two", got)
	}
	for _, id := range signers {
		rec, ok := h.members[id].wm.Lookup(s.id)
		if !ok || rec.Signed || len(rec.Keys) != 3 || rec.Digest != watermark.DigestOf(s.digests(t)...) {
			t.Fatalf("%s: watermark record %+v after the failed input, want all three outpoints reserved, unsigned", id, rec)
		}
	}

	before := sessionCounts(h)
	cl, err := h.orch.Reclaim(h.ctx, s.id, signers)
	if err != nil {
		t.Fatal(err)
	}
	if cl.SessionID == fsid {
		t.Fatal("re-claim reused the failed session ID")
	}
	signed, err := h.orch.Collect(h.ctx, s.id, cl)
	if err != nil {
		t.Fatalf("signing the re-claimed spend: %v", err)
	}
	s.verifyScripts(t, signed.Raw)
	h.signedAll(s, cl, before)
	if r := h.read(s.id); r.Status != ledger.StatusSigned || r.Result.SessionID != cl.SessionID.String() || !bytes.Equal(r.Result.Signed, signed.Raw) {
		t.Fatalf("after the re-claim: %s %+v", r.Status, r.Result)
	}
}

// TestBTCRegtestBroadcast: end to end against a real btcd regtest node.
// Blocks are mined to the hot wallet's address (the committee's tss key);
// a three-input spend of mature coinbase outputs found through the node's
// address index is created, approved, and signed by n1 and n3, one session
// per input; the node accepts it into its mempool, mines it, and the
// destination holds exactly the amount.
func TestBTCRegtestBroadcast(t *testing.T) {
	h := newHarness(t)
	h.addBTCWallet()
	node, walletAddr := h.startRegtest()
	utxos, err := node.UTXOs(h.ctx, walletAddr, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The three smallest coinbases (equal, after the regtest halvings); an
	// amount of 2.5 of them needs all three.
	slices.SortFunc(utxos, func(a, b btc.UTXO) int { return cmp.Compare(a.Value, b.Value) })
	if len(utxos) < 3 || utxos[2].Value != utxos[0].Value {
		t.Fatalf("mature utxos: %+v", utxos[:min(3, len(utxos))])
	}
	utxos = utxos[:3]
	dest := btcDest(t)
	amt := utxos[0].Value*2 + utxos[0].Value/2
	s := h.btcRequest("wd-btc-regtest", dest, amt, utxos, bob, carol)
	if len(s.u.Spent()) != 3 {
		t.Fatalf("built with %d inputs", len(s.u.Spent()))
	}

	signed, err := h.orch.Sign(h.ctx, s.id, []pki.NodeID{"n1", "n3"})
	if err != nil {
		t.Fatal(err)
	}
	s.verifyScripts(t, signed.Raw)
	tx, err := s.u.VerifySigned(signed.Raw)
	if err != nil {
		t.Fatal(err)
	}
	txid, err := node.Broadcast(h.ctx, tx)
	if err != nil {
		t.Fatalf("btcd refused the signed spend: %v", err)
	}
	if txid.String() != signed.TxHash {
		t.Fatalf("node says %s, the member %s", txid, signed.TxHash)
	}
	blocks, err := node.Generate(h.ctx, 1)
	if err != nil || len(blocks) != 1 {
		t.Fatal(blocks, err)
	}
	if in, err := node.BlockContains(h.ctx, blocks[0], txid); err != nil || !in {
		t.Fatalf("tx not in block %s: %v", blocks[0], err)
	}
	destAddr, err := btc.ParseAddress(dest, btcNet)
	if err != nil {
		t.Fatal(err)
	}
	got, err := node.UTXOs(h.ctx, destAddr, 1)
	if err != nil || len(got) != 1 || got[0].Value != amt || got[0].OutPoint != (wire.OutPoint{Hash: txid, Index: 0}) {
		t.Fatalf("destination utxos %+v %v", got, err)
	}
}

// TestBTCEngineFaultOnOneInput: n1's engine hands back the wallet's real
// signature of the last of three inputs turned high-S (still a valid
// ECDSA signature); the other inputs' signatures are genuine. n1 runs all
// three sessions, then refuses the whole claim with ErrSignature: nothing
// released, its reservation (every outpoint) never completed, every share
// it unsealed wiped. The honest n2 signs the same claim.
func TestBTCEngineFaultOnOneInput(t *testing.T) {
	h := newHarness(t)
	script := h.addBTCWallet()
	s := h.btcRequest("wd-btc-lie", btcDest(t), 70_000_000, fakeUTXOs("wd-btc-lie", script, 20_000_000, 25_000_000, 30_000_000), bob, carol)
	digests := s.digests(t)
	cl, err := h.orch.Claim(h.ctx, s.id, []pki.NodeID{"n1", "n2"})
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := h.members["n1"], h.members["n2"]
	liar := &lyingEngine{Engine: n1.engine, rewrite: func(sig *tss.Signature, d [32]byte) *tss.Signature {
		if d != digests[len(digests)-1] {
			return sig
		}
		out := *sig
		new(big.Int).Sub(btcec.S256().N, new(big.Int).SetBytes(sig.S[:])).FillBytes(out.S[:])
		out.V ^= 1
		return &out
	}}
	m1, err := member.New(member.Config{Engine: liar, Shares: n1.shares, Watermark: n1.wm, Seen: n1.seen, Ledger: n1.ledger, Chains: testChains(), Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	info := h.info
	info.Wallet = btcWalletID
	if err := m1.AddWallet(info); err != nil {
		t.Fatal(err)
	}
	signs, gets := n1.engine.signs.Load(), n1.shares.gets.Load()
	prev := n1.shares.last.Load()
	res2 := make(chan error, 1)
	go func() {
		_, err := n2.m.SignClaimed(h.ctx, s.id, cl)
		res2 <- err
	}()
	s1, err1 := m1.SignClaimed(h.ctx, s.id, cl)
	if err := <-res2; err != nil {
		t.Fatalf("honest n2: %v", err)
	}
	var re *member.RefusalError
	if s1 != nil || !errors.As(err1, &re) || !errors.Is(err1, member.ErrSignature) {
		t.Fatalf("n1 released %v or did not refuse with ErrSignature: %v", s1, err1)
	}
	if got := n1.engine.signs.Load() - signs; got != 3 {
		t.Errorf("n1 ran %d sessions, want 3", got)
	}
	if got := n1.shares.gets.Load() - gets; got != 3 {
		t.Errorf("n1 unsealed %d shares, want one per session", got)
	}
	wantWiped(t, n1, prev)
	rec, ok := n1.wm.Lookup(s.id)
	if !ok || rec.Signed || rec.Digest != cl.Digest || len(rec.Keys) != 3 {
		t.Fatalf("n1's watermark record %+v (present %v): want every outpoint reserved, not completed", rec, ok)
	}
}
