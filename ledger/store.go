package ledger

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/custody-dev/custody/pki"
)

// Config describes one ledger node.
type Config struct {
	// NodeID is the raft server ID; it must equal the node ID of the
	// certificate Stream authenticates with.
	NodeID pki.NodeID
	// Dir holds the log store (wal/ or raft.db, see LogStore) and
	// snapshots/.
	Dir string
	// LogStore selects the raft log + stable store (`ledger.log_store`):
	// LogStoreWAL or LogStoreBoltDB; empty means DefaultLogStore. A data
	// dir made with one store is refused when opened with the other
	// (ErrLogStoreMismatch): nothing is migrated silently.
	LogStore LogStore
	// WALSegmentSize is the size a WAL segment file is preallocated to and
	// sealed at (default 64 MiB). Head truncation after a snapshot frees
	// whole sealed segments only; tests use small segments so rotation and
	// truncation happen.
	WALSegmentSize int
	// Stream carries raft traffic: a [StreamLayer] (mutual TLS between node
	// certificates) on a listener the caller owns. Open takes ownership:
	// Close closes it.
	Stream raft.StreamLayer
	// Gate is the NodeGate whose Authorize Stream was built with; Open
	// binds it to this node's FSM, so the stream admits only nodes of the
	// node set (see NodeGate). Nil: Stream authorises peers on its own
	// (tests and tools).
	Gate *NodeGate
	// Logger receives ledger events; nil discards.
	Logger *slog.Logger
	// RaftLog receives hashicorp/raft's own log at warn level; nil discards.
	RaftLog io.Writer

	// Raft timing. Zero values pick LAN defaults (1 s heartbeat/election,
	// 500 ms lease). Tests on a loaded machine use larger values.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// ApplyTimeout bounds one proposal (default 10 s).
	ApplyTimeout time.Duration
	// SnapshotThreshold is the number of new entries that trigger a
	// snapshot (default 8192); TrailingLogs kept after it (default 10240).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// MaxAppendEntries caps the entries per log write and per
	// AppendEntries RPC, hence the largest batch of concurrent proposals
	// one fsync covers (default: raft's 64).
	MaxAppendEntries int
	// ReplicationInFlight is how many AppendEntries RPCs the leader keeps
	// in flight to one follower (raft's pipelining; the transport's
	// MaxRPCsInFlight). 1 turns pipelining off: each RPC then carries every
	// entry the follower lacks. Default: raft's 2.
	ReplicationInFlight int

	// Clock is the time the leader writes into every command it proposes
	// (the FSM's only notion of time: expiry, cooling-off, unlock delay,
	// velocity windows). Nil means time.Now. Tests and devnets inject one to
	// drive ledger time; the FSM still never lets its clock go backwards.
	Clock func() time.Time

	// Genesis is the genesis command this node's config pins (built from
	// the genesis file whose hash the config names and checked against
	// it: VerifyGenesisCommand). The node refuses a log whose genesis
	// differs, verifies checkpoints of snapshots against its node set
	// until its ledger has one, and refuses snapshots of another genesis.
	// Nil only in tests and tools: a node without it refuses every
	// snapshot that carries a checkpoint while its ledger is empty.
	Genesis *Genesis
	// CheckpointSigner is this node's node key (its certificate's key, in
	// its HSM in production): it signs the state hash at each checkpoint
	// (see CheckpointSign). Its public key must be the one the node set
	// pins for NodeID. Nil: the node verifies checkpoints but signs none.
	CheckpointSigner crypto.Signer
	// Forward hands a follower's checkpoint signature to the leader (the
	// node RPC in the daemon). Nil: a node submits its signatures only
	// while it leads, and a checkpoint waits for a quorum of leaders.
	Forward func(ctx context.Context, cmd Command) error
	// ExportCheck, if set, must pass before this node attests a cold
	// export (genesis.ExportHead): the daemon checks the request against
	// the rules by this node's own first-seen times and clock
	// (member.PolicyReady), the check the offline signer cannot make. A
	// refusal is retried with the attestation loop (every 500 ms) and
	// logged when its reason changes. Called under the FSM's lock: it must not
	// call back into the Store.
	ExportCheck func(st *State, r *Request) error

	// WrapTransport, if set, wraps the raft transport. It exists for fault
	// injection in tests (partitions); production leaves it nil.
	WrapTransport func(raft.Transport) raft.Transport
}

