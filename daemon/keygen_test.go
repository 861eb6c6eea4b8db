package daemon_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// TestWalletKeygenThroughDaemon: two admins approve a new 2-of-3 wallet
// whose committee leaves out the leader; the leader's loop runs the
// distributed keygen among the committee over the node RPC, the test
// signatures and the committee's attestations, and every replica records
// the wallet active with one key. The leader (not a member) then builds,
// claims and collects a withdrawal from it, funded from the first wallet,
// and the chain mines both.
func TestWalletKeygenThroughDaemon(t *testing.T) {
	c := newCluster(t)
	leader := c.leader().ID()
	var members []pki.NodeID
	for _, id := range nodeIDs {
		if id != leader && len(members) < 3 {
			members = append(members, id)
		}
	}
	spec := ledger.WalletSpec{ID: "wallet-2", Wallet: "hot-eth-2", Chain: "eth", Network: network, Committee: members, Threshold: 1}
	exp := time.Now().Add(time.Hour).UTC()
	c.submit("alice", ledger.WalletCreate{Change: spec, Approvals: []quorum.Approval{
		alice.Sign(t, clusterID, spec.ID, spec.PayloadHash(), quorum.Approve, exp),
		bob.Sign(t, clusterID, spec.ID, spec.PayloadHash(), quorum.Approve, exp)}})

	var pub []byte
	for _, id := range nodeIDs {
		c.poll(fmt.Sprintf("wallet active on %s", id), func() error {
			return c.nodes[id].node.Store().ReadLocal(func(st *ledger.State) error {
				w := st.Wallets["hot-eth-2"]
				if w == nil || !w.Active() || len(w.PubKey) != 33 {
					return fmt.Errorf("wallet %+v", w)
				}
				if pub == nil {
					pub = bytes.Clone(w.PubKey)
				} else if !bytes.Equal(pub, w.PubKey) {
					return fmt.Errorf("%s records another key", id)
				}
				if !slices.Equal(w.Committee, members) {
					return fmt.Errorf("committee %v", w.Committee)
				}
				return nil
			})
		})
	}
	addr, err := eth.AddressFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}

	// Fund it from the first wallet; allowlist a destination for it.
	c.allowlistFor(walletID, "fund-2", addr)
	dest := c.dests[1]
	c.allowlistFor("hot-eth-2", "dest-2", dest)
	c.observed()
	c.clock.Advance(time.Hour + time.Minute)
	fund := c.withdrawal("fund", addr, ether(3))
	c.approve(fund, bob)
	c.approve(fund, carol)
	c.mine(c.waitStatus(leader, "fund", ledger.StatusSigned))

	r := c.withdrawalFrom("hot-eth-2", "wd-2", dest, ether(1))
	c.approve(r, bob)
	c.approve(r, carol)
	signed := c.waitStatus(leader, "wd-2", ledger.StatusSigned)
	if slices.Contains(signed.Claim.Signers, leader) {
		t.Fatalf("the leader %s signed for a wallet it holds no share of", leader)
	}
	tx := c.mine(signed)
	if tx.From() != addr {
		t.Fatalf("signed by %s, want the new wallet %s", tx.From(), addr)
	}

	// Reshare: the leader replaces the first member; same key, new
	// committee; the next withdrawal is signed by the new committee.
	newCommittee := append([]pki.NodeID{leader}, members[1:]...)
	slices.Sort(newCommittee)
	rs := ledger.ReshareSpec{ID: "reshare-2", Wallet: "hot-eth-2", NewCommittee: newCommittee, NewThreshold: 1}
	c.submit("alice", ledger.WalletReshare{Change: rs, Approvals: []quorum.Approval{
		alice.Sign(t, clusterID, rs.ID, rs.PayloadHash(), quorum.Approve, exp),
		bob.Sign(t, clusterID, rs.ID, rs.PayloadHash(), quorum.Approve, exp)}})
	for _, id := range nodeIDs {
		c.poll(fmt.Sprintf("reshared on %s", id), func() error {
			return c.nodes[id].node.Store().ReadLocal(func(st *ledger.State) error {
				w := st.Wallets["hot-eth-2"]
				if w.Status != ledger.WalletActive || !slices.Equal(w.Committee, newCommittee) || !bytes.Equal(w.PubKey, pub) {
					return fmt.Errorf("wallet %s committee %v", w.Status, w.Committee)
				}
				return nil
			})
		})
	}
	r3 := c.withdrawalFrom("hot-eth-2", "wd-3", dest, ether(1))
	c.approve(r3, bob)
	c.approve(r3, carol)
	signed3 := c.waitStatus(leader, "wd-3", ledger.StatusSigned)
	if slices.Contains(signed3.Claim.Signers, members[0]) {
		t.Fatalf("%s signed after it was reshared out (signers %v)", members[0], signed3.Claim.Signers)
	}
	if tx := c.mine(signed3); tx.From() != addr {
		t.Fatalf("after the reshare signed by %s, want the same wallet %s", tx.From(), addr)
	}
}
