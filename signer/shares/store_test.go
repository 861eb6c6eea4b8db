package shares

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/bnb-chain/tss-lib/v2/crypto"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"
	"github.com/btcsuite/btcd/btcec/v2"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

// testShare builds a structurally valid 2-of-3 share from fixture pre-params
// without running keygen (the store does not care how it was made).
func testShare(t *testing.T, wallet string) *tss.Share {
	t.Helper()
	fx, err := preparams.LoadFixtures("../preparams/testdata/preparams.json")
	if err != nil {
		t.Fatal(err)
	}
	n := 3
	data := keygen.NewLocalPartySaveData(n)
	data.LocalPreParams = *fx[0]
	var members []tss.Party
	for i := 0; i < n; i++ {
		k, _ := rand.Int(rand.Reader, tsslib.S256().Params().N)
		x, _ := rand.Int(rand.Reader, tsslib.S256().Params().N)
		data.Ks[i] = k
		data.BigXj[i] = crypto.ScalarBaseMult(tsslib.S256(), x)
		data.NTildej[i], data.H1j[i], data.H2j[i] = fx[i].NTildei, fx[i].H1i, fx[i].H2i
		data.PaillierPKs[i] = &fx[i].PaillierSK.PublicKey
		members = append(members, tss.Party{Node: pki.NodeID([]string{"node1", "node2", "node3"}[i]), Key: k.Bytes()})
		if i == 0 {
			data.Xi, data.ShareID = x, k
		}
	}
	y, _ := rand.Int(rand.Reader, tsslib.S256().Params().N)
	data.ECDSAPub = crypto.ScalarBaseMult(tsslib.S256(), y)
	var fx1, fy1 btcec.FieldVal
	fx1.SetByteSlice(data.ECDSAPub.X().Bytes())
	fy1.SetByteSlice(data.ECDSAPub.Y().Bytes())
	pub := btcec.NewPublicKey(&fx1, &fy1).SerializeCompressed()
	sh := &tss.Share{WalletInfo: tss.WalletInfo{Wallet: wallet, Threshold: 1, Members: members, PubKey: pub}, Self: "node1", Data: data}
	raw, err := sh.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tss.UnmarshalShare(raw); err != nil {
		t.Fatalf("test share invalid: %v", err)
	}
	return sh
}