// logCacheSize is how many recent log entries a node keeps in memory.
const logCacheSize = 512

// Store is one ledger node: raft + its log store + the FSM.
type Store struct {
	cfg    Config
	fsm    *FSM
	raft   *raft.Raft
	logs   raftStore
	trans  raft.Transport
	layer  raft.StreamLayer
	log    *slog.Logger
	voters sync.Mutex // one voter change at a time

	snaps *keptSnapshots
	// cached is raft's log store as raft reads it (recent entries in
	// memory): ReadIndex looks up the types of the last committed entries.
	cached raft.LogStore
	// readyTerm is the last term in which this node, leading, saw an entry
	// of its own term committed and applied (a barrier): from then on its
	// commit index covers every write acknowledged before, by any leader,
	// and ReadIndex needs no log entry (see ReadIndex).
	readyTerm atomic.Uint64
	// rounds confirm the leadership for ReadIndex (readindex.go);
	// protocol is the raft protocol version its heartbeats carry.
	rounds   leaderRounds
	protocol raft.ProtocolVersion

	cpWake chan struct{}
	cpStop chan struct{}
	cpDone chan struct{}
	// exportHeld are exports Config.ExportCheck refused, with the reason
	// last logged (logged again when it changes); only the checkpoint loop
	// touches it.
	exportHeld map[string]string

	closeOnce sync.Once
	closeErr  error
}

// Open starts a node. It does not bootstrap or join; see [Store.Bootstrap]
// and [Store.Join].
func Open(cfg Config) (*Store, error) {
	if cfg.Stream == nil {
		return nil, errors.New("ledger: config needs a Stream")
	}
	// Open owns the stream from here: every failure closes it.
	opened := false
	defer func() {
		if !opened {
			_ = cfg.Stream.Close()
		}
	}()
	if cfg.NodeID == "" || cfg.Dir == "" {
		return nil, errors.New("ledger: config needs NodeID and Dir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RaftLog == nil {
		cfg.RaftLog = io.Discard
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	kind, err := ParseLogStore(string(cfg.LogStore))
	if err != nil {
		return nil, err
	}
	cfg.LogStore = kind
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger: data dir: %w", err)
	}
	if err := checkDataDir(cfg.Dir, kind); err != nil {
		return nil, err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	// Pre-vote stays on: a partitioned node rejoining must not depose a
	// healthy leader by bumping terms.
	rc.PreVoteDisabled = false
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: cfg.RaftLog})
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	rc.CommitTimeout = 5 * time.Millisecond
	// Batch concurrent proposals into one log write (one fsync per batch).
	rc.BatchApplyCh = true
	if cfg.MaxAppendEntries > 0 {
		rc.MaxAppendEntries = cfg.MaxAppendEntries
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("ledger: raft config: %w", err)
	}

	if err := checkSigner(cfg); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: cfg.Logger, cpWake: make(chan struct{}, 1), cpStop: make(chan struct{}), cpDone: make(chan struct{}), exportHeld: map[string]string{},
		protocol: rc.ProtocolVersion}
	s.fsm = newFSM(cfg.Logger, s.onHalt, cfg.Genesis)
	s.fsm.onCheckpoint = s.checkpointReached
	if cfg.Gate != nil {
		if err := cfg.Gate.bind(s.fsm); err != nil {
			return nil, err
		}
	}

	logs, err := openLogStore(cfg.Dir, kind, cfg.WALSegmentSize, rc.Logger)
	if err != nil {
		return nil, err
	}
	s.logs = logs
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 3, rc.Logger)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("ledger: snapshot store: %w", err)
	}
	layer := cfg.Stream
	s.layer = layer
	var trans raft.Transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 5, Timeout: 10 * time.Second, Logger: rc.Logger, MaxRPCsInFlight: cfg.ReplicationInFlight,
	})
	if cfg.WrapTransport != nil {
		trans = cfg.WrapTransport(trans)
	}
	s.trans = trans
	// Recent entries stay in memory: the leader's replication and every
	// node's FSM read them back right after writing them. The cache passes
	// the WAL's MonotonicLogStore through.
	cached, err := raft.NewLogCache(logCacheSize, logs)
	if err != nil {
		closeTransport(trans)
		logs.Close()
		return nil, fmt.Errorf("ledger: log cache: %w", err)
	}
	kept, err := newKeptSnapshots(snaps, s.fsm)
	if err != nil {
		logs.Close()
		return nil, err
	}
	s.snaps = kept
	s.cached = cached
	s.fsm.onRefused = func() { go s.quarantineSnapshots() }
	s.fsm.onRestored = kept.restored
	s.fsm.onPersisted = kept.keep
	s.fsm.restoring = kept.restoring
	s.fsm.maxGap = rc.TrailingLogs / 2
	r, err := raft.NewRaft(rc, s.fsm, cached, logs, kept, trans)
	if err != nil {
		closeTransport(trans)
		logs.Close()
		return nil, fmt.Errorf("ledger: start raft: %w", err)
	}
	s.raft = r
	s.fsm.running.Store(true)
	go s.checkpointLoop()
	opened = true
	return s, nil
}

