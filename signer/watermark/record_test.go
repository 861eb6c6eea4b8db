package watermark

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"
)

func sampleRecords() []record {
	at := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	in := intentFor("req-1", "m1", BTCOutpointKey("btc-hot", txA, 0), BTCOutpointKey("btc-hot", txA, 1))
	in, _ = in.normalize()
	return []record{
		{typ: recReserve, at: at, intent: in},
		{typ: recComplete, at: at, sigHash: hashOf("sig"),
			intent: Intent{RequestID: in.RequestID, Digest: in.Digest, PayloadHash: in.PayloadHash}},
		{typ: recReserve, at: at, intent: intentFor("req-2", "m2", ETHNonceKey(wallet, 1, 7))},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range sampleRecords() {
		body := encodeBody(r)
		got, err := decodeBody(body)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !bytes.Equal(encodeBody(got), body) || !got.at.Equal(r.at) || got.intent.RequestID != r.intent.RequestID {
			t.Fatalf("round trip changed the record: %+v", got)
		}
	}
}

func TestDecodeBodyRejects(t *testing.T) {
	rs := sampleRecords()
	reserve := encodeBody(rs[0])
	unsorted := rs[0]
	unsorted.intent.Keys = []Key{unsorted.intent.Keys[1], unsorted.intent.Keys[0]}
	badKey := rs[2]
	badKey.intent.Keys = []Key{{Kind: KindETHNonce, Scope: wallet + "/1", ID: "007"}}
	badType := bytes.Clone(reserve)
	badType[0] = 9
	cases := map[string][]byte{
		"empty":            nil,
		"trailing bytes":   append(bytes.Clone(reserve), 0),
		"truncated":        reserve[:len(reserve)-1],
		"unknown type":     badType,
		"keys not sorted":  encodeBody(unsorted),
		"non-canonical id": encodeBody(badKey),
	}
	for name, b := range cases {
		if _, err := decodeBody(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestScanLogFramesRecords(t *testing.T) {
	log := []byte(fileMagic)
	for _, r := range sampleRecords() {
		log = append(log, frame(encodeBody(r))...)
	}
	res, cerr := scanLog(log)
	if cerr != nil || len(res.records) != 3 || res.good != int64(len(log)) || res.torn != "" {
		t.Fatalf("scan: %+v, %v", res, cerr)
	}
	// A length beyond maxBody with a valid header checksum is corruption,
	// not a torn tail that would be cut off.
	if _, cerr := scanLog(append([]byte(fileMagic), headerFor(maxBody+1)...)); cerr == nil || !errors.Is(cerr, ErrCorrupt) {
		t.Fatalf("oversized record: %v", cerr)
	}
	if _, cerr := scanLog(append([]byte(fileMagic), headerFor(0)...)); cerr == nil || !errors.Is(cerr, ErrCorrupt) {
		t.Fatalf("empty record: %v", cerr)
	}
}

// headerFor returns a record header announcing n bytes, with a valid
// checksum.
func headerFor(n uint32) []byte {
	h := binary.BigEndian.AppendUint32(nil, n)
	return binary.BigEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
}

// FuzzDecodeBody: no panics, and anything that decodes is canonical (it
// re-encodes to the same bytes), so one record has one encoding.
func FuzzDecodeBody(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(encodeBody(r))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeBody(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeBody(r), b) {
			t.Fatalf("decoded body is not canonical: %x", b)
		}
	})
}

// FuzzScanLog: no panics on any file image; a clean scan's valid prefix is
// exactly the magic followed by the re-framed records, and replaying them
// never panics.
func FuzzScanLog(f *testing.F) {
	log := []byte(fileMagic)
	for _, r := range sampleRecords() {
		log = append(log, frame(encodeBody(r))...)
	}
	f.Add(log)
	f.Add(log[:len(log)-3])
	f.Add([]byte(fileMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, cerr := scanLog(data)
		if cerr != nil {
			return
		}
		if res.good > int64(len(data)) || (res.torn == "" && res.good != int64(len(data))) {
			t.Fatalf("good=%d len=%d torn=%q", res.good, len(data), res.torn)
		}
		if res.good >= int64(len(fileMagic)) {
			rebuilt := []byte(fileMagic)
			for _, r := range res.records {
				rebuilt = append(rebuilt, frame(encodeBody(r))...)
			}
			if !bytes.Equal(rebuilt, data[:res.good]) {
				t.Fatal("valid prefix does not re-frame to itself")
			}
		}
		s := &Store{requests: map[string]*Record{}, owners: map[Key]string{}}
		for _, r := range res.records {
			_ = s.apply(r)
		}
	})
}
