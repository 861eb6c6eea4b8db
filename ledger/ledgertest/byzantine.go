package ledgertest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
)

// Byzantine is one node of a Cluster under an attacker's control, for the
// trust tests (docs/trust.md): a real member of the raft cluster, with its
// own store, its node certificate and a vote, that takes the lead, appends
// any command under any actor stamped with whatever time its own clock
// says, and sends raft's InstallSnapshot RPC with any content to any peer
// over raft's own authenticated transport. That is what one compromised
// node can do through raft; what an honest node makes of it is decided by
// its own FSM and its own member, which the tests then examine.
//
// Start the cluster with [NodeClock] so the node stamps Clock:
//
//	clock := ledgertest.NewClock(t0)
//	c := ledgertest.New(t, 3, ledgertest.NodeClock("n3", clock, tune))
//	b := ledgertest.NewByzantine(c, "n3", clock)
//	b.Lead()
type Byzantine struct {
	Cluster *Cluster
	Node    *Node
	// Clock is the time the node stamps on every command it proposes (its
	// ledger.Config.Clock): set it anywhere, behind or ahead of the
	// ledger's clock, or leave it standing.
	Clock *Clock
}

// NodeClock returns a Tune for New: tune (may be nil) for every node, then
// node id's ledger.Config.Clock set to clock, so that one node stamps a time
// of its own (a Byzantine node's, or an honest node's clock that is off).
func NodeClock(id pki.NodeID, clock *Clock, tune func(*ledger.Config)) func(*ledger.Config) {
	return func(cfg *ledger.Config) {
		if tune != nil {
			tune(cfg)
		}
		if cfg.NodeID == id {
			cfg.Clock = clock.Now
		}
	}
}

// NewByzantine returns node id of c as a Byzantine node stamping clock; c
// must have been started with NodeClock(id, clock, ...), which it checks.
func NewByzantine(c *Cluster, id pki.NodeID, clock *Clock) *Byzantine {
	c.T.Helper()
	cfg := ledger.Config{NodeID: id}
	if c.Tune != nil {
		c.Tune(&cfg)
	}
	if cfg.Clock == nil || !cfg.Clock().Equal(clock.Now()) {
		c.T.Fatalf("ledgertest: node %s does not stamp the Byzantine clock: start the cluster with NodeClock", id)
	}
	for _, n := range c.Nodes {
		if n.ID == id {
			return &Byzantine{Cluster: c, Node: n, Clock: clock}
		}
	}
	c.T.Fatalf("ledgertest: no node %s in the cluster", id)
	return nil
}

// Lead makes the Byzantine node the leader, as an election it wins would
// (here the current leader hands over with [ledger.Store.TransferLeadership]),
// and waits until every running node follows it.
func (b *Byzantine) Lead() {
	b.Cluster.T.Helper()
	Poll(b.Cluster.T, string(b.Node.ID)+" to lead", func() error {
		if !b.Node.Store.IsLeader() {
			for _, n := range b.Cluster.Live() {
				if n != b.Node && n.Store.IsLeader() {
					ctx, cancel := context.WithTimeout(context.Background(), Wait)
					err := n.Store.TransferLeadership(ctx, b.Node.ID)
					cancel()
					if err != nil {
						return err
					}
				}
			}
			return fmt.Errorf("%s does not lead yet", b.Node.ID)
		}
		for _, n := range b.Cluster.Live() {
			if id, _ := n.Store.Leader(); id != b.Node.ID {
				return fmt.Errorf("%s follows %q", n.ID, id)
			}
		}
		return nil
	})
}