func closeTransport(t raft.Transport) {
	if c, ok := t.(raft.WithClose); ok {
		_ = c.Close()
	}
}

// onHalt runs when the FSM halted. Raft keeps running on purpose: it goes on
// replicating the log, so the commit of the offending entry reaches every node
// and each halts at the same index; a leader that shut down at once would
// strand followers that never learnt the entry was committed. The Store
// refuses every write and linearizable read from now on (ErrHalted).
func (s *Store) onHalt(err error) {
	s.log.Error("ledger: FSM halted; node refuses writes and reads until upgraded and restarted", "err", err)
}

// ID returns this node's ID.
func (s *Store) ID() pki.NodeID { return s.cfg.NodeID }

// Addr returns the raft address peers dial.
func (s *Store) Addr() string { return s.layer.Addr().String() }

// Bootstrap makes this node a one-member cluster if it has no raft state yet;
// on a node with state it does nothing (idempotent across restarts).
func (s *Store) Bootstrap() error {
	f := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(s.cfg.NodeID), Address: raft.ServerAddress(s.Addr()),
	}}})
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("ledger: bootstrap: %w", err)
	}
	return nil
}

// BootstrapVoters starts a new cluster with every node of voters (node ID →
// raft address) as a voter. Every node of a new cluster calls it with the
// same set (the daemon: the genesis node set, at the addresses of its
// config) and raft elects a leader among them; on a node that already has
// raft state it does nothing. Nothing outside the set can join later
// except through Join, which the node set gates.
func (s *Store) BootstrapVoters(voters map[pki.NodeID]string) error {
	if len(voters) == 0 {
		return invalid("bootstrap needs at least one voter")
	}
	if _, ok := voters[s.cfg.NodeID]; !ok {
		return invalid(fmt.Sprintf("bootstrap: this node %q is not among the voters", s.cfg.NodeID))
	}
	var servers []raft.Server
	for _, id := range slices.Sorted(maps.Keys(voters)) {
		if voters[id] == "" {
			return invalid(fmt.Sprintf("bootstrap: no address for voter %q", id))
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(voters[id])})
	}
	f := s.raft.BootstrapCluster(raft.Configuration{Servers: servers})
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("ledger: bootstrap: %w", err)
	}
	return nil
}

// Join adds a voter (on the leader). Joining an existing member with the same
// address is a no-op; an ID or address seen with a different partner is first
// removed. Membership changes are serialised.
//
// Only a node of the node set may become a voter (the set changes only by
// an admin-quorum-signed NodeChange): the leader reads the set
// linearizably (the ledger's, else its pinned genesis's; see NodeGate) and
// refuses any other ID with ErrNotInNodeSet, changing nothing.
func (s *Store) Join(ctx context.Context, id pki.NodeID, addr string) error {
	if id == "" || addr == "" {
		return invalid("join needs id and address")
	}
	s.voters.Lock()
	defer s.voters.Unlock()
	if err := s.ReadLinearizable(ctx, func(st *State) error {
		_, err := s.fsm.nodeKey(st, id)
		return err
	}); err != nil {
		return fmt.Errorf("ledger: join %q: %w", id, err)
	}
	servers, err := s.servers()
	if err != nil {
		return err
	}
	present := false
	for _, srv := range servers {
		sameID, sameAddr := srv.ID == raft.ServerID(id), srv.Address == raft.ServerAddress(addr)
		switch {
		case sameID && sameAddr && srv.Suffrage == raft.Voter:
			present = true
		case sameID || sameAddr:
			if err := s.raft.RemoveServer(srv.ID, 0, s.cfg.ApplyTimeout).Error(); err != nil {
				return s.mapErr(err)
			}
		}
	}
	if !present {
		if err := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, s.cfg.ApplyTimeout).Error(); err != nil {
			return s.mapErr(err)
		}
	}
	// Record every voter (the bootstrap node included); the FSM ignores
	// voters it already has, so repeating a join changes nothing.
	if servers, err = s.servers(); err != nil {
		return err
	}
	for _, srv := range servers {
		if _, err := s.Submit(ctx, string(s.cfg.NodeID), VoterSet{ID: pki.NodeID(srv.ID), Address: string(srv.Address)}); err != nil {
			return err
		}
	}
	return nil
}

