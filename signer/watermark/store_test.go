package watermark

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const wallet = "hot-eth-1"

var txA = strings.Repeat("ab", 32)

func hashOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// intentFor builds a valid intent whose digest and payload hash derive from
// msg, so two intents with the same msg are the same message.
func intentFor(req, msg string, keys ...Key) Intent {
	return Intent{RequestID: req, Digest: hashOf("digest/" + msg), PayloadHash: hashOf("payload/" + msg), Keys: keys}
}

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, WithLogger(quiet))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func fileSize(t testing.TB, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func mustReserve(t testing.TB, s *Store, in Intent) Ticket {
	t.Helper()
	tk, err := s.Reserve(in)
	if err != nil {
		t.Fatalf("Reserve(%s): %v", in.RequestID, err)
	}
	return tk
}

func wantConflict(t *testing.T, err error, key Key, prevReq string) {
	t.Helper()
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err %T is not *ConflictError", err)
	}
	if ce.Key != key || ce.Previous.RequestID != prevReq {
		t.Fatalf("conflict on %v held by %q, want %v held by %q", ce.Key, ce.Previous.RequestID, key, prevReq)
	}
	if !strings.Contains(err.Error(), prevReq) {
		t.Fatalf("error %q does not name the previous request %q", err, prevReq)
	}
}

func TestReserveSameIntentTwiceIsRetry(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	in := intentFor("req-1", "m1", ETHNonceKey(wallet, 1, 7))
	first := mustReserve(t, s, in)
	if first.Retry || first.Signed {
		t.Fatalf("first reservation: %+v", first)
	}
	size := fileSize(t, dir)
	again := mustReserve(t, s, in)
	if !again.Retry || again.Digest != in.Digest {
		t.Fatalf("retry: %+v", again)
	}
	if got := fileSize(t, dir); got != size {
		t.Fatalf("retry wrote %d bytes", got-size)
	}
	if err := s.Complete(again, hashOf("sig")); err != nil {
		t.Fatal(err)
	}
	// A retry after completion (crash before the signature left the node)
	// is still allowed and reports the earlier signature.
	third := mustReserve(t, s, in)
	if !third.Retry || !third.Signed || third.SignatureHash != hashOf("sig") {
		t.Fatalf("retry after complete: %+v", third)
	}
}

func TestReserveKeyOrderIrrelevant(t *testing.T) {
	s := openStore(t, t.TempDir())
	k1, k2 := BTCOutpointKey(wallet, txA, 0), BTCOutpointKey(wallet, txA, 1)
	mustReserve(t, s, intentFor("req-1", "m1", k1, k2))
	if tk := mustReserve(t, s, intentFor("req-1", "m1", k2, k1)); !tk.Retry {
		t.Fatal("same keys in another order not treated as a retry")
	}
}

func TestReserveSameRequestDifferentMessageConflicts(t *testing.T) {
	s := openStore(t, t.TempDir())
	k := ETHNonceKey(wallet, 1, 7)
	orig := intentFor("req-1", "m1", k)
	mustReserve(t, s, orig)
	reqKey := Key{Kind: KindRequest, ID: "req-1"}

	otherDigest := orig
	otherDigest.Digest = hashOf("other")
	otherPayload := orig
	otherPayload.PayloadHash = hashOf("other")
	otherKeys := orig
	otherKeys.Keys = []Key{ETHNonceKey(wallet, 1, 8)}
	moreKeys := orig
	moreKeys.Keys = []Key{k, ETHNonceKey(wallet, 1, 8)}
	for name, in := range map[string]Intent{
		"digest": otherDigest, "payload": otherPayload, "keys": otherKeys, "extra key": moreKeys,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Reserve(in)
			wantConflict(t, err, reqKey, "req-1")
		})
	}
	// The refused intents reserved nothing.
	if _, ok := s.Owner(ETHNonceKey(wallet, 1, 8)); ok {
		t.Fatal("a refused intent left a key reserved")
	}
}

