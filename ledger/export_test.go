package ledger

// Exported for the ledger's external tests only.

// ApplyOutcome reads what FSM.Apply returned.
func ApplyOutcome(res any) (req *Request, existing bool, err error) {
	r := res.(*applyResult)
	return r.req.Clone(), r.existing, r.err
}

// NonceKey is the key of State.Nonces.
var NonceKey = nonceKey

// AppendAudit appends an audit event to s.
func (s *State) AppendAudit(index uint64, kind string, payload []byte) {
	s.appendAudit(index, s.Clock, "a", kind, "s", payload)
}

// ApplyRaw appends raw bytes to the log as the leader, bypassing Submit's
// typing (a future or hostile leader's entry).
func (s *Store) ApplyRaw(b []byte) (res any, err error) {
	f := s.raft.Apply(b, s.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Response(), nil
}

// SnapshotView exposes the snapshot's view of s.
func (s *State) SnapshotView() *State { return s.snapshotView() }