// servers is the raft configuration, read on the leader.
func (s *Store) servers() ([]raft.Server, error) {
	if err := s.leaderCheck(); err != nil {
		return nil, err
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, s.mapErr(err)
	}
	return cf.Configuration().Servers, nil
}

// Remove removes a voter (on the leader); removing a non-member is a no-op.
func (s *Store) Remove(ctx context.Context, id pki.NodeID) error {
	s.voters.Lock()
	defer s.voters.Unlock()
	servers, err := s.servers()
	if err != nil {
		return err
	}
	for _, srv := range servers {
		if srv.ID == raft.ServerID(id) {
			if err := s.raft.RemoveServer(srv.ID, 0, s.cfg.ApplyTimeout).Error(); err != nil {
				return s.mapErr(err)
			}
		}
	}
	_, err = s.Submit(ctx, string(s.cfg.NodeID), VoterRemove{ID: id})
	return err
}

// PruneVoters removes (on the leader) every raft voter that is not in the
// node set and returns their IDs. Followers do not check raft's own
// configuration entries, so a compromised leader can add a voter of its
// own choosing; honest nodes refuse its connections (raft, tss and the node
// RPC are gated by the node set), so such a voter only lowers how many
// failures the cluster survives. Every honest leader calls this (the
// daemon's leader loop), so the stray voter goes with the first honest
// leadership. The node set is read linearizably: a node the admins just
// added is never pruned on a stale replica. No node set (no genesis
// anywhere): nothing to compare with, nothing removed.
func (s *Store) PruneVoters(ctx context.Context) ([]pki.NodeID, error) {
	s.voters.Lock()
	defer s.voters.Unlock()
	servers, err := s.servers()
	if err != nil {
		return nil, err
	}
	var set map[pki.NodeID]bool
	if err := s.ReadLinearizable(ctx, func(st *State) error {
		nodes := s.fsm.trustedNodes(st)
		if nodes != nil {
			set = make(map[pki.NodeID]bool, len(nodes))
			for id := range nodes {
				set[id] = true
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if set == nil {
		return nil, nil
	}
	var removed []pki.NodeID
	for _, srv := range servers {
		id := pki.NodeID(srv.ID)
		if set[id] {
			continue
		}
		if err := s.raft.RemoveServer(srv.ID, 0, s.cfg.ApplyTimeout).Error(); err != nil {
			return removed, s.mapErr(err)
		}
		removed = append(removed, id)
		if _, err := s.Submit(ctx, string(s.cfg.NodeID), VoterRemove{ID: id}); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// StrayVoters lists the raft voters this node knows of that are not in
// its replica's node set (cheap, local: the leader loop calls PruneVoters
// only when this finds one).
func (s *Store) StrayVoters() []pki.NodeID {
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return nil
	}
	var stray []pki.NodeID
	_ = s.ReadLocal(func(st *State) error {
		nodes := s.fsm.trustedNodes(st)
		if nodes == nil {
			return nil
		}
		for _, srv := range cf.Configuration().Servers {
			if nodes[pki.NodeID(srv.ID)] == nil {
				stray = append(stray, pki.NodeID(srv.ID))
			}
		}
		return nil
	})
	return stray
}

// RaftStats returns hashicorp/raft's counters (last_snapshot_index,
// commit_index, ...), for metrics and tests.
func (s *Store) RaftStats() map[string]string { return s.raft.Stats() }

// Voters returns the raft configuration's voters as this node knows it.
func (s *Store) Voters() ([]pki.NodeID, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.mapErr(err)
	}
	var ids []pki.NodeID
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			ids = append(ids, pki.NodeID(srv.ID))
		}
	}
	return ids, nil
}

// Leader returns the current leader's ID and address as this node knows them
// (empty if none).
func (s *Store) Leader() (id pki.NodeID, addr string) {
	a, i := s.raft.LeaderWithID()
	return pki.NodeID(i), string(a)
}

// IsLeader reports whether this node believes it leads (not linearizable).
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// RaftState returns this node's raft role.
func (s *Store) RaftState() raft.RaftState { return s.raft.State() }

// AppliedIndex returns raft's applied index. Raft advances it when it hands
// entries to the FSM, before Apply has run, so it says nothing about what a
// read sees; use [Store.StateIndex], [Store.ReadIndex] and [Store.ReadAtLeast].
func (s *Store) AppliedIndex() uint64 { return s.raft.AppliedIndex() }

// StateIndex returns the local FSM's own index: the raft index of the last
// entry that changed the state, set only after Apply finished (not
// linearizable on its own).
func (s *Store) StateIndex() uint64 { return s.fsm.Index() }

// LastIndex returns the last index in this node's log.
func (s *Store) LastIndex() uint64 { return s.raft.LastIndex() }

// Hash returns the SHA-256 of this node's local FSM state.
func (s *Store) Hash() ([32]byte, error) { return s.fsm.Hash() }

// Halted returns why the FSM halted, or nil.
func (s *Store) Halted() error { return s.fsm.Halted() }

// ReadLocal reads this node's local, possibly stale, state. Never use it for
// decisions; see [Store.ReadLinearizable].
func (s *Store) ReadLocal(fn func(*State) error) error { return s.fsm.Read(fn) }

// ReadLinearizable calls fn with a state that reflects every write committed
// before the call: the node must be the leader, and the read waits for its
// [Store.ReadIndex]. On a follower it returns a *NotLeaderError; a follower
// reads linearizably with the leader's [Store.ReadIndex] and its own
// [Store.ReadAtLeast]. fn must not modify or retain the state.
func (s *Store) ReadLinearizable(ctx context.Context, fn func(*State) error) error {
	idx, err := s.ReadIndex(ctx)
	if err != nil {
		return err
	}
	return s.ReadAtLeast(ctx, idx, fn)
}

// readIndexScan bounds how many trailing entries of no interest to the FSM
// (raft's no-op, barriers) ReadIndex looks past before it falls back to a
// barrier.
const readIndexScan = 64

// ReadIndex, on the leader, returns an index that is safe to read at: the
// FSM's state index once it covers every state change committed before the
// call, so any node whose FSM has reached it ([Store.ReadAtLeast]) sees
// every write acknowledged before ReadIndex was called. On a follower it
// returns a *NotLeaderError.
//
// It is raft's read index (Raft thesis §6.4), with no log entry and no
// fsync: after the call began, the leader notes its commit index and
// confirms it still leads with a round of heartbeats a majority answers in
// its term (confirmLeader: a deposed leader gets no majority and returns an
// error, never an index), then waits until its FSM applied everything up to
// the noted index. A leader's commit index covers all earlier writes only
// once an entry of its own term is committed; until it saw one (the first
// read of each term) ReadIndex commits a raft barrier instead, as every
// read did before. The term is read before and after: a read whose
// leadership changed in between gives up (ErrTimeout: retry).
func (s *Store) ReadIndex(ctx context.Context) (uint64, error) {
	if err := s.leaderCheck(); err != nil {
		return 0, err
	}
	if err := s.fsm.Halted(); err != nil {
		return 0, err
	}
	term := s.raft.CurrentTerm()
	if s.readyTerm.Load() != term {
		return s.barrierIndex(ctx, term)
	}
	commit, confirmed, err := s.confirmLeader(ctx)
	if err != nil {
		return 0, err
	}
	if confirmed != term || s.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w: leadership changed during a read", ErrTimeout)
	}
	target, ok := s.lastFSMEntry(commit)
	if !ok {
		return s.barrierIndex(ctx, term)
	}
	if err := s.fsm.waitApplied(ctx, target); err != nil {
		return 0, err
	}
	if err := s.fsm.Halted(); err != nil {
		return 0, err
	}
	return s.fsm.Index(), nil
}

// barrierIndex is ReadIndex through a raft barrier (an entry committed by
// a majority in this leader's term, applied before it returns). When the
// term did not change meanwhile the barrier was of term, and later reads of
// term go without one.
func (s *Store) barrierIndex(ctx context.Context, term uint64) (uint64, error) {
	if err := waitFuture(ctx, s.raft.Barrier(s.timeout(ctx))); err != nil {
		return 0, s.mapErr(err)
	}
	if err := s.fsm.Halted(); err != nil {
		return 0, err
	}
	if s.raft.CurrentTerm() == term {
		for {
			old := s.readyTerm.Load()
			if old >= term || s.readyTerm.CompareAndSwap(old, term) {
				break
			}
		}
	}
	return s.fsm.Index(), nil
}

// lastFSMEntry returns the index of the last entry at or before idx that
// raft hands the FSM (a command or a configuration; raft keeps its no-op
// and barriers to itself), or idx itself when the FSM already applied
// that far. ok is false when the log no longer holds an entry it must look
// at, or more than readIndexScan entries are not the FSM's: the caller
// falls back to a barrier.
func (s *Store) lastFSMEntry(idx uint64) (uint64, bool) {
	applied := s.fsm.appliedIndex()
	for i := 0; i < readIndexScan; i++ {
		if idx <= applied {
			return idx, true
		}
		var l raft.Log
		if err := s.cached.GetLog(idx, &l); err != nil {
			return 0, false
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return idx, true
		}
		idx--
	}
	return 0, false
}

// NonceReleases counts the entries this node applied that freed an ETH
// nonce (a request rejected, cancelled or expired before its claim), and
// snapshot restores. Local to this node and not linearizable: a leader's
// nonce allocator looks for freed nonces in its replica when it moved.
func (s *Store) NonceReleases() uint64 { return s.fsm.nonceReleases.Load() }

// Term returns this node's current raft term. A leader's allocations kept
// in memory (withdraw's nonce allocator) belong to the term they were made
// in: a new term may follow another leader's writes.
func (s *Store) Term() uint64 { return s.raft.CurrentTerm() }

// ReadAtLeast works on any node: it waits until the local FSM's state index
// reaches idx (a leader's [Store.ReadIndex]), then calls fn under the FSM's
// read lock. When ctx ends first it returns an error wrapping
// [ErrNotCaughtUp] and ctx's error and fn is not called: a partitioned node
// never answers from stale state. fn must not modify or retain the state.
//
// The state index moves only on state changes, identically on every node,
// so reaching the leader's value means every change the leader had applied
// is applied here.
func (s *Store) ReadAtLeast(ctx context.Context, idx uint64, fn func(*State) error) error {
	return s.fsm.ReadAtLeast(ctx, idx, fn)
}

// Snapshot forces a snapshot now (tests, operators before maintenance).
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("ledger: snapshot: %w", err)
	}
	return nil
}

