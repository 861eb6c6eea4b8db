package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxFrame is the largest frame body accepted: the envelope format's 4 MiB
// payload limit plus headroom for its header fields (4 names of at most 256
// bytes, the session ID and fixed-size fields need far less than 64 KiB).
const MaxFrame = 4<<20 + 64<<10

// readChunk bounds how much is allocated ahead of bytes actually received,
// so a peer announcing a large frame and sending nothing costs little.
const readChunk = 64 << 10

// Framing errors; the connection that produced one is closed.
var (
	// ErrFrameTooLarge: the announced length exceeds the reader's maximum.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrEmptyFrame: a zero length frame (no envelope is empty).
	ErrEmptyFrame = errors.New("transport: empty frame")
)

// readFrame reads one length-prefixed frame of at most max bytes. It returns
// io.EOF only when the stream ends cleanly before a frame starts, and
// io.ErrUnexpectedEOF for a frame cut short. started, if not nil, is called
// once a valid length has arrived (the caller arms a deadline for the body).
func readFrame(r io.Reader, max uint32, started func()) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, ErrEmptyFrame
	}
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, max)
	}
	if started != nil {
		started()
	}
	buf := make([]byte, 0, min(int(n), readChunk))
	for len(buf) < int(n) {
		want := min(int(n)-len(buf), readChunk)
		if cap(buf)-len(buf) < want {
			grown := make([]byte, len(buf), min(int(n), 2*cap(buf)+want))
			copy(grown, buf)
			buf = grown
		}
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+want])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}
