// Package requestid carries the ID of one API request from the listener
// that received it, through the node RPC to the leader, into every log line
// written on its behalf.
//
// # The ID
//
// A client may name its request with the [Header] X-Request-ID; a
// well-formed value ([Valid]: 1–128 letters, digits and . _ : -) is kept,
// anything else is replaced by a fresh random one ([New]: 32 lowercase hex
// digits). The backend API echoes the ID in its answer's X-Request-ID.
//
// # Logs
//
// [With] puts the ID in a context; [Handler] wraps a slog.Handler so that
// every record logged with such a context (logger.InfoContext(ctx, ...))
// carries it as the attribute request_id. A node wraps its logger once;
// code that handles a request logs with the request's context.
//
// The ID is chosen by the client: it is a label for correlating log lines,
// never an authorization or idempotency key, and it is never a metric
// label (unbounded).
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
)

// Header is the HTTP header that carries the ID, on requests and answers.
const Header = "X-Request-ID"

// MaxLen is the longest ID kept from a client.
const MaxLen = 128

// Attr is the log attribute's key.
const Attr = "request_id"

// Valid reports whether s is a well-formed ID: 1–MaxLen characters, each
// an ASCII letter or digit or one of . _ : -. Nothing else is kept from a
// client (no spaces, quotes or control characters reach a log line).
func Valid(s string) bool {
	if s == "" || len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// New returns a fresh random ID: 16 bytes from crypto/rand as 32
// lowercase hex digits.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// FromRequest is the ID of an incoming request: its X-Request-ID when that
// is well-formed, else a new one.
func FromRequest(r *http.Request) string {
	if id := r.Header.Get(Header); Valid(id) {
		return id
	}
	return New()
}

type ctxKey struct{}

// With returns ctx carrying id (an invalid id is not carried).
func With(ctx context.Context, id string) context.Context {
	if !Valid(id) {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, id)
}

// From returns the ID ctx carries, or "".
func From(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// SetHeader copies the ID ctx carries, if any, onto an outgoing request.
func SetHeader(ctx context.Context, req *http.Request) {
	if id := From(ctx); id != "" {
		req.Header.Set(Header, id)
	}
}

// Handler wraps h: a record logged with a context that carries an ID gets
// the attribute request_id. Wrapping an already wrapped handler returns it
// unchanged.
func Handler(h slog.Handler) slog.Handler {
	if _, ok := h.(handler); ok {
		return h
	}
	return handler{h}
}

type handler struct{ slog.Handler }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	if id := From(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String(Attr, id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h handler) WithAttrs(as []slog.Attr) slog.Handler { return handler{h.Handler.WithAttrs(as)} }
func (h handler) WithGroup(name string) slog.Handler    { return handler{h.Handler.WithGroup(name)} }