func TestReserveSharedETHNonceConflicts(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	nonce := ETHNonceKey(wallet, 1, 7)
	mustReserve(t, s, intentFor("req-1", "m1", nonce))
	size := fileSize(t, dir)

	_, err := s.Reserve(intentFor("req-2", "m2", nonce))
	wantConflict(t, err, nonce, "req-1")
	// Same payload under a new request ID is still a second signature for
	// the nonce: refused.
	_, err = s.Reserve(intentFor("req-3", "m1", nonce))
	wantConflict(t, err, nonce, "req-1")
	// A lower nonce that this node never signed is not a conflict (see
	// docs/watermark.md: another committee subset may have signed it).
	mustReserve(t, s, intentFor("req-4", "m4", ETHNonceKey(wallet, 1, 6)))
	// Same nonce on another chain or another wallet is another resource.
	mustReserve(t, s, intentFor("req-5", "m5", ETHNonceKey(wallet, 5, 7)))
	mustReserve(t, s, intentFor("req-6", "m6", ETHNonceKey("hot-eth-2", 1, 7)))

	if _, ok := s.Lookup("req-2"); ok {
		t.Fatal("refused request recorded")
	}
	if got := fileSize(t, dir); got <= size {
		t.Fatal("accepted reservations were not written")
	}
}

func TestReserveSharedBTCOutpointConflicts(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	op0, op1, op2 := BTCOutpointKey("btc-hot", txA, 0), BTCOutpointKey("btc-hot", txA, 1), BTCOutpointKey("btc-hot", txA, 2)
	mustReserve(t, s, intentFor("req-1", "m1", op0, op1))
	size := fileSize(t, dir)

	_, err := s.Reserve(intentFor("req-2", "m2", op2, op1))
	wantConflict(t, err, op1, "req-1")
	if _, ok := s.Owner(op2); ok {
		t.Fatal("refused intent reserved its other outpoint")
	}
	if got := fileSize(t, dir); got != size {
		t.Fatalf("refused intent wrote %d bytes", got-size)
	}
	mustReserve(t, s, intentFor("req-3", "m3", op2))
}

func TestInvalidIntentRecordsNothing(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	good := intentFor("req-1", "m1", ETHNonceKey(wallet, 1, 1))
	with := func(f func(*Intent)) Intent { in := good; f(&in); return in }
	key := func(k Key) Intent { return with(func(in *Intent) { in.Keys = []Key{k} }) }
	cases := map[string]Intent{
		"empty request":     with(func(in *Intent) { in.RequestID = "" }),
		"space in request":  with(func(in *Intent) { in.RequestID = "a b" }),
		"long request":      with(func(in *Intent) { in.RequestID = strings.Repeat("x", 256) }),
		"zero digest":       with(func(in *Intent) { in.Digest = [32]byte{} }),
		"zero payload":      with(func(in *Intent) { in.PayloadHash = [32]byte{} }),
		"no keys":           with(func(in *Intent) { in.Keys = nil }),
		"duplicate keys":    with(func(in *Intent) { in.Keys = []Key{in.Keys[0], in.Keys[0]} }),
		"unknown kind":      key(Key{Kind: "sol-slot", Scope: wallet, ID: "1"}),
		"request kind":      key(Key{Kind: KindRequest, ID: "req-1"}),
		"nonce leading 0":   key(Key{Kind: KindETHNonce, Scope: wallet + "/1", ID: "07"}),
		"nonce negative":    key(Key{Kind: KindETHNonce, Scope: wallet + "/1", ID: "-1"}),
		"nonce overflow":    key(Key{Kind: KindETHNonce, Scope: wallet + "/1", ID: "18446744073709551616"}),
		"chain leading 0":   key(Key{Kind: KindETHNonce, Scope: wallet + "/01", ID: "7"}),
		"no chain":          key(Key{Kind: KindETHNonce, Scope: wallet, ID: "7"}),
		"empty wallet":      key(ETHNonceKey("", 1, 7)),
		"upper-case txid":   key(BTCOutpointKey(wallet, strings.ToUpper(txA), 0)),
		"short txid":        key(BTCOutpointKey(wallet, txA[2:], 0)),
		"vout overflow":     key(Key{Kind: KindBTCOutpoint, Scope: wallet, ID: txA + ":4294967296"}),
		"no vout":           key(Key{Kind: KindBTCOutpoint, Scope: wallet, ID: txA}),
		"space in wallet":   key(BTCOutpointKey("hot wallet", txA, 0)),
		"too many keys":     with(func(in *Intent) { in.Keys = manyKeys(maxKeys + 1) }),
		"nonprintable byte": with(func(in *Intent) { in.RequestID = "req\x00" }),
	}
	size := fileSize(t, dir)
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Reserve(in); !errors.Is(err, ErrInvalidIntent) {
				t.Fatalf("err = %v, want ErrInvalidIntent", err)
			}
		})
	}
	if got := fileSize(t, dir); got != size {
		t.Fatalf("invalid intents wrote %d bytes", got-size)
	}
	if _, ok := s.Lookup("req-1"); ok {
		t.Fatal("invalid intent recorded")
	}
	mustReserve(t, s, good)
}