// Outcome is what a committed command returned.
type Outcome struct {
	// Request is a copy of the request after the command, if it names one.
	Request *Request
	// Existing is true when an idempotent create found the same request.
	Existing bool
	// Index is the raft index of the entry.
	Index uint64
}

// Submit commits one command as the leader, on behalf of actor, stamped with
// Config.Clock, and returns its outcome. Errors: a *NotLeaderError on
// followers; ErrTimeout when the outcome is unknown (retry only with the same
// request ID); the FSM's refusal otherwise (and then nothing changed).
func (s *Store) Submit(ctx context.Context, actor string, cmd Command) (Outcome, error) {
	if err := s.leaderCheck(); err != nil {
		return Outcome{}, err
	}
	if err := s.fsm.Halted(); err != nil {
		return Outcome{}, err
	}
	b, err := EncodeCommand(actor, s.cfg.Clock(), cmd)
	if err != nil {
		return Outcome{}, err
	}
	return s.apply(ctx, b)
}

func (s *Store) apply(ctx context.Context, b []byte) (Outcome, error) {
	f := s.raft.Apply(b, s.timeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return Outcome{}, s.mapErr(err)
	}
	res, ok := f.Response().(*applyResult)
	if !ok {
		return Outcome{}, fmt.Errorf("ledger: unexpected apply response %T", f.Response())
	}
	if res.err != nil {
		return Outcome{Index: f.Index()}, res.err
	}
	return Outcome{Request: res.req.Clone(), Existing: res.existing, Index: f.Index()}, nil
}