// Append commits cmd as the leader, on behalf of actor (any principal it
// likes), stamped with Clock, and returns the outcome: the answer of the
// Byzantine node's own FSM, which every node then applies the entry with.
// It takes the lead again first if it lost it.
func (b *Byzantine) Append(actor string, cmd ledger.Command) (ledger.Outcome, error) {
	b.Cluster.T.Helper()
	if !b.Node.Store.IsLeader() {
		b.Lead()
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	return b.Node.Store.Submit(ctx, actor, cmd)
}

// Term is the Byzantine node's current raft term.
func (b *Byzantine) Term() uint64 {
	b.Cluster.T.Helper()
	term, err := strconv.ParseUint(b.Node.Store.RaftStats()["term"], 10, 64)
	if err != nil {
		b.Cluster.T.Fatalf("ledgertest: raft term of %s: %v", b.Node.ID, err)
	}
	return term
}

// rpc runs send over a raft network transport of its own, authenticated
// with the Byzantine node's node certificate (a listener on 127.0.0.1 that
// nobody dials, as raft's transport needs one), with the RPC header and
// peer encoding of the Byzantine node itself: to its peers the RPC comes
// from it.
func (b *Byzantine) rpc(send func(trans *raft.NetworkTransport, header raft.RPCHeader) error) error {
	stream, err := ledger.ListenStream("127.0.0.1:0", b.Node.Identity, nil)
	if err != nil {
		return err
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 1, Timeout: 10 * time.Second, Logger: hclog.NewNullLogger(),
	})
	defer trans.Close()
	self := trans.EncodePeer(raft.ServerID(b.Node.ID), raft.ServerAddress(b.Node.Addr))
	return send(trans, raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(b.Node.ID), Addr: self})
}

// InstallSnapshot sends raft's InstallSnapshot RPC to target as the leader
// of term: over raft's own network transport, authenticated with the
// Byzantine node's node certificate, naming the Byzantine node as leader,
// with data as the snapshot of the log up to lastIndex (of term lastTerm)
// and the cluster's configuration (every node of the cluster a voter, as of
// lastIndex) encoded as raft does. The target's raft takes it when term is
// at least its own and has its FSM restore data. success is the target's
// answer; err is the transport's error or the target's (a refused restore
// comes back as the target's error). A term below the target's is ignored:
// no success, no error.
func (b *Byzantine) InstallSnapshot(target *Node, term uint64, lastIndex, lastTerm uint64, data []byte) (success bool, err error) {
	var conf raft.Configuration
	for _, n := range b.Cluster.Nodes {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n.ID), Address: raft.ServerAddress(n.Addr)})
	}
	var resp raft.InstallSnapshotResponse
	err = b.rpc(func(trans *raft.NetworkTransport, header raft.RPCHeader) error {
		req := &raft.InstallSnapshotRequest{
			RPCHeader:          header,
			SnapshotVersion:    1,
			Term:               term,
			Leader:             header.Addr,
			LastLogIndex:       lastIndex,
			LastLogTerm:        lastTerm,
			Configuration:      raft.EncodeConfiguration(conf),
			ConfigurationIndex: lastIndex,
			Size:               int64(len(data)),
		}
		return trans.InstallSnapshot(raft.ServerID(target.ID), raft.ServerAddress(target.Addr), req, &resp, bytes.NewReader(data))
	})
	if err != nil {
		return false, fmt.Errorf("ledgertest: InstallSnapshot to %s: %w", target.ID, err)
	}
	return resp.Success, nil
}

// AppendEntries sends raft's AppendEntries RPC to target as the leader of
// term, over raft's own transport with the Byzantine node's certificate:
// entries (any content, index and term) following the entry at prevIndex of
// term prevTerm, and commitIndex as the leader's commit index. The target's
// raft takes them when term is at least its own and its log holds prevIndex
// at prevTerm; it drops its own entries from the first index whose term
// differs, stores the new ones and applies its log up to commitIndex. With
// the Byzantine node's own replication to target cut (Node.Fault), this is
// a leader telling one follower a log the others never see. success is
// the target's answer.
func (b *Byzantine) AppendEntries(target *Node, term, prevIndex, prevTerm uint64, entries []*raft.Log, commitIndex uint64) (success bool, err error) {
	var resp raft.AppendEntriesResponse
	err = b.rpc(func(trans *raft.NetworkTransport, header raft.RPCHeader) error {
		req := &raft.AppendEntriesRequest{RPCHeader: header, Term: term, Leader: header.Addr,
			PrevLogEntry: prevIndex, PrevLogTerm: prevTerm, Entries: entries, LeaderCommitIndex: commitIndex}
		return trans.AppendEntries(raft.ServerID(target.ID), raft.ServerAddress(target.Addr), req, &resp)
	})
	if err != nil {
		return false, fmt.Errorf("ledgertest: AppendEntries to %s: %w", target.ID, err)
	}
	return resp.Success, nil
}
