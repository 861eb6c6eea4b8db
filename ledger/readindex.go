package ledger

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// leaderRounds confirm this node's leadership for ReadIndex: a round sends
// one heartbeat (an AppendEntries of this leader's term without entries, as
// raft's own) to every other voter, through the raft transport, and
// succeeds when a majority of the voters, this node included, answered it
// in this term. Every read that arrives while a round is in flight joins
// the next one, so concurrent reads share rounds and every round a read
// waits for was sent after the read began.
//
// Why not raft's VerifyLeader: it counts any answer to a heartbeat or an
// append that arrives after the call, including answers to RPCs sent
// before it (raft has one heartbeat per follower in flight, and pipelined
// appends). A leader paused past an election (GC, SIGSTOP) would, on
// resuming, accept answers sitting in its socket buffers from before the
// pause and read a state that misses writes the new leader acknowledged
// meanwhile. An answer to a heartbeat sent after the read began proves
// that the follower was still in this term when the read had begun, which
// is what the read index protocol needs (Raft thesis §6.4).
type leaderRounds struct {
	mu      sync.Mutex
	next    *leaderRound // the round reads join; nil: none waiting
	running bool
}

// leaderRound is one round's outcome: the commit index noted when it
// started (after every read of the round began) and the term it confirmed.
type leaderRound struct {
	done         chan struct{}
	commit, term uint64
	err          error
}

// confirmLeader waits for the next round of heartbeats and returns its
// commit index and term.
func (s *Store) confirmLeader(ctx context.Context) (commit, term uint64, err error) {
	lr := &s.rounds
	lr.mu.Lock()
	r := lr.next
	if r == nil {
		r = &leaderRound{done: make(chan struct{})}
		lr.next = r
	}
	if !lr.running {
		lr.running = true
		go s.runRounds()
	}
	lr.mu.Unlock()
	select {
	case <-r.done:
		return r.commit, r.term, r.err
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("%w: gave up waiting for a majority to confirm the leader: %v", ErrTimeout, ctx.Err())
	}
}

// runRounds runs rounds while reads wait for one.
func (s *Store) runRounds() {
	lr := &s.rounds
	for {
		lr.mu.Lock()
		r := lr.next
		lr.next = nil
		if r == nil {
			lr.running = false
			lr.mu.Unlock()
			return
		}
		lr.mu.Unlock()
		r.commit, r.term, r.err = s.heartbeatRound()
		close(r.done)
	}
}

// heartbeatRound notes the commit index and the term, sends a heartbeat of
// that term to every other voter of the latest configuration and waits for
// a majority of the voters (this node counts for itself) to accept it. It
// returns as soon as a majority did, or when too many refused or failed
// (ErrTimeout; a follower of a newer term refuses it). Answers it did not
// wait for are dropped.
func (s *Store) heartbeatRound() (commit, term uint64, err error) {
	// The term, then the role, then the term again: equal, this node led
	// in that term when it looked (it never sends a heartbeat of a term
	// another node leads).
	term = s.raft.CurrentTerm()
	if err := s.leaderCheck(); err != nil {
		return 0, 0, err
	}
	if s.raft.CurrentTerm() != term {
		return 0, 0, fmt.Errorf("%w: leadership changed during a read", ErrTimeout)
	}
	commit = s.raft.CommitIndex()
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return 0, 0, s.mapErr(err)
	}
	self := raft.ServerID(s.cfg.NodeID)
	var peers []raft.Server
	voters, selfVoter := 0, false
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		voters++
		if srv.ID == self {
			selfVoter = true
		} else {
			peers = append(peers, srv)
		}
	}
	if !selfVoter {
		return 0, 0, fmt.Errorf("%w: this node is not a voter", ErrTimeout)
	}
	need := voters/2 + 1 - 1 // answers needed besides this node's own vote
	if need <= 0 {
		return commit, term, nil
	}
	me := s.trans.EncodePeer(self, s.trans.LocalAddr())
	answers := make(chan bool, len(peers))
	for _, p := range peers {
		go func() {
			req := raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: s.protocol, ID: []byte(self), Addr: me},
				Term:      term,
				Leader:    me,
			}
			var resp raft.AppendEntriesResponse
			err := s.trans.AppendEntries(p.ID, p.Address, &req, &resp)
			answers <- err == nil && resp.Success && resp.Term == term
		}()
	}
	yes, no := 0, 0
	for yes < need {
		if <-answers {
			yes++
		} else if no++; len(peers)-no < need {
			return 0, 0, fmt.Errorf("%w: no majority confirms this node leads term %d", ErrTimeout, term)
		}
	}
	return commit, term, nil
}
