package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/custody-dev/custody/pki"
)

// Signed audit heads. Every certified checkpoint binds the head of the audit
// chain (the last event's Seq and Hash) under the signatures of a checkpoint quorum
// of the node set. An auditor holding such heads (`custody audit heads`)
// checks a chain against them: the chain must contain, at each signed Seq,
// the event with the signed Hash. Verifying the hash chain alone detects an
// edited record but not a chain cut after any record, nor a chain rewritten
// consistently from scratch; the signed heads detect both, up to the
// latest head (events after it are covered by the chain only).

// ErrAuditHeads is wrapped by every failure of a chain against its signed
// heads: a head that does not verify against the auditor's node set or
// genesis, a chain that ends before a signed head (truncated), a chain whose
// event at a signed Seq has another hash (edited or forked).
var ErrAuditHeads = errors.New("ledger: audit chain does not match its signed heads")

// HeadsAnchor is what an auditor verifies signed heads against: its own
// genesis (cluster ID, genesis hash and node set, from the genesis file it
// holds), never anything taken from the data being checked.
type HeadsAnchor struct {
	ClusterID   string
	GenesisHash string
	Nodes       map[pki.NodeID]*Node
}

// AnchorOf is the anchor of a genesis command (package genesis builds one
// from a genesis file: genesis.Parse, then Genesis.Command).
func AnchorOf(g Genesis) HeadsAnchor {
	nodes := make(map[pki.NodeID]*Node, len(g.Nodes))
	for _, n := range g.Nodes {
		nodes[n.ID] = &n
	}
	return HeadsAnchor{ClusterID: g.ClusterID, GenesisHash: g.Hash, Nodes: nodes}
}

// HeadError names the signed head a chain (or the head itself) fails.
type HeadError struct {
	// Index is the checkpoint index of the head, AuditSeq the Seq it signed.
	Index    uint64
	AuditSeq uint64
	Reason   string
	// Err is the underlying error (a refused signature), if any.
	Err error
}

func (e *HeadError) Error() string {
	s := fmt.Sprintf("ledger: signed head of checkpoint %d (audit seq %d): %s", e.Index, e.AuditSeq, e.Reason)
	if e.Err != nil {
		// One line: a refused certificate joins one error per signature.
		s += ": " + strings.ReplaceAll(e.Err.Error(), "\n", "; ")
	}
	return s
}

// Unwrap makes errors.Is(err, ErrAuditHeads) true, and errors.Is(err,
// ErrCheckpoint) for a head whose signatures are refused.
func (e *HeadError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrAuditHeads, e.Err}
	}
	return []error{ErrAuditHeads}
}

// HeadVerifier checks a chain against signed heads one event at a time, so
// a long export is streamed. Feed it the events a [ChainVerifier] accepted,
// in order, then call End.
type HeadVerifier struct {
	want map[uint64]Checkpoint // by AuditSeq
	last *Checkpoint           // the head with the highest AuditSeq
	seq  uint64                // the last event's Seq
}

// NewHeadVerifier verifies every head under [VerifyCheckpoint] against the
// anchor's node set and checks it names the anchor's cluster and genesis.
// Two heads signing different hashes at one Seq are refused (the node set
// signed a fork). At least one head is required: with none there is
// nothing to detect truncation with.
func NewHeadVerifier(heads []Checkpoint, a HeadsAnchor) (*HeadVerifier, error) {
	if len(heads) == 0 {
		return nil, fmt.Errorf("%w: no signed heads: truncation cannot be checked", ErrAuditHeads)
	}
	if a.ClusterID == "" || a.GenesisHash == "" || len(a.Nodes) == 0 {
		return nil, fmt.Errorf("%w: no genesis (cluster ID, genesis hash and node set) to verify the heads against", ErrAuditHeads)
	}
	v := &HeadVerifier{want: map[uint64]Checkpoint{}}
	for _, c := range heads {
		fail := func(reason string, err error) error {
			return &HeadError{Index: c.Index, AuditSeq: c.AuditSeq, Reason: reason, Err: err}
		}
		switch {
		case c.ClusterID != a.ClusterID:
			return nil, fail(fmt.Sprintf("signed for cluster %q, the genesis is cluster %q", c.ClusterID, a.ClusterID), nil)
		case c.GenesisHash != a.GenesisHash:
			return nil, fail(fmt.Sprintf("signed for genesis %s, the genesis is %s", short(c.GenesisHash), short(a.GenesisHash)), nil)
		case c.AuditSeq == 0 && c.AuditHead != GenesisHash:
			return nil, fail("signs the empty chain with a hash other than the genesis hash", nil)
		}
		if err := VerifyCheckpoint(c, a.Nodes); err != nil {
			return nil, fail("not certified by the genesis's node set", err)
		}
		if o, ok := v.want[c.AuditSeq]; ok && o.AuditHead != c.AuditHead {
			return nil, fail(fmt.Sprintf("signs hash %s, checkpoint %d signed %s at the same seq: the node set signed a fork",
				short(c.AuditHead), o.Index, short(o.AuditHead)), nil)
		}
		v.want[c.AuditSeq] = c
		if v.last == nil || c.AuditSeq > v.last.AuditSeq {
			v.last = &c
		}
	}
	return v, nil
}