func hsmSealer(t *testing.T) Sealer {
	t.Helper()
	cfg := softhsmtest.NewToken(t, "shares")
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	s, err := tok.CreateKEK("share-kek")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreRoundTripSealed(t *testing.T) {
	dir := t.TempDir()
	st, err := NewStore(dir, hsmSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	sh := testShare(t, "w1")
	if err := st.Put(sh); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(sh); !errors.Is(err, ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := st.Get("w1", "node1", sh.Data.ShareID.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got.Data.Xi.Cmp(sh.Data.Xi) != 0 || !bytes.Equal(got.PubKey, sh.PubKey) {
		t.Fatal("share changed on the way through the store")
	}
	// No secret value appears on disk in any encoding.
	secrets := map[string][]byte{}
	for name, v := range map[string]*big.Int{"Xi": sh.Data.Xi, "PaillierP": sh.Data.PaillierSK.P, "Alpha": sh.Data.Alpha, "P": sh.Data.P} {
		secrets[name+" bytes"] = v.Bytes()
		secrets[name+" decimal"] = []byte(v.String())
		secrets[name+" hex"] = []byte(v.Text(16))
	}
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for name, s := range secrets {
			if bytes.Contains(raw, s) {
				t.Errorf("%s found in %s", name, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStoreRefusesMovedOrTamperedBlobs(t *testing.T) {
	dir := t.TempDir()
	st, err := NewStore(dir, hsmSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	sh := testShare(t, "w1")
	if err := st.Put(sh); err != nil {
		t.Fatal(err)
	}
	id := sh.Data.ShareID.Bytes()
	src := st.path("w1", "node1", id)
	// Moved to another wallet: the AAD no longer matches.
	raw, _ := os.ReadFile(src)
	if err := os.WriteFile(st.path("w2", "node1", id), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get("w2", "node1", id); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("moved blob: %v", err)
	}
	// One flipped ciphertext byte.
	raw[len(raw)-5] ^= 1
	if err := os.WriteFile(src, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get("w1", "node1", id); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered blob: %v", err)
	}
	if _, err := st.Get("w1", "node9", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if err := st.Delete("w1", "node1", id); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get("w1", "node1", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// TestStoreRefusesPreV2Share seals a share whose Paillier key lacks P/Q (the
// pre-v2 format, SECURITY.md item 3) and checks Get refuses it.
func TestStoreRefusesPreV2Share(t *testing.T) {
	st, err := NewStore(t.TempDir(), hsmSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	sh := testShare(t, "w1")
	raw, err := sh.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	data := m["data"].(map[string]any)
	sk := data["PaillierSK"].(map[string]any)
	delete(sk, "P")
	delete(sk, "Q")
	old, _ := json.Marshal(m)
	id := sh.Data.ShareID.Bytes()
	if err := st.write("w1", "node1", id, old); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get("w1", "node1", id); !errors.Is(err, tss.ErrBadShare) {
		t.Fatalf("pre-v2 share: %v", err)
	}
}

// TestStorePutAfterCrashLeftTempFile: a node killed between creating its
// temporary file and linking it leaves ciphertext behind; that must not make
// the share unstorable forever (the old fixed "<name>.tmp" + O_EXCL did).
func TestStorePutAfterCrashLeftTempFile(t *testing.T) {
	dir := t.TempDir()
	st, err := NewStore(dir, hsmSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	sh := testShare(t, "w1")
	id := sh.Data.ShareID.Bytes()
	stale := st.path("w1", "node1", id) + ".tmp"
	if err := os.WriteFile(stale, []byte("partial ciphertext"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(sh); err != nil {
		t.Fatalf("Put with a stale temporary file present: %v", err)
	}
	got, err := st.Get("w1", "node1", id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Data.Xi.Cmp(sh.Data.Xi) != 0 {
		t.Fatal("share changed on the way through the store")
	}
	if err := st.Put(sh); !errors.Is(err, ErrExists) {
		t.Fatalf("second Put: %v, want ErrExists", err)
	}
}

// TestStoreList names every stored share, skips temporaries and refuses a
// share file whose name does not decode.
func TestStoreList(t *testing.T) {
	dir := t.TempDir()
	st, err := NewStore(dir, hsmSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	if refs, err := st.List(); err != nil || len(refs) != 0 {
		t.Fatalf("empty store: %v, %v", refs, err)
	}
	a, b := testShare(t, "w1"), testShare(t, "w2")
	for _, sh := range []*tss.Share{a, b} {
		if err := st.Put(sh); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(st.path("w3", "node1", []byte{1})+".123.tmp", []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	refs, err := st.List()
	if err != nil || len(refs) != 2 {
		t.Fatalf("List: %v, %v", refs, err)
	}
	for _, r := range refs {
		sh, err := st.Get(r.Wallet, r.Party, r.ShareID)
		if err != nil {
			t.Fatalf("Get(%+v): %v", r, err)
		}
		if sh.Wallet != r.Wallet || sh.Self != r.Party {
			t.Fatalf("ref %+v opened %s/%s", r, sh.Wallet, sh.Self)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "zz.not-hex.share"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.List(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("List with a bad name: %v, want ErrCorrupt", err)
	}
}

// TestStoreRetire: a retired share leaves the store (not listed, not
// opened) but stays on disk, sealed, under retired/.
func TestStoreRetire(t *testing.T) {
	dir := t.TempDir()
	st, err := NewStore(dir, hsmSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	sh := testShare(t, "w1")
	id := sh.Data.ShareID.Bytes()
	if err := st.Put(sh); err != nil {
		t.Fatal(err)
	}
	sealed, err := os.ReadFile(st.path("w1", "node1", id))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Retire("w1", "node1", id); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get("w1", "node1", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Retire: %v", err)
	}
	if refs, err := st.List(); err != nil || len(refs) != 0 {
		t.Fatalf("List after Retire: %v, %v", refs, err)
	}
	kept, err := os.ReadFile(filepath.Join(dir, RetiredDir, filepath.Base(st.path("w1", "node1", id))))
	if err != nil || string(kept) != string(sealed) {
		t.Fatalf("the retired blob: %v (same bytes: %v)", err, string(kept) == string(sealed))
	}
	if err := st.Retire("w1", "node1", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Retire: %v", err)
	}
}
