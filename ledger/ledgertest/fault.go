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

// AppendEntriesPipeline passes pipelined replication through while the link
// is up, so tests replicate the way a production node does. Every append sent
// on the pipeline checks the link: on a cut one it fails, and raft closes the
// pipeline and falls back to AppendEntries, which the cut drops. Appends
// already in flight when the link is cut are still delivered, as on a real
// network.
func (f *Fault) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if f.cut(target) {
		return nil, ErrPartitioned
	}
	p, err := f.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &faultPipeline{AppendPipeline: p, f: f, target: target}, nil
}

type faultPipeline struct {
	raft.AppendPipeline
	f      *Fault
	target raft.ServerAddress
}

func (p *faultPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if p.f.cut(p.target) {
		return nil, ErrPartitioned
	}
	return p.AppendPipeline.AppendEntries(args, resp)
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
