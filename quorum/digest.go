package quorum

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// DigestDomain is the domain tag that starts every approval encoding. Its
// "v1" is the format version: a new layout gets a new tag, so a signature over
// one layout can never be read as another.
const DigestDomain = "custody/approval/v1"

// Decision is what an approval says about a request.
type Decision uint8

// Decisions. Zero is invalid so a forgotten field never means "approve".
// Initiate is not an approval: it is an initiator's signed creation of a
// request ([VerifyInitiation]) and never counts toward a quorum.
const (
	Approve  Decision = 1
	Reject   Decision = 2
	Initiate Decision = 3
)

// String returns "approve", "reject" or "initiate".
func (d Decision) String() string {
	switch d {
	case Approve:
		return "approve"
	case Reject:
		return "reject"
	case Initiate:
		return "initiate"
	}
	return fmt.Sprintf("decision(%d)", uint8(d))
}

// MarshalText encodes the decision as "approve", "reject" or "initiate".
func (d Decision) MarshalText() ([]byte, error) {
	if d != Approve && d != Reject && d != Initiate {
		return nil, fmt.Errorf("quorum: invalid decision %d", uint8(d))
	}
	return []byte(d.String()), nil
}

// UnmarshalText accepts "approve", "reject" or "initiate".
func (d *Decision) UnmarshalText(b []byte) error {
	p, err := ParseDecision(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// ParseDecision accepts "approve", "reject" or "initiate".
func ParseDecision(s string) (Decision, error) {
	switch s {
	case "approve":
		return Approve, nil
	case "reject":
		return Reject, nil
	case "initiate":
		return Initiate, nil
	}
	return 0, fmt.Errorf("quorum: decision must be \"approve\", \"reject\" or \"initiate\", got %q", s)
}

// ErrMalformedStatement is wrapped by every encoding and decoding error.
var ErrMalformedStatement = errors.New("quorum: malformed approval statement")

// maxIDLen bounds cluster and request IDs inside the digest.
const maxIDLen = 255

// Statement is what an approver signs: a decision about one request (or
// registry/policy change) whose content hashes to PayloadHash, valid until
// Expiry (whole seconds, UTC).
type Statement struct {
	ClusterID   string    `json:"cluster_id"`
	RequestID   string    `json:"request_id"`
	PayloadHash Hash      `json:"payload_hash"`
	Decision    Decision  `json:"decision"`
	Expiry      time.Time `json:"expiry"`
}

// Encode returns the canonical bytes of s. Layout (all integers big-endian):
//
//	u16 len || "custody/approval/v1"   domain tag and version
//	u16 len || cluster ID              1..255 bytes, printable ASCII
//	u16 len || request ID              1..255 bytes, printable ASCII
//	[32]    payload hash
//	u8      decision                   0x01 approve, 0x02 reject
//	u64     expiry                     Unix seconds, > 0
//
// Every field is fixed-length or length-prefixed, so no two distinct
// statements share an encoding. Expiry must be whole seconds: a value that
// would not survive the round trip is refused rather than silently truncated.
func (s Statement) Encode() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 2+len(DigestDomain)+2+len(s.ClusterID)+2+len(s.RequestID)+32+1+8)
	b = appendString(b, DigestDomain)
	b = appendString(b, s.ClusterID)
	b = appendString(b, s.RequestID)
	b = append(b, s.PayloadHash[:]...)
	b = append(b, byte(s.Decision))
	b = binary.BigEndian.AppendUint64(b, uint64(s.Expiry.Unix()))
	return b, nil
}

// Digest returns SHA-256 of s.Encode(): the 32 bytes a device signs.
func (s Statement) Digest() ([32]byte, error) {
	b, err := s.Encode()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// DecodeStatement parses canonical bytes produced by Encode. It is strict:
// wrong tag, bad lengths, invalid fields or trailing bytes are errors, so
// Encode(DecodeStatement(b)) == b whenever it succeeds.
func DecodeStatement(b []byte) (Statement, error) {
	var s Statement
	tag, b, err := readString(b)
	if err != nil {
		return s, fmt.Errorf("%w: domain tag: %v", ErrMalformedStatement, err)
	}
	if tag != DigestDomain {
		return s, fmt.Errorf("%w: domain tag %q, want %q", ErrMalformedStatement, tag, DigestDomain)
	}
	if s.ClusterID, b, err = readString(b); err != nil {
		return s, fmt.Errorf("%w: cluster id: %v", ErrMalformedStatement, err)
	}
	if s.RequestID, b, err = readString(b); err != nil {
		return s, fmt.Errorf("%w: request id: %v", ErrMalformedStatement, err)
	}
	if len(b) != 32+1+8 {
		return s, fmt.Errorf("%w: %d bytes after the ids, want 41", ErrMalformedStatement, len(b))
	}
	copy(s.PayloadHash[:], b[:32])
	s.Decision = Decision(b[32])
	exp := binary.BigEndian.Uint64(b[33:])
	if exp == 0 || exp > 1<<62 {
		return s, fmt.Errorf("%w: expiry %d out of range", ErrMalformedStatement, exp)
	}
	s.Expiry = time.Unix(int64(exp), 0).UTC()
	if err := s.validate(); err != nil {
		return Statement{}, err
	}
	return s, nil
}

func (s Statement) validate() error {
	if err := validDigestID(s.ClusterID); err != nil {
		return fmt.Errorf("%w: cluster id: %v", ErrMalformedStatement, err)
	}
	if err := validDigestID(s.RequestID); err != nil {
		return fmt.Errorf("%w: request id: %v", ErrMalformedStatement, err)
	}
	if s.Decision != Approve && s.Decision != Reject && s.Decision != Initiate {
		return fmt.Errorf("%w: decision %d", ErrMalformedStatement, uint8(s.Decision))
	}
	if s.Expiry.Nanosecond() != 0 {
		return fmt.Errorf("%w: expiry must be whole seconds", ErrMalformedStatement)
	}
	if u := s.Expiry.Unix(); u <= 0 || u > 1<<62 {
		return fmt.Errorf("%w: expiry out of range", ErrMalformedStatement)
	}
	return nil
}

// validDigestID: 1..255 bytes of printable ASCII without spaces. Keeping
// the alphabet small means what an operator reads is what they sign.
func validDigestID(s string) error {
	if len(s) == 0 || len(s) > maxIDLen {
		return fmt.Errorf("length %d not in 1..%d", len(s), maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return fmt.Errorf("byte 0x%02x at %d is not printable ASCII", s[i], i)
		}
	}
	return nil
}

func validClusterID(s string) error {
	if err := validDigestID(s); err != nil {
		return fmt.Errorf("quorum: cluster id: %w", err)
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errors.New("truncated length")
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n > len(b) {
		return "", nil, fmt.Errorf("length %d exceeds remaining %d bytes", n, len(b))
	}
	return string(b[:n]), b[n:], nil
}
