package ledger

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/genesis"
)

// checkSigner refuses a checkpoint key that is not the one the pinned
// genesis's node set names for this node: its signatures would all be
// refused, and a key mix-up is better met at start than at the first
// checkpoint.
func checkSigner(cfg Config) error {
	if cfg.CheckpointSigner == nil || cfg.Genesis == nil {
		return nil
	}
	for _, n := range cfg.Genesis.Nodes {
		if n.ID != cfg.NodeID {
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(cfg.CheckpointSigner.Public())
		if err != nil {
			return fmt.Errorf("ledger: checkpoint key: %w", err)
		}
		if sum := sha256.Sum256(der); hex.EncodeToString(sum[:]) != n.KeyFingerprint {
			return fmt.Errorf("ledger: this node's key is not the key the pinned genesis names for %s (fingerprint %s): wrong key, HSM token or genesis in the config",
				cfg.NodeID, short(n.KeyFingerprint))
		}
	}
	return nil
}

// checkpointReached wakes the signer; it never blocks the apply path.
func (s *Store) checkpointReached() {
	select {
	case s.cpWake <- struct{}{}:
	default:
	}
}

// checkpointRetry is how often the signer retries a checkpoint that is not
// certified yet (no leader, a forward that failed).
const checkpointRetry = 500 * time.Millisecond

// checkpointLoop signs each checkpoint this node reaches and submits the
// signature (on the leader) or forwards it (Config.Forward), until the
// checkpoint is certified or superseded. Signatures are kept, so a retry
// sends the same one.
func (s *Store) checkpointLoop() {
	defer close(s.cpDone)
	if s.cfg.CheckpointSigner == nil {
		<-s.cpStop
		return
	}
	var cmd *CheckpointSign // this node's signature of the pending checkpoint, kept for retries
	tick := time.NewTicker(checkpointRetry)
	defer tick.Stop()
	for {
		select {
		case <-s.cpStop:
			return
		case <-s.cpWake:
		case <-tick.C:
		}
		if p := s.unsigned(); p != nil {
			if cmd == nil || cmd.Index != p.index {
				c, err := s.signCheckpoint(p)
				if err != nil {
					s.log.Error("ledger: cannot sign checkpoint", "index", p.index, "err", err)
					continue
				}
				cmd = &c
			}
			err := s.sendCheckpoint(*cmd)
			switch {
			case err == nil, errors.Is(err, errCheckpointDone):
			case errors.Is(err, ErrNotLeader), errors.Is(err, ErrTimeout):
			default:
				s.log.Warn("ledger: checkpoint signature not accepted yet", "index", p.index, "err", err)
			}
		}
		s.attestClaims()
	}
}

// unsigned is the pending checkpoint when it does not hold this node's
// signature yet (nil otherwise).
func (s *Store) unsigned() *pendingCheckpoint {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	p := s.fsm.cps.pending
	if s.fsm.halted != nil || p == nil || slices.ContainsFunc(p.sigs, func(sg CheckpointSig) bool { return sg.Node == s.cfg.NodeID }) {
		return nil
	}
	return p
}

// signCheckpoint hashes this node's own state at the checkpoint (off the
// apply path: the view is immutable) and signs the head.
func (s *Store) signCheckpoint(p *pendingCheckpoint) (CheckpointSign, error) {
	var cluster, genesis string
	_ = s.fsm.Read(func(st *State) error {
		cluster, genesis = st.Registry.ClusterID, st.GenesisHash
		return nil
	})
	h, err := p.head(cluster, genesis)
	if err != nil {
		return CheckpointSign{}, err
	}
	sig, err := SignCheckpoint(h, s.cfg.NodeID, s.cfg.CheckpointSigner)
	if err != nil {
		return CheckpointSign{}, err
	}
	return CheckpointSign{Index: h.Index, Term: h.Term, StateHash: h.StateHash, AuditSeq: h.AuditSeq, AuditHead: h.AuditHead, Sig: sig}, nil
}

func (s *Store) sendCheckpoint(cmd Command) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ApplyTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.cpStop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.Attest(ctx, cmd)
}

