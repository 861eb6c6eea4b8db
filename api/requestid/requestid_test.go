package requestid_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/custody-dev/custody/api/requestid"
)

func TestValid(t *testing.T) {
	for _, s := range []string{"a", "req-1", "2f1c.9:AB_z", strings.Repeat("x", requestid.MaxLen), requestid.New()} {
		if !requestid.Valid(s) {
			t.Errorf("Valid(%q) = false", s)
		}
	}
	for _, s := range []string{"", "a b", "a\nb", `a"b`, "a/b", "é", "a\x00", strings.Repeat("x", requestid.MaxLen+1), "{}"} {
		if requestid.Valid(s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
}

func TestNew(t *testing.T) {
	a, b := requestid.New(), requestid.New()
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Fatalf("New: %q, %q", a, b)
	}
}

func TestFromRequest(t *testing.T) {
	for header, keep := range map[string]bool{"client-7": true, "": false, "bad id": false, strings.Repeat("y", 200): false} {
		r, _ := http.NewRequest("GET", "https://x/", nil)
		if header != "" {
			r.Header.Set(requestid.Header, header)
		}
		got := requestid.FromRequest(r)
		if keep && got != header || !keep && (got == header || !requestid.Valid(got)) {
			t.Errorf("header %q: got %q", header, got)
		}
	}
}

func TestContextAndHeader(t *testing.T) {
	ctx := requestid.With(context.Background(), "abc")
	if requestid.From(ctx) != "abc" || requestid.From(context.Background()) != "" {
		t.Fatal("From does not return what With stored")
	}
	if requestid.From(requestid.With(context.Background(), "not valid")) != "" {
		t.Fatal("an invalid ID was carried")
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://x/", nil)
	requestid.SetHeader(ctx, req)
	if req.Header.Get(requestid.Header) != "abc" {
		t.Fatalf("header %q", req.Header.Get(requestid.Header))
	}
	plain, _ := http.NewRequest("GET", "https://x/", nil)
	requestid.SetHeader(context.Background(), plain)
	if _, set := plain.Header[requestid.Header]; set {
		t.Fatal("a header was set without an ID")
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	h := requestid.Handler(slog.NewJSONHandler(&buf, nil))
	if requestid.Handler(h) != h {
		t.Fatal("wrapping twice wrapped again")
	}
	log := slog.New(h).With("component", "api")
	log.InfoContext(requestid.With(context.Background(), "r-1"), "one")
	log.Info("two")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.Bytes())
	}
	var one, two map[string]any
	if err := json.Unmarshal(lines[0], &one); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lines[1], &two); err != nil {
		t.Fatal(err)
	}
	if one[requestid.Attr] != "r-1" || one["component"] != "api" {
		t.Fatalf("with an ID: %s", lines[0])
	}
	if _, ok := two[requestid.Attr]; ok {
		t.Fatalf("without an ID: %s", lines[1])
	}
}
