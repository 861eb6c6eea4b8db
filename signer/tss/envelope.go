package tss

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/custody-dev/custody/pki"
)

// Envelope is the unit sent between parties. Its fields are checked against
// the session before the payload reaches tss-lib; Payload is tss-lib's wire
// bytes (or an echo / confirmation of this package).
type Envelope struct {
	Wallet    string
	Session   SessionID
	Type      string // tss-lib message type name, or one of this package's control types
	From      pki.NodeID
	FromRole  Role
	To        pki.NodeID
	ToRole    Role
	Broadcast bool
	Payload   []byte
}

// Control message types carried in Envelope.Type.
const (
	TypeEcho    = "custody.tss.Echo"
	TypeConfirm = "custody.tss.Confirm"
)

// Limits of the wire format; anything larger is malformed.
const (
	maxNameLen    = 256
	maxPayloadLen = 4 << 20
	envelopeMagic = "CTE1"
)

// ErrMalformedEnvelope is returned by UnmarshalEnvelope for any byte string
// that is not exactly one well-formed envelope.
var ErrMalformedEnvelope = errors.New("tss: malformed envelope")

// Marshal encodes the envelope:
//
//	"CTE1" | u16 len wallet | session[32] | u16 len type | u16 len from | from-role u8 |
//	u16 len to | to-role u8 | flags u8 (bit0 broadcast) | u32 len payload | payload
//
// Strings are length-prefixed big-endian; there is no trailing data.
func (e *Envelope) Marshal() ([]byte, error) {
	for _, s := range []string{e.Wallet, e.Type, string(e.From), string(e.To)} {
		if len(s) > maxNameLen {
			return nil, fmt.Errorf("tss: envelope field too long (%d bytes)", len(s))
		}
	}
	if len(e.Payload) > maxPayloadLen {
		return nil, fmt.Errorf("tss: envelope payload too long (%d bytes)", len(e.Payload))
	}
	n := 4 + 2 + len(e.Wallet) + 32 + 2 + len(e.Type) + 2 + len(e.From) + 1 + 2 + len(e.To) + 1 + 1 + 4 + len(e.Payload)
	b := make([]byte, 0, n)
	b = append(b, envelopeMagic...)
	b = appendStr(b, e.Wallet)
	b = append(b, e.Session[:]...)
	b = appendStr(b, e.Type)
	b = appendStr(b, string(e.From))
	b = append(b, byte(e.FromRole))
	b = appendStr(b, string(e.To))
	b = append(b, byte(e.ToRole))
	var flags byte
	if e.Broadcast {
		flags = 1
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Payload)))
	b = append(b, e.Payload...)
	return b, nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

type reader struct {
	b   []byte
	err bool
}

func (r *reader) take(n int) []byte {
	if r.err || n < 0 || len(r.b) < n {
		r.err = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) str() string {
	l := r.take(2)
	if l == nil {
		return ""
	}
	n := int(binary.BigEndian.Uint16(l))
	if n > maxNameLen {
		r.err = true
		return ""
	}
	return string(r.take(n))
}

func (r *reader) byte1() byte {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// UnmarshalEnvelope decodes bytes produced by Marshal. Unknown roles or flags,
// oversize fields and trailing bytes are rejected with ErrMalformedEnvelope.
func UnmarshalEnvelope(b []byte) (*Envelope, error) {
	r := &reader{b: b}
	if string(r.take(4)) != envelopeMagic {
		return nil, ErrMalformedEnvelope
	}
	e := &Envelope{}
	e.Wallet = r.str()
	copy(e.Session[:], r.take(32))
	e.Type = r.str()
	e.From = pki.NodeID(r.str())
	e.FromRole = Role(r.byte1())
	e.To = pki.NodeID(r.str())
	e.ToRole = Role(r.byte1())
	flags := r.byte1()
	pl := r.take(4)
	if r.err {
		return nil, ErrMalformedEnvelope
	}
	n := binary.BigEndian.Uint32(pl)
	if n > maxPayloadLen {
		return nil, ErrMalformedEnvelope
	}
	e.Payload = append([]byte(nil), r.take(int(n))...)
	if r.err || len(r.b) != 0 || flags > 1 || e.FromRole > RoleNew || e.ToRole > RoleNew {
		return nil, ErrMalformedEnvelope
	}
	e.Broadcast = flags == 1
	return e, nil
}

// echo is the payload of a TypeEcho envelope: "I received from Sender a
// message of Type whose payload hashes to Hash".
type echo struct {
	Type   string
	Sender partyRef
	Hash   [32]byte
}

func (m echo) marshal() []byte {
	b := appendStr(nil, m.Type)
	b = appendStr(b, string(m.Sender.Node))
	b = append(b, byte(m.Sender.Role))
	return append(b, m.Hash[:]...)
}

func unmarshalEcho(b []byte) (echo, error) {
	r := &reader{b: b}
	var m echo
	m.Type = r.str()
	m.Sender.Node = pki.NodeID(r.str())
	m.Sender.Role = Role(r.byte1())
	copy(m.Hash[:], r.take(32))
	if r.err || len(r.b) != 0 || m.Sender.Role > RoleNew {
		return echo{}, ErrMalformedEnvelope
	}
	return m, nil
}
