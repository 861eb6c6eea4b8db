package member

import (
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// TestLateKeygenCannotUnseatTheLedgerKey: a keygen's registration replaces
// an earlier keygen's, and the ledger's key (AddWallet) replaces a keygen's;
// but once the ledger's key is registered, a keygen session finishing late
// with another key is refused and the registration stays (seen in the
// devnet under load: two keygen sessions of one wallet overlapped, the
// first was recorded, the second finished after and made the member refuse
// every claim).
func TestLateKeygenCannotUnseatTheLedgerKey(t *testing.T) {
	info := func() tss.WalletInfo {
		k, err := btcec.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		return tss.WalletInfo{Wallet: "w", Threshold: 1, PubKey: k.PubKey().SerializeCompressed(),
			Members: []tss.Party{{Node: "n1"}, {Node: "n2"}}}
	}
	m := &Member{self: pki.NodeID("n1"), wallets: map[string]tss.WalletInfo{}, keyed: map[string]bool{}}
	key := func() string { return string(m.wallets["w"].PubKey) }

	first, second, late := info(), info(), info()
	if err := m.registerKeygen(first); err != nil {
		t.Fatal(err)
	}
	if err := m.registerKeygen(second); err != nil || key() != string(second.PubKey) {
		t.Fatalf("a second keygen's registration: %v", err)
	}
	// The ledger recorded the first session's key: it replaces the keygen's.
	if err := m.AddWallet(first); err != nil || key() != string(first.PubKey) {
		t.Fatalf("the ledger's key did not replace a keygen's registration: %v", err)
	}
	if err := m.registerKeygen(late); err == nil {
		t.Fatal("a late keygen replaced the key the ledger recorded")
	}
	if key() != string(first.PubKey) {
		t.Fatal("the registration changed")
	}
	if err := m.AddWallet(second); err == nil || key() != string(first.PubKey) {
		t.Fatalf("another ledger key over a recorded one: %v", err)
	}
}