func manyKeys(n int) []Key {
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = BTCOutpointKey(wallet, txA, uint32(i))
	}
	return keys
}

func TestMaxKeysIntentRoundTrips(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	mustReserve(t, s, intentFor("req-big", "big", manyKeys(maxKeys)...))
	s.Close()
	s2 := openStore(t, dir)
	if r, ok := s2.Lookup("req-big"); !ok || len(r.Keys) != maxKeys {
		t.Fatal("large intent lost on reopen")
	}
}

func TestCompleteChecksTicket(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	tk := mustReserve(t, s, intentFor("req-1", "m1", ETHNonceKey(wallet, 1, 1)))

	unknown := tk
	unknown.RequestID = "req-404"
	forged := tk
	forged.Digest = hashOf("forged")
	for name, bad := range map[string]Ticket{"unknown request": unknown, "other digest": forged} {
		if err := s.Complete(bad, hashOf("sig")); !errors.Is(err, ErrUnknownTicket) {
			t.Fatalf("%s: err = %v, want ErrUnknownTicket", name, err)
		}
	}
	if r, _ := s.Lookup("req-1"); r.Signed {
		t.Fatal("a refused Complete marked the request signed")
	}

	if err := s.Complete(tk, hashOf("sig")); err != nil {
		t.Fatal(err)
	}
	size := fileSize(t, dir)
	if err := s.Complete(tk, hashOf("sig")); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, dir); got != size {
		t.Fatal("completing again with the same hash wrote a record")
	}
	if err := s.Complete(tk, hashOf("sig-2")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openStore(t, dir)
	if r, _ := s2.Lookup("req-1"); !r.Signed || r.SignatureHash != hashOf("sig-2") {
		t.Fatalf("after reopen: %+v", r)
	}
}

func TestStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s, err := Open(dir, WithLogger(quiet), WithClock(func() time.Time { return at }))
	if err != nil {
		t.Fatal(err)
	}
	nonce := ETHNonceKey(wallet, 1, 1)
	outs := []Key{BTCOutpointKey("btc-hot", txA, 3), BTCOutpointKey("btc-hot", txA, 1)}
	t1 := mustReserve(t, s, intentFor("req-1", "m1", nonce))
	mustReserve(t, s, intentFor("req-2", "m2", outs...))
	if err := s.Complete(t1, hashOf("sig-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(intentFor("req-3", "m3", ETHNonceKey(wallet, 1, 3))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reserve after Close: %v", err)
	}

	s2 := openStore(t, dir)
	if got := s2.Recovery(); got != (Recovery{Records: 3}) {
		t.Fatalf("recovery = %+v", got)
	}
	r1, ok := s2.Lookup("req-1")
	if !ok || !r1.Signed || r1.SignatureHash != hashOf("sig-1") || !r1.ReservedAt.Equal(at) || !r1.SignedAt.Equal(at) {
		t.Fatalf("req-1 after reopen: %+v", r1)
	}
	r2, ok := s2.Lookup("req-2")
	if !ok || r2.Signed || len(r2.Keys) != 2 || r2.Keys[0] != outs[1] {
		t.Fatalf("req-2 after reopen: %+v", r2)
	}
	_, err = s2.Reserve(intentFor("req-9", "m9", outs[0]))
	wantConflict(t, err, outs[0], "req-2")
	_, err = s2.Reserve(intentFor("req-1", "other", nonce))
	wantConflict(t, err, Key{Kind: KindRequest, ID: "req-1"}, "req-1")
	if tk := mustReserve(t, s2, intentFor("req-2", "m2", outs...)); !tk.Retry {
		t.Fatal("retry after reopen not recognised")
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := Open(dir, WithLogger(quiet)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	mustReserve(t, s, intentFor("req-1", "m1", ETHNonceKey(wallet, 1, 1)))
	s.Close()
	s2 := openStore(t, dir)
	if _, ok := s2.Lookup("req-1"); !ok {
		t.Fatal("reservation lost")
	}
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "wm")
	var logged bytes.Buffer
	s, err := Open(dir, WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if logged.Len() != 0 || s.Recovery() != (Recovery{}) {
		t.Fatalf("a new store reported recovery: %+v %q", s.Recovery(), logged.String())
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", fi.Mode().Perm())
	}
	data, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil || string(data) != fileMagic {
		t.Fatalf("new log = %q, %v", data, err)
	}
}

// buildLog writes n reservations (and a completion of the first) and
// returns the log image and the offset of its last record.
func buildLog(t *testing.T, n int) (data []byte, lastStart int64) {
	t.Helper()
	dir := t.TempDir()
	s := openStore(t, dir)
	for i := range n {
		tk := mustReserve(t, s, intentFor(fmt.Sprintf("req-%d", i), fmt.Sprint(i), ETHNonceKey(wallet, 1, uint64(i))))
		if i == 0 {
			if err := s.Complete(tk, hashOf("sig")); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	data, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	res, cerr := scanLog(data)
	if cerr != nil {
		t.Fatal(cerr)
	}
	return data, res.offsets[len(res.offsets)-1]
}

func writeLog(t *testing.T, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, LogFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestTornTailIsTruncated(t *testing.T) {
	const n = 3
	data, last := buildLog(t, n)
	for cut := last + 1; cut < int64(len(data)); cut++ {
		dir := writeLog(t, data[:cut])
		s, err := Open(dir, WithLogger(quiet))
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if got := s.Recovery(); got.Records != n || got.TruncatedBytes != cut-last {
			t.Fatalf("cut at %d: recovery %+v", cut, got)
		}
		if got := fileSize(t, dir); got != last {
			t.Fatalf("cut at %d: file is %d bytes, want %d", cut, got, last)
		}
		for i := range n - 1 {
			if _, ok := s.Lookup(fmt.Sprintf("req-%d", i)); !ok {
				t.Fatalf("cut at %d: req-%d lost", cut, i)
			}
		}
		if r, _ := s.Lookup("req-0"); !r.Signed {
			t.Fatalf("cut at %d: completion lost", cut)
		}
		last := intentFor(fmt.Sprintf("req-%d", n-1), fmt.Sprint(n-1), ETHNonceKey(wallet, 1, uint64(n-1)))
		if _, ok := s.Lookup(last.RequestID); ok {
			t.Fatalf("cut at %d: torn record was replayed", cut)
		}
		// The torn reservation was never acknowledged; it can be made again
		// and the repaired log then reopens cleanly.
		if tk := mustReserve(t, s, last); tk.Retry {
			t.Fatalf("cut at %d: torn reservation treated as existing", cut)
		}
		s.Close()
		s2, err := Open(dir, WithLogger(quiet))
		if err != nil {
			t.Fatalf("cut at %d: reopen after repair: %v", cut, err)
		}
		if got := s2.Recovery(); got != (Recovery{Records: n + 1}) {
			t.Fatalf("cut at %d: after repair %+v", cut, got)
		}
		s2.Close()
	}
}

func TestZeroTailIsTruncated(t *testing.T) {
	data, _ := buildLog(t, 2)
	dir := writeLog(t, append(bytes.Clone(data), make([]byte, 4096)...))
	var logged bytes.Buffer
	s, err := Open(dir, WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logged.String(), "truncating torn tail") || !strings.Contains(logged.String(), "bytes=4096") {
		t.Fatalf("no clear log line for the truncation: %q", logged.String())
	}
	if got := s.Recovery(); got.Records != 3 || got.TruncatedBytes != 4096 {
		t.Fatalf("recovery %+v", got)
	}
	if got := fileSize(t, dir); got != int64(len(data)) {
		t.Fatalf("file %d bytes, want %d", got, len(data))
	}
}

func TestTornFileHeaderIsRewritten(t *testing.T) {
	for cut := range len(fileMagic) {
		dir := writeLog(t, []byte(fileMagic[:cut]))
		s := openStore(t, dir)
		mustReserve(t, s, intentFor("req-1", "m1", ETHNonceKey(wallet, 1, 1)))
		s.Close()
		if s2 := openStore(t, dir); s2.Recovery().Records != 1 {
			t.Fatalf("cut %d: %+v", cut, s2.Recovery())
		}
	}
}

func wantCorrupt(t *testing.T, dir string, offset int64) {
	t.Helper()
	before, _ := os.ReadFile(filepath.Join(dir, LogFile))
	s, err := Open(dir, WithLogger(quiet))
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a corrupted log")
	}
	var ce *CorruptError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *CorruptError", err)
	}
	if ce.Offset != offset {
		t.Fatalf("corruption reported at %d, want %d (%v)", ce.Offset, offset, err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, LogFile))
	if !bytes.Equal(before, after) {
		t.Fatal("a refused Open modified the log")
	}
	// The lock was released: a human's tool can open the directory.
	if f, err := lockDir(filepath.Join(dir, LockFile)); err != nil {
		t.Fatalf("lock still held after failed Open: %v", err)
	} else {
		f.Close()
	}
}

func TestFlippedByteInMiddleRecordRefusesOpen(t *testing.T) {
	data, _ := buildLog(t, 4)
	res, _ := scanLog(data)
	start, end := res.offsets[2], res.offsets[3] // a reservation in the middle
	for i := start; i < end; i++ {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			wantCorrupt(t, writeLog(t, bad), start)
		}
	}
}

func TestFlippedByteInLastCompleteRecordRefusesOpen(t *testing.T) {
	// A complete final record with a bad checksum may be an acknowledged
	// reservation that rotted: refuse rather than guess it was torn.
	data, last := buildLog(t, 3)
	bad := bytes.Clone(data)
	bad[len(bad)-10] ^= 0x01
	wantCorrupt(t, writeLog(t, bad), last)
}

func TestBadFileHeaderRefusesOpen(t *testing.T) {
	data, _ := buildLog(t, 1)
	bad := bytes.Clone(data)
	bad[len(fileMagic)-1] = 0x02 // another format version
	wantCorrupt(t, writeLog(t, bad), 0)
	wantCorrupt(t, writeLog(t, []byte("NOTAWM")), 0)
}

func TestImpossibleSequenceRefusesOpen(t *testing.T) {
	// Records with valid checksums that the API could never have written
	// (a tool or attacker appended them) are corruption too.
	at := time.Unix(0, 0)
	a := intentFor("req-1", "m1", ETHNonceKey(wallet, 1, 1))
	b := intentFor("req-2", "m2", ETHNonceKey(wallet, 1, 1))
	reserveA := frame(encodeBody(record{typ: recReserve, at: at, intent: a}))
	cases := map[string][]byte{
		"conflicting reservation": frame(encodeBody(record{typ: recReserve, at: at, intent: b})),
		"duplicate reservation":   reserveA,
		"completion of unknown":   frame(encodeBody(record{typ: recComplete, at: at, intent: b})),
	}
	for name, second := range cases {
		t.Run(name, func(t *testing.T) {
			log := append([]byte(fileMagic), reserveA...)
			wantCorrupt(t, writeLog(t, append(log, second...)), int64(len(log)))
		})
	}
}

// failingWriter injects write and fsync failures.
type failingWriter struct {
	*os.File
	failWrite, failSync bool
}

func (w *failingWriter) Write(b []byte) (int, error) {
	if w.failWrite {
		n, _ := w.File.Write(b[:len(b)/2]) // a partial record reaches the disk
		return n, errors.New("injected: no space left on device")
	}
	return w.File.Write(b)
}

func (w *failingWriter) Sync() error {
	if w.failSync {
		return errors.New("injected: fsync EIO")
	}
	return w.File.Sync()
}

func TestWriteFailurePoisonsStore(t *testing.T) {
	for _, mode := range []string{"write", "sync"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			ok := mustReserve(t, s, intentFor("req-0", "m0", ETHNonceKey(wallet, 1, 0)))
			s.f = &failingWriter{File: s.f.(*os.File), failWrite: mode == "write", failSync: mode == "sync"}
			in := intentFor("req-1", "m1", ETHNonceKey(wallet, 1, 1))
			if _, err := s.Reserve(in); !errors.Is(err, ErrFailed) {
				t.Fatalf("err = %v, want ErrFailed", err)
			}
			if _, found := s.Lookup("req-1"); found {
				t.Fatal("unacknowledged reservation visible")
			}
			// Everything after the failure is refused, even a retry.
			if _, err := s.Reserve(intentFor("req-0", "m0", ETHNonceKey(wallet, 1, 0))); !errors.Is(err, ErrFailed) {
				t.Fatalf("after failure: %v", err)
			}
			if err := s.Complete(ok, hashOf("sig")); !errors.Is(err, ErrFailed) {
				t.Fatalf("Complete after failure: %v", err)
			}
			s.Close()
			// Reopening repairs the tail (a half record for "write") and
			// keeps what was acknowledged.
			s2 := openStore(t, dir)
			if _, found := s2.Lookup("req-0"); !found {
				t.Fatal("acknowledged reservation lost")
			}
			mustReserve(t, s2, in)
		})
	}
}