// CreateRequest records a new request (idempotent on ID + payload). The
// returned bool is true when the request already existed.
func (s *Store) CreateRequest(ctx context.Context, actor string, c RequestCreate) (*Request, bool, error) {
	out, err := s.Submit(ctx, actor, c)
	if err != nil {
		return nil, false, err
	}
	return out.Request, out.Existing, nil
}

// PrepareClaim builds a claim for an approved request with a fresh 256-bit
// session ID, this leader's current term and the session's signers (at least
// threshold+1 distinct committee members). Submit it with
// [Store.SubmitClaim]; if leadership changed in between, the FSM refuses it
// (ErrStaleLeader).
func (s *Store) PrepareClaim(requestID string, signers []pki.NodeID) (ClaimSession, error) {
	if err := s.leaderCheck(); err != nil {
		return ClaimSession{}, err
	}
	sid, err := newSessionID()
	if err != nil {
		return ClaimSession{}, err
	}
	return ClaimSession{RequestID: requestID, ExpectStatus: StatusApproved,
		SessionID: sid, Term: s.raft.CurrentTerm(), Signers: slices.Clone(signers)}, nil
}

// SubmitClaim commits a prepared claim. The returned request's Claim.Index is
// the fencing token.
func (s *Store) SubmitClaim(ctx context.Context, actor string, c ClaimSession) (*Request, error) {
	out, err := s.Submit(ctx, actor, c)
	if err != nil {
		return nil, err
	}
	return out.Request, nil
}

