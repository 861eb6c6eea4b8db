package daemon_test

import (
	"cmp"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/btc/btctest"
	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/withdraw"
)

// TestBTCWithdrawalThroughDaemon: the daemons reach a real btcd regtest
// node (chains.btc with its rpc.cert and a password file); the leader
// builds a two-input withdrawal from the wallet's mature coinbases
// (withdraw.CreateBTC through daemon.Node.CreateBTC), two operators approve,
// the leader's loop has the committee sign every input over the node RPC,
// broadcasts the transaction to btcd and records it confirmed three blocks
// deep: the destination receives exactly the amount.
func TestBTCWithdrawalThroughDaemon(t *testing.T) {
	ksh := walletShares(t)
	net := &chaincfg.RegressionNetParams
	walletAddr, err := btc.WalletAddress(ksh["n1"].Info().PubKey, net)
	if err != nil {
		t.Fatal(err)
	}
	node := btctest.StartBtcd(t, walletAddr.EncodeAddress())
	dir := t.TempDir()
	pass, cert := filepath.Join(dir, "btcd.pass"), filepath.Join(dir, "rpc.cert")
	if err := os.WriteFile(pass, []byte(node.Pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert, node.Cert, 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := btc.Dial(btc.RPCConfig{Host: node.Host, User: node.User, Pass: node.Pass, Cert: node.Cert}, net)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	c := newClusterWith(t, setup{alsoWallets: []string{"hot-btc"}}, func(cfg *daemon.Config) {
		cfg.Chains.BTC = &daemon.BTC{RPC: node.Host, User: node.User, PasswordFile: pass, CertFile: cert, Network: "regtest"}
	})
	if _, err := client.Generate(c.ctx, btctest.SegwitActiveHeight); err != nil {
		t.Fatal(err)
	}
	c.onLeader("ceremony", ledger.WalletSet{Wallet: ledger.Wallet{ID: "hot-btc", Chain: "btc", Network: "regtest", Committee: committee, Threshold: 1}})

	utxos, err := client.UTXOs(c.ctx, walletAddr, 1)
	if err != nil || len(utxos) < 2 {
		t.Fatalf("mature utxos: %d, %v", len(utxos), err)
	}
	slices.SortFunc(utxos, func(a, b btc.UTXO) int { return cmp.Compare(b.Value, a.Value) })
	amt := utxos[0].Value + utxos[0].Value/2 // needs two inputs
	k, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	dest, err := btc.WalletAddress(k.PubKey().SerializeCompressed(), net)
	if err != nil {
		t.Fatal(err)
	}
	a, err := amount.FromBig(big.NewInt(amt))
	if err != nil {
		t.Fatal(err)
	}
	w := policy.Withdrawal{Wallet: "hot-btc", Asset: "BTC", To: dest.EncodeAddress(), Amount: a}
	init := backend.Sign(t, clusterID, "wd-btc", w.IntentHash("wd-btc"), quorum.Initiate, time.Now().Add(time.Hour))
	var r *ledger.Request
	c.poll("create wd-btc", func() error {
		r, err = c.leader().CreateBTC(c.ctx, withdraw.BTCWithdrawal{ID: "wd-btc", Wallet: "hot-btc", To: dest.EncodeAddress(),
			Amount: big.NewInt(amt), Initiation: init, ExpiresAt: time.Now().Add(time.Hour)})
		return err
	})
	if len(r.Outpoints) < 2 {
		t.Fatalf("built with %d inputs, want 2 or more", len(r.Outpoints))
	}
	c.approve(r, bob)
	c.approve(r, carol)
	signed := c.waitStatus("n2", "wd-btc", ledger.StatusSigned)

	u, err := btc.ParseUnsigned(signed.Payload, ksh["n1"].Info().PubKey)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := u.VerifySigned(signed.Result.Signed)
	if err != nil {
		t.Fatal(err)
	}
	// The leader broadcasts it to btcd and records it confirmed once it is
	// broadcast.confirmations (3) blocks deep.
	c.waitStatus("n2", "wd-btc", ledger.StatusBroadcast)
	c.poll("wd-btc confirmed", func() error {
		got := c.read("n2", "wd-btc")
		if got.Status == ledger.StatusConfirmed {
			return nil
		}
		if _, err := client.Generate(c.ctx, 1); err != nil {
			return err
		}
		return fmt.Errorf("wd-btc is %s", got.Status)
	})
	if conf, err := client.Confirmations(c.ctx, tx.TxID()); err != nil || conf < 3 {
		t.Fatalf("confirmations of %s: %d, %v", tx.TxID(), conf, err)
	}
	got, err := client.UTXOs(c.ctx, dest, 1)
	if err != nil || len(got) != 1 || got[0].Value != amt {
		t.Fatalf("destination holds %+v, %v; want one output of %d sat", got, err, amt)
	}
}
