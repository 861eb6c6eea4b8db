package ledgertest

import (
	"errors"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// Fault wraps a raft transport and drops RPCs to blocked peers (returning
// an error), or all RPCs when isolated. Partition a node by isolating it and
// blocking it on every other node ([Cluster.Isolate]).
type Fault struct {
	raft.Transport
	mu       sync.Mutex
	blocked  map[raft.ServerAddress]bool
	isolated bool
}

// ErrPartitioned is what a dropped RPC returns.
var ErrPartitioned = errors.New("ledgertest: partitioned")

var (
	_ raft.WithPreVote = (*Fault)(nil)
	_ raft.WithClose   = (*Fault)(nil)
)

func (f *Fault) cut(target raft.ServerAddress) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isolated || f.blocked[target]
}

// SetIsolated drops (true) or passes (false) every outbound RPC.
func (f *Fault) SetIsolated(v bool) {
	f.mu.Lock()
	f.isolated = v
	f.mu.Unlock()
}

// SetBlocked drops (true) or passes (false) RPCs to addr.
func (f *Fault) SetBlocked(addr string, v bool) {
	f.mu.Lock()
	if f.blocked == nil {
		f.blocked = map[raft.ServerAddress]bool{}
	}
	f.blocked[raft.ServerAddress(addr)] = v
	f.mu.Unlock()
}

// AppendEntriesPipeline refuses pipelining, so every append goes through
// AppendEntries.
func (f *Fault) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// AppendEntries implements raft.Transport.
func (f *Fault) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if f.cut(target) {
		return ErrPartitioned
	}
	return f.Transport.AppendEntries(id, target, args, resp)
}

// RequestVote implements raft.Transport.
func (f *Fault) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if f.cut(target) {
		return ErrPartitioned
	}
	return f.Transport.RequestVote(id, target, args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (f *Fault) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if f.cut(target) {
		return ErrPartitioned
	}
	return f.Transport.(raft.WithPreVote).RequestPreVote(id, target, args, resp)
}

// InstallSnapshot implements raft.Transport.
func (f *Fault) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if f.cut(target) {
		return ErrPartitioned
	}
	return f.Transport.InstallSnapshot(id, target, args, resp, data)
}

// TimeoutNow implements raft.Transport.
func (f *Fault) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if f.cut(target) {
		return ErrPartitioned
	}
	return f.Transport.TimeoutNow(id, target, args, resp)
}

// Close implements raft.WithClose.
func (f *Fault) Close() error {
	if c, ok := f.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}
