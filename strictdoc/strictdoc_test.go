package strictdoc

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Name  string   `json:"name"`
	Tags  []string `json:"tags"`
	Count int      `json:"count"`
}

type doc struct {
	Inner   inner   `json:"inner"`
	Items   []inner `json:"items"`
	Enabled bool    `json:"enabled"`
	Wait    dur     `json:"wait"`
}

type dur time.Duration

func (d *dur) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = dur(v)
	return err
}

func TestDecodeYAML(t *testing.T) {
	var d doc
	err := DecodeYAML([]byte("inner: {name: a, tags: [x, y], count: 3}\nitems:\n  - name: b\nenabled: true\nwait: 5s\n"), &d)
	if err != nil || d.Inner.Count != 3 || d.Items[0].Name != "b" || !d.Enabled || time.Duration(d.Wait) != 5*time.Second {
		t.Fatalf("%+v, %v", d, err)
	}
}

// TestRefusals: each refusal is an *Error naming the path (and line).
func TestRefusals(t *testing.T) {
	for in, want := range map[string]string{
		"inner:\n  nmae: a\n":               "inner.nmae (line 2): unknown field (known: count, name, tags)",
		"items:\n  - name: a\n  - cnt: 1":   "items[1].cnt (line 3): unknown field",
		"inner: {name: 1}":                  "inner.name (line 1): must be a string",
		"inner: {count: 0x10}":              "inner.count (line 1): integers must be written in decimal",
		"enabled: ~":                        "enabled (line 1): must not be null",
		"wait: soon":                        "wait (line 1): time: invalid duration",
		"a: &x 1\nb: *x":                    "b (line 2): aliases are not allowed",
		"enabled: true\nenabled: false":     "enabled (line 2): duplicate key",
		"enabled: true\n---\nenabled: true": "(top level): only one YAML document is allowed",
		"":                                  "(top level): empty document",
	} {
		var d doc
		err := DecodeYAML([]byte(in), &d)
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	var d doc
	if err := DecodeJSON([]byte(`{"inner":{"name":"a"},"inner":{}}`), &d); err == nil || !strings.Contains(err.Error(), "inner: duplicate key") {
		t.Errorf("JSON duplicate: %v", err)
	}
	if err := DecodeJSON([]byte(`{} {}`), &d); err == nil {
		t.Error("JSON trailing data accepted")
	}
}