// Next checks one event of the chain, in order.
func (v *HeadVerifier) Next(e AuditEvent) error {
	v.seq = e.Seq
	if c, ok := v.want[e.Seq]; ok && c.AuditHead != e.Hash {
		return &HeadError{Index: c.Index, AuditSeq: c.AuditSeq,
			Reason: fmt.Sprintf("the chain's record at seq %d has hash %s, the head signed %s: edited or forked", e.Seq, short(e.Hash), short(c.AuditHead))}
	}
	return nil
}

// End checks that the chain reached every signed head; it returns the
// number of heads checked and the highest signed Seq.
func (v *HeadVerifier) End() (int, uint64, error) {
	if l := v.last; l.AuditSeq > v.seq {
		return 0, 0, &HeadError{Index: l.Index, AuditSeq: l.AuditSeq,
			Reason: fmt.Sprintf("the chain ends at seq %d but checkpoint %d signed seq %d: truncated", v.seq, l.Index, l.AuditSeq)}
	}
	return len(v.want), v.last.AuditSeq, nil
}

// VerifyHeads checks events (a chain already verified with [VerifyChain])
// against signed heads; see [NewHeadVerifier].
func VerifyHeads(events []AuditEvent, heads []Checkpoint, a HeadsAnchor) error {
	v, err := NewHeadVerifier(heads, a)
	if err != nil {
		return err
	}
	_, _, err = v.Verify(events)
	return err
}

// Verify feeds a whole chain (already verified with [VerifyChain]) to v
// and ends it; see End.
func (v *HeadVerifier) Verify(events []AuditEvent) (int, uint64, error) {
	for _, e := range events {
		if err := v.Next(e); err != nil {
			return 0, 0, err
		}
	}
	return v.End()
}

// WriteHeads writes heads as the heads file: a JSON array of
// [Checkpoint], indented, with a final newline.
func WriteHeads(w io.Writer, heads []Checkpoint) error {
	if heads == nil {
		heads = []Checkpoint{}
	}
	b, err := json.MarshalIndent(heads, "", "  ")
	if err != nil {
		return fmt.Errorf("ledger: write heads: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("ledger: write heads: %w", err)
	}
	return nil
}

// ReadHeads reads a heads file written by [WriteHeads]: one JSON array,
// unknown fields, null and trailing data refused. The heads are not
// verified here (see [NewHeadVerifier]).
func ReadHeads(b []byte) ([]Checkpoint, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var heads []Checkpoint
	if err := dec.Decode(&heads); err != nil {
		return nil, fmt.Errorf("ledger: not a heads file (a JSON array of signed checkpoints): %w", err)
	}
	if dec.More() {
		return nil, errors.New("ledger: not a heads file: data after the JSON array")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("ledger: not a heads file: data after the JSON array")
	}
	if heads == nil {
		return nil, errors.New("ledger: not a heads file: null instead of a JSON array")
	}
	if slices.ContainsFunc(heads, func(c Checkpoint) bool { return len(c.Sigs) == 0 }) {
		return nil, errors.New("ledger: heads file: a head without signatures")
	}
	return heads, nil
}
