package ledger

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// auditDomain separates audit hashes from every other SHA-256 in the system.
const auditDomain = "custody/audit/v1\n"

// GenesisHash is the Prev of the first audit event: 64 zeros.
var GenesisHash = hex.EncodeToString(make([]byte, sha256.Size))

// AuditEvent is one link of the hash chain. Hash = SHA-256(auditDomain ||
// JSON of the event with Hash empty), hex; Prev is the previous event's Hash.
type AuditEvent struct {
	Seq         uint64    `json:"seq"`
	Index       uint64    `json:"index"`
	Time        time.Time `json:"time"`
	Actor       string    `json:"actor"`
	Kind        string    `json:"kind"`
	Subject     string    `json:"subject,omitempty"`
	PayloadHash string    `json:"payload_hash"`
	Prev        string    `json:"prev"`
	Hash        string    `json:"hash,omitempty"`
}

// ComputeHash returns the event's hash over all fields but Hash.
func (e AuditEvent) ComputeHash() string {
	e.Hash = ""
	b, err := json.Marshal(e)
	if err != nil {
		panic("ledger: audit event not serialisable: " + err.Error())
	}
	h := sha256.New()
	h.Write([]byte(auditDomain))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// ErrAuditChain is wrapped by every chain verification failure.
var ErrAuditChain = errors.New("ledger: audit chain broken")

// ChainError names the first bad record.
type ChainError struct {
	// Position is the 0-based position in the checked sequence (the line
	// number minus one for an export file).
	Position int
	Seq      uint64
	Reason   string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("ledger: audit chain broken at record %d (seq %d): %s", e.Position+1, e.Seq, e.Reason)
}

// Unwrap makes errors.Is(err, ErrAuditChain) true.
func (e *ChainError) Unwrap() error { return ErrAuditChain }

// ChainVerifier checks events one at a time, so long exports are streamed.
type ChainVerifier struct {
	n    int
	prev string
	seq  uint64
}

// Next checks one event against everything before it.
func (v *ChainVerifier) Next(e AuditEvent) error {
	pos := v.n
	v.n++
	wantPrev, wantSeq := v.prev, v.seq+1
	if pos == 0 {
		wantPrev, wantSeq = GenesisHash, 1
	}
	switch {
	case e.Seq != wantSeq:
		return &ChainError{pos, e.Seq, fmt.Sprintf("sequence %d, want %d", e.Seq, wantSeq)}
	case e.Prev != wantPrev:
		return &ChainError{pos, e.Seq, "previous hash does not match the record before it"}
	case e.Hash != e.ComputeHash():
		return &ChainError{pos, e.Seq, "record hash does not match its contents (edited record)"}
	}
	v.prev, v.seq = e.Hash, e.Seq
	return nil
}

// Head returns the number of events checked and the last hash.
func (v *ChainVerifier) Head() (int, string) {
	if v.n == 0 {
		return 0, GenesisHash
	}
	return v.n, v.prev
}

// VerifyChain checks a whole chain from genesis.
func VerifyChain(events []AuditEvent) error {
	var v ChainVerifier
	for _, e := range events {
		if err := v.Next(e); err != nil {
			return err
		}
	}
	return nil
}

// WriteAuditJSONL writes one event per line.
func WriteAuditJSONL(w io.Writer, events []AuditEvent) error {
	enc := json.NewEncoder(w)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("ledger: write audit: %w", err)
		}
	}
	return nil
}

// VerifyAuditJSONL verifies an export written by [WriteAuditJSONL], naming
// the first bad line. It returns the number of records and the head hash.
func VerifyAuditJSONL(r io.Reader) (int, string, error) {
	return VerifyAuditJSONLHeads(r, nil)
}

// VerifyAuditJSONLHeads is [VerifyAuditJSONL] that also feeds every record
// the chain accepts to hv (when not nil); the caller ends hv.
func VerifyAuditJSONLHeads(r io.Reader, hv *HeadVerifier) (int, string, error) {
	var v ChainVerifier
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		var e AuditEvent
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return 0, "", &ChainError{Position: line - 1, Reason: "not an audit record: " + err.Error()}
		}
		if err := v.Next(e); err != nil {
			return 0, "", err
		}
		if hv != nil {
			if err := hv.Next(e); err != nil {
				return 0, "", err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, "", fmt.Errorf("ledger: read audit: %w", err)
	}
	n, head := v.Head()
	return n, head, nil
}

// appendAudit adds an event to the state's chain.
func (s *State) appendAudit(index uint64, now time.Time, actor, kind, subject string, payload []byte) {
	prev := GenesisHash
	if n := len(s.Audit); n > 0 {
		prev = s.Audit[n-1].Hash
	}
	sum := sha256.Sum256(payload)
	e := AuditEvent{
		Seq:         uint64(len(s.Audit)) + 1,
		Index:       index,
		Time:        now,
		Actor:       actor,
		Kind:        kind,
		Subject:     subject,
		PayloadHash: hex.EncodeToString(sum[:]),
		Prev:        prev,
	}
	e.Hash = e.ComputeHash()
	s.Audit = append(s.Audit, e)
}
