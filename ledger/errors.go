package ledger

import (
	"errors"
	"fmt"

	"github.com/custody-dev/custody/pki"
)

// Sentinel errors callers branch on. Every FSM refusal leaves the state
// unchanged (no audit event either).
var (
	// ErrNotLeader: the write or linearizable read must go to the leader;
	// the error is a *NotLeaderError naming it when known.
	ErrNotLeader = errors.New("ledger: not the leader")
	// ErrConflict: the request ID is taken by a different payload.
	ErrConflict = errors.New("ledger: request ID already used with a different payload")
	// ErrNotFound: no such request, wallet, operator or device.
	ErrNotFound = errors.New("ledger: not found")
	// ErrInvalid: a malformed or incomplete command (bad input).
	ErrInvalid = errors.New("ledger: invalid command")
	// ErrWrongStatus: the compare-and-set on a request's status failed.
	ErrWrongStatus = errors.New("ledger: request is not in the expected status")
	// ErrStaleLeader: the command was proposed under an older term (a deposed
	// leader); claims from it are refused.
	ErrStaleLeader = errors.New("ledger: proposed by a stale leader")
	// ErrStaleSession: a result names a session that is not the current claim.
	ErrStaleSession = errors.New("ledger: session is not the request's current claim")
	// ErrLocked: the account is locked.
	ErrLocked = errors.New("ledger: account locked")
	// ErrAllocated: the ETH nonce or BTC outpoint is already taken.
	ErrAllocated = errors.New("ledger: nonce or outpoint already allocated")
	// ErrInitiation: a create request's initiation signature does not prove
	// an enrolled initiator asked for exactly this withdrawal.
	ErrInitiation = errors.New("ledger: initiation refused")
	// ErrReplayed: a governance change ID was applied before; change IDs
	// are single-use forever, so an old unlock, reactivation, allowlist add
	// or rules change cannot be replayed after a counter-change.
	ErrReplayed = errors.New("ledger: governance change already applied")
	// ErrApproval: an approval is invalid (signature, device, expiry, initiator,
	// validity beyond the cluster's ceiling).
	ErrApproval = errors.New("ledger: approval refused")
	// ErrQuorum: the approvals no longer meet the quorum at claim time.
	ErrQuorum = errors.New("ledger: approval quorum not met")
	// ErrPolicy: policy denies the request at this index.
	ErrPolicy = errors.New("ledger: policy denies")
	// ErrNoCertifiedBase: no snapshot now (no certified checkpoint yet, or
	// the last is too far behind); raft keeps its log.
	ErrNoCertifiedBase = errors.New("ledger: no certified checkpoint to snapshot")
	// ErrGenesisMismatch: a genesis command or a state that is not of the
	// genesis this node's config pins.
	ErrGenesisMismatch = errors.New("ledger: genesis differs from the pinned one")
	// ErrNotInNodeSet: a node ID that is not in the cluster's node set (a
	// raft peer refused by the NodeGate, a join refused by Store.Join).
	ErrNotInNodeSet = errors.New("ledger: not in the node set")
	// ErrHalted: this node's FSM met a log entry it cannot apply (unknown type
	// or version, or an internal fault) and stopped rather than diverge.
	ErrHalted = errors.New("ledger: node halted")
	// ErrTimeout: raft did not commit in time; the outcome is unknown. Retry
	// only with the same request ID (idempotency makes that safe).
	ErrTimeout = errors.New("ledger: commit outcome unknown")
	// ErrNotCaughtUp: a read at a read index gave up (its context ended)
	// before this node's FSM applied the state up to that index; the node
	// is partitioned or lagging. Nothing was read.
	ErrNotCaughtUp = errors.New("ledger: local state has not reached the read index")
)

// NotLeaderError is ErrNotLeader with the leader's identity, if known.
type NotLeaderError struct {
	LeaderID   pki.NodeID
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" {
		return "ledger: not the leader (no leader known)"
	}
	return fmt.Sprintf("ledger: not the leader; leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Unwrap makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
}