// Claim prepares and submits a claim in one step.
func (s *Store) Claim(ctx context.Context, actor, requestID string, signers []pki.NodeID) (*Request, error) {
	c, err := s.PrepareClaim(requestID, signers)
	if err != nil {
		return nil, err
	}
	return s.SubmitClaim(ctx, actor, c)
}

// Reclaim commits a new session (fresh 256-bit ID, this leader's term, the
// given signers) for a request whose session failedSession failed. The
// returned request's Claim.Index is the new fencing token.
func (s *Store) Reclaim(ctx context.Context, actor, requestID, failedSession string, signers []pki.NodeID) (*Request, error) {
	if err := s.leaderCheck(); err != nil {
		return nil, err
	}
	sid, err := newSessionID()
	if err != nil {
		return nil, err
	}
	out, err := s.Submit(ctx, actor, ReclaimSession{RequestID: requestID, FailedSession: failedSession,
		SessionID: sid, Term: s.raft.CurrentTerm(), Signers: slices.Clone(signers)})
	if err != nil {
		return nil, err
	}
	return out.Request, nil
}

// waitFuture waits for f, or until ctx ends (ErrTimeout: the outcome is
// unknown). raft's timeouts bound only the enqueue: an enqueued entry's
// future resolves when it commits, leadership is lost or raft shuts down,
// and a caller being stopped (Close stops the checkpoint signer before
// raft) must not wait on raft.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: gave up waiting for raft: %v", ErrTimeout, ctx.Err())
	}
}

func (s *Store) timeout(ctx context.Context) time.Duration {
	t := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < t {
			t = max(d, time.Millisecond)
		}
	}
	return t
}

func (s *Store) leaderCheck() error {
	if s.raft.State() == raft.Leader {
		return nil
	}
	id, addr := s.Leader()
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

func (s *Store) mapErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		id, addr := s.Leader()
		return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		if h := s.fsm.Halted(); h != nil {
			return h
		}
		return fmt.Errorf("ledger: node shut down: %w", err)
	}
	return fmt.Errorf("ledger: raft: %w", err)
}

// Close shuts raft down and closes the stores. Safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.cpStop)
		<-s.cpDone
		err := s.raft.Shutdown().Error()
		closeTransport(s.trans)
		if e := s.logs.Close(); err == nil {
			err = e
		}
		s.closeErr = err
	})
	return s.closeErr
}