func TestConcurrentReserveOneWinnerPerKey(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	keys := []Key{
		ETHNonceKey(wallet, 1, 0), ETHNonceKey(wallet, 1, 1),
		BTCOutpointKey("btc-hot", txA, 0), BTCOutpointKey("btc-hot", txA, 1),
	}
	// 32 distinct intents, each submitted by two goroutines at once (a
	// retry racing the original); intent i spends keys[i%4].
	const distinct, copies = 32, 2
	type result struct {
		t   Ticket
		err error
	}
	results := make([][copies]result, distinct)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range distinct {
		for c := range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				tk, err := s.Reserve(intentFor(fmt.Sprintf("req-%d", i), fmt.Sprint(i), keys[i%len(keys)]))
				results[i][c] = result{tk, err}
			}()
		}
	}
	close(start)
	wg.Wait()

	winners := map[Key][]int{}
	for i, rs := range results {
		key := keys[i%len(keys)]
		if (rs[0].err == nil) != (rs[1].err == nil) {
			t.Fatalf("intent %d: copies disagree: %v / %v", i, rs[0].err, rs[1].err)
		}
		if rs[0].err == nil {
			winners[key] = append(winners[key], i)
			if rs[0].t.Retry == rs[1].t.Retry {
				t.Fatalf("intent %d: want exactly one first reservation, got Retry %v and %v", i, rs[0].t.Retry, rs[1].t.Retry)
			}
			continue
		}
		for _, r := range rs {
			var ce *ConflictError
			if !errors.As(r.err, &ce) || ce.Key != key {
				t.Fatalf("intent %d: err = %v, want conflict on %v", i, r.err, key)
			}
		}
	}
	for _, k := range keys {
		w := winners[k]
		if len(w) != 1 {
			t.Fatalf("key %v: %d winning intents %v, want exactly 1", k, len(w), w)
		}
		if owner, _ := s.Owner(k); owner != fmt.Sprintf("req-%d", w[0]) {
			t.Fatalf("key %v owned by %q, winner was req-%d", k, owner, w[0])
		}
	}
	// Losers' conflicts name the winner.
	for i, rs := range results {
		var ce *ConflictError
		if errors.As(rs[0].err, &ce) && ce.Previous.RequestID != fmt.Sprintf("req-%d", winners[ce.Key][0]) {
			t.Fatalf("intent %d: conflict names %q", i, ce.Previous.RequestID)
		}
	}
	s.Close()
	if s2 := openStore(t, dir); s2.Recovery().Records != len(keys) {
		t.Fatalf("log holds %d records, want %d", s2.Recovery().Records, len(keys))
	}
}

func TestDigestOf(t *testing.T) {
	a, b := hashOf("a"), hashOf("b")
	if DigestOf(a, b) == DigestOf(b, a) || DigestOf(a) == DigestOf(a, a) || DigestOf(a) == a {
		t.Fatal("DigestOf does not separate order, count or a single hash")
	}
	if DigestOf(a, b) != DigestOf(a, b) {
		t.Fatal("DigestOf not deterministic")
	}
}
