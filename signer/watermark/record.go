package watermark

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// File layout (all integers big-endian):
//
//	file   = magic record*
//	magic  = "CWMLOG" 0x00 0x01                   (8 bytes: name, format version 1)
//	record = u32 n | u32 crc32c(n) | body (n bytes) | u32 crc32c(n | crc | body)
//	body   = reserve | complete
//	reserve  = 0x01 | i64 unix-nanos | str request | digest[32] | payload[32] | u16 count | (str kind | str scope | str id)*
//	complete = 0x02 | i64 unix-nanos | str request | digest[32] | payload[32] | sighash[32]
//	str    = u16 length | bytes
//
// The header carries its own checksum so that a damaged length can never be
// mistaken for a torn final record (which would silently drop what follows).
const (
	fileMagic   = "CWMLOG\x00\x01"
	frameHeader = 8
	frameFooter = 4
	maxBody     = 1 << 22 // a reserve of maxKeys keys at maximal lengths fits
)

const (
	recReserve  byte = 1
	recComplete byte = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is one decoded log entry.
type record struct {
	typ     byte
	at      time.Time
	intent  Intent // for a complete: RequestID, Digest and PayloadHash only
	sigHash [32]byte
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// encodeBody serialises r; r.intent must be normalised.
func encodeBody(r record) []byte {
	b := make([]byte, 0, 128+len(r.intent.Keys)*96)
	b = append(b, r.typ)
	b = binary.BigEndian.AppendUint64(b, uint64(r.at.UnixNano()))
	b = appendStr(b, r.intent.RequestID)
	b = append(b, r.intent.Digest[:]...)
	b = append(b, r.intent.PayloadHash[:]...)
	switch r.typ {
	case recReserve:
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.intent.Keys)))
		for _, k := range r.intent.Keys {
			b = appendStr(b, k.Kind)
			b = appendStr(b, k.Scope)
			b = appendStr(b, k.ID)
		}
	case recComplete:
		b = append(b, r.sigHash[:]...)
	}
	return b
}

// frame wraps a body with its length and checksums.
func frame(body []byte) []byte {
	b := make([]byte, 0, frameHeader+len(body)+frameFooter)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b[:4], castagnoli))
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

type bodyReader struct {
	b   []byte
	err error
}

func (r *bodyReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = errors.New("truncated body")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *bodyReader) u16() int {
	if v := r.take(2); v != nil {
		return int(binary.BigEndian.Uint16(v))
	}
	return 0
}

func (r *bodyReader) str() string { return string(r.take(r.u16())) }

func (r *bodyReader) hash() (h [32]byte) {
	copy(h[:], r.take(digestSize))
	return h
}

// decodeBody parses a record body strictly: every field valid, keys in
// canonical order, no trailing bytes. A body that decodes is one encodeBody
// could have written, so it re-encodes to the same bytes.
func decodeBody(b []byte) (record, error) {
	r := bodyReader{b: b}
	var rec record
	if t := r.take(1); t != nil {
		rec.typ = t[0]
	}
	if ns := r.take(8); ns != nil {
		rec.at = time.Unix(0, int64(binary.BigEndian.Uint64(ns))).UTC()
	}
	rec.intent.RequestID = r.str()
	rec.intent.Digest = r.hash()
	rec.intent.PayloadHash = r.hash()
	switch rec.typ {
	case recReserve:
		n := r.u16()
		for i := 0; i < n && r.err == nil; i++ {
			rec.intent.Keys = append(rec.intent.Keys, Key{Kind: r.str(), Scope: r.str(), ID: r.str()})
		}
	case recComplete:
		rec.sigHash = r.hash()
	default:
		if r.err == nil {
			return record{}, fmt.Errorf("unknown record type %d", rec.typ)
		}
	}
	if r.err != nil {
		return record{}, r.err
	}
	if len(r.b) != 0 {
		return record{}, fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if rec.typ == recComplete {
		if err := validRequestID(rec.intent.RequestID); err != nil {
			return record{}, err
		}
		return rec, nil
	}
	norm, err := rec.intent.normalize()
	if err != nil {
		return record{}, err
	}
	for i := range norm.Keys {
		if norm.Keys[i] != rec.intent.Keys[i] {
			return record{}, errors.New("keys not in canonical order")
		}
	}
	return rec, nil
}

// scanResult is what scanLog found in a log image.
type scanResult struct {
	records []record
	offsets []int64 // of each record, for error messages
	// good is the length of the valid prefix: the file is truncated to it.
	good int64
	// torn explains why the bytes after good were discarded ("" if none).
	torn string
}

// scanLog parses a whole log image. Only an incomplete final record (or a
// tail of zero bytes, as some filesystems leave after a crash) counts as
// torn; any complete record with a bad checksum or content is corruption,
// reported with its offset, because it may hold an acknowledged reservation.
func scanLog(data []byte) (scanResult, *CorruptError) {
	var res scanResult
	if len(data) == 0 {
		return res, nil // a new file: Open writes the header
	}
	if len(data) < len(fileMagic) {
		if isPrefixOrZero(data, fileMagic) {
			res.torn = "incomplete file header"
			return res, nil
		}
		return res, &CorruptError{Offset: 0, Reason: "bad file header"}
	}
	if string(data[:len(fileMagic)]) != fileMagic {
		return res, &CorruptError{Offset: 0, Reason: "bad file header (not a watermark log, or another format version)"}
	}
	off := len(fileMagic)
	res.good = int64(off)
	for off < len(data) {
		rest := data[off:]
		if allZero(rest) {
			res.torn = fmt.Sprintf("%d zero bytes after the last record", len(rest))
			return res, nil
		}
		if len(rest) < frameHeader {
			res.torn = fmt.Sprintf("incomplete record header (%d of %d bytes)", len(rest), frameHeader)
			return res, nil
		}
		if crc32.Checksum(rest[:4], castagnoli) != binary.BigEndian.Uint32(rest[4:8]) {
			return res, &CorruptError{Offset: int64(off), Reason: "record header checksum mismatch"}
		}
		n := int(binary.BigEndian.Uint32(rest[:4]))
		if n == 0 || n > maxBody {
			return res, &CorruptError{Offset: int64(off), Reason: fmt.Sprintf("record length %d out of range", n)}
		}
		total := frameHeader + n + frameFooter
		if len(rest) < total {
			res.torn = fmt.Sprintf("incomplete record (%d of %d bytes)", len(rest), total)
			return res, nil
		}
		if crc32.Checksum(rest[:frameHeader+n], castagnoli) != binary.BigEndian.Uint32(rest[frameHeader+n:total]) {
			return res, &CorruptError{Offset: int64(off), Reason: "record checksum mismatch"}
		}
		rec, err := decodeBody(rest[frameHeader : frameHeader+n])
		if err != nil {
			return res, &CorruptError{Offset: int64(off), Reason: "undecodable record: " + err.Error()}
		}
		res.records = append(res.records, rec)
		res.offsets = append(res.offsets, int64(off))
		off += total
		res.good = int64(off)
	}
	return res, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func isPrefixOrZero(b []byte, s string) bool {
	return allZero(b) || string(b) == s[:len(b)]
}

// DigestOf combines the hashes a message is signed under (for example the
// per-input sighashes of a BTC transaction, in input order) into the single
// Intent.Digest. It is domain-separated and length-prefixed, so different
// lists never collide unless SHA-256 does.
func DigestOf(hashes ...[32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("custody/watermark/digests\x00"))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(hashes)))
	h.Write(n[:])
	for _, d := range hashes {
		h.Write(d[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