// Attest submits cmd, a statement this node signed with its node key
// (a checkpoint or claim signature, an export attestation, a chain
// witness), as this node: itself while it leads, else through
// Config.Forward to the leader (without Forward: only while it leads).
func (s *Store) Attest(ctx context.Context, cmd Command) error {
	if s.IsLeader() || s.cfg.Forward == nil {
		_, err := s.Submit(ctx, string(s.cfg.NodeID), cmd)
		return err
	}
	return s.cfg.Forward(ctx, cmd)
}

// attestClaims signs, for every claim or cold export this node applied
// and has not attested yet, the claim's (or export's) head as this node's
// own replica recorded it, and submits or forwards the attestation. A
// request is dropped from the work list once attested, superseded or
// carrying this node's signature.
func (s *Store) attestClaims() {
	type job struct {
		id     string
		claim  *CheckpointHead
		export *genesis.ExportHead
	}
	mine := func(sg CheckpointSig) bool { return sg.Node == s.cfg.NodeID }
	var jobs []job
	s.fsm.mu.Lock()
	if s.fsm.halted == nil {
		st := s.fsm.st
		if s.fsm.rescan {
			for id, r := range st.Requests {
				if r.Status == StatusClaimed && r.Claim != nil && !r.Claim.Attested ||
					r.Status == StatusExported && r.Export != nil && !r.Export.Attested {
					s.fsm.toAttest[id] = true
				}
			}
			s.fsm.rescan = false
		}
		for id := range s.fsm.toAttest {
			r := st.Requests[id]
			switch {
			case r != nil && r.Status == StatusExported && r.Export != nil && !r.Export.Attested && !slices.ContainsFunc(r.Export.Attestations, mine):
				if check := s.cfg.ExportCheck; check != nil {
					if err := check(st, r); err != nil {
						if why := err.Error(); s.exportHeld[id] != why {
							s.exportHeld[id] = why
							s.log.Info("ledger: cold export not attested yet: this node's own check refuses it", "request", id, "err", err)
						}
						continue // stays in toAttest: retried
					}
				}
				h := r.ExportHead(st.Registry.ClusterID, st.GenesisHash)
				jobs = append(jobs, job{id: id, export: &h})
			case r != nil && r.Claim != nil && !r.Claim.Attested && r.Claim.AuditHead != "" && !slices.ContainsFunc(r.Claim.Attestations, mine):
				h := r.ClaimHead(st.Registry.ClusterID, st.GenesisHash)
				jobs = append(jobs, job{id: id, claim: &h})
			default:
				delete(s.fsm.toAttest, id)
			}
		}
	}
	s.fsm.mu.Unlock()
	for _, j := range jobs {
		var cmd Command
		if j.export != nil {
			sig, err := SignExport(*j.export, s.cfg.NodeID, s.cfg.CheckpointSigner)
			if err != nil {
				s.log.Error("ledger: cannot attest a cold export", "request", j.id, "err", err)
				continue
			}
			cmd = ColdAttest{Request: j.id, Sig: sig}
		} else {
			sig, err := SignCheckpoint(*j.claim, s.cfg.NodeID, s.cfg.CheckpointSigner)
			if err != nil {
				s.log.Error("ledger: cannot attest a claim", "request", j.id, "err", err)
				continue
			}
			cmd = CheckpointSign{Request: j.id, Index: j.claim.Index, AuditSeq: j.claim.AuditSeq, AuditHead: j.claim.AuditHead, Sig: sig}
		}
		err := s.sendCheckpoint(cmd)
		if err != nil && !errors.Is(err, errCheckpointDone) && !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrTimeout) {
			s.log.Warn("ledger: attestation not accepted yet", "request", j.id, "type", cmd.Type(), "err", err)
		}
	}
}
