package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// FuzzReadFrame feeds arbitrary streams to the frame reader: it must never
// panic, never return a frame over the limit or empty, consume exactly the
// bytes it reports, and fail with a framing or EOF error otherwise.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'}, uint16(64))
	f.Add([]byte{0, 0, 0, 0}, uint16(64))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1}, uint16(64))
	f.Add([]byte{0, 0, 0, 5, 'a'}, uint16(64))
	f.Add([]byte{0, 0, 0, 1, 'x', 0, 0, 0, 2, 'y', 'z', 0}, uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		max := uint32(limit)
		if limit == 0 {
			max = MaxFrame
		}
		r := bytes.NewReader(data)
		var consumed int
		for {
			body, err := readFrame(r, max, nil)
			if err != nil {
				switch {
				case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
					errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrEmptyFrame):
				default:
					t.Fatalf("unexpected error %v", err)
				}
				if errors.Is(err, io.EOF) && consumed != len(data) {
					t.Fatalf("clean EOF with %d of %d bytes consumed", consumed, len(data))
				}
				return
			}
			if len(body) == 0 || uint32(len(body)) > max {
				t.Fatalf("frame of %d bytes with limit %d", len(body), max)
			}
			want := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
			want = append(want, body...)
			if !bytes.Equal(data[consumed:consumed+len(want)], want) {
				t.Fatal("frame does not match the consumed bytes")
			}
			consumed += len(want)
		}
	})
}

// A large announced frame that never arrives allocates only one chunk.
func TestReadFrameAllocatesAsDataArrives(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, MaxFrame)
	in := append(hdr, 1, 2, 3)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readFrame(bytes.NewReader(in), MaxFrame, nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want ErrUnexpectedEOF", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > MaxFrame/4 {
		t.Fatalf("%d bytes allocated for a frame of which 3 bytes arrived", n)
	}
	// And a frame that does arrive is read whole across chunks.
	body := bytes.Repeat([]byte("z"), 3*readChunk+7)
	got, err := readFrame(bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)), MaxFrame, nil)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("multi-chunk frame: %v", err)
	}
}
