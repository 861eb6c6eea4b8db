// Package strictdoc reads JSON and YAML documents into Go types strictly:
// duplicate keys, aliases and merge keys, nulls, unknown fields, wrong
// types, non-decimal integers, several documents, invalid UTF-8 and
// excessive nesting are refused, and every error is an *Error naming the
// path of the offending value ("operators[2].roles", "ledger.log_store")
// and, for YAML, its line.
//
// A document is first read into a small tree, the tree is checked against
// the Go type it must decode into (struct fields by their JSON names, each
// value against its field's type, TextUnmarshalers asked), and only then is
// it decoded with encoding/json. encoding/json alone would report an
// unknown field without its place, silently take the last of two duplicate
// keys and replace invalid UTF-8; yaml.v3's KnownFields names the line but
// not the path.
//
// Supported field types: strings, booleans, ints, slices, structs and
// pointers to them (optional sections), byte slices (standard base64) and
// anything implementing encoding.TextUnmarshaler; maps are not (use a list of entries with an ID
// field, which also keeps the document's order).
package strictdoc

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Error is a problem at one place of a document.
type Error struct {
	// Path names the place ("operators[2].roles"); empty for the whole
	// document.
	Path string
	// Line is the line in a YAML document; 0 when unknown, and for JSON.
	Line int
	// Err says what is wrong.
	Err error
}

func (e *Error) Error() string {
	where := e.Path
	if where == "" {
		where = "(top level)"
	}
	if e.Line > 0 {
		where = fmt.Sprintf("%s (line %d)", where, e.Line)
	}
	return fmt.Sprintf("%s: %v", where, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// DecodeJSON reads one JSON document strictly into out, a non-nil pointer.
// Every error is an *Error.
func DecodeJSON(b []byte, out any) error {
	v, err := readJSON(b)
	if err != nil {
		return err
	}
	return decodeTree(v, out)
}

// DecodeYAML reads one plain YAML document (no aliases or merge keys,
// string keys) strictly into out, a non-nil pointer. Every error is an
// *Error.
func DecodeYAML(b []byte, out any) error {
	v, err := readYAML(b)
	if err != nil {
		return err
	}
	return decodeTree(v, out)
}

// maxDepth bounds nesting; the deepest document of ours is four levels deep.
const maxDepth = 16

type kind int

const (
	kObject kind = iota
	kArray
	kString
	kNumber
	kBool
	kNull
)

var kindNames = [...]string{"a mapping", "a list", "a string", "a number", "a boolean", "null"}

// value is one node of a document: an object (keys in document order), an
// array, or a scalar whose text is in str.
type value struct {
	kind  kind
	line  int // YAML only; 0 when unknown
	keys  []string
	vals  []*value
	elems []*value
	str   string
}

// errorAt builds the error for a place in the document.
func errorAt(v *value, path, format string, args ...any) *Error {
	e := &Error{Path: path, Err: fmt.Errorf(format, args...)}
	if v != nil {
		e.Line = v.line
	}
	return e
}

// join appends a key to a path; keys that are not plain words are quoted so
// an error stays one readable line.
func join(path, key string) string {
	plain := key != ""
	for i := 0; plain && i < len(key); i++ {
		c := key[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if !plain {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// readJSON reads one JSON document into a tree.
func readJSON(b []byte) (*value, error) {
	if !utf8.Valid(b) {
		return nil, &Error{Err: errors.New("not valid UTF-8")}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := readJSONValue(dec, "", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Err: errors.New("trailing data after the document")}
	}
	return v, nil
}

func readJSONValue(dec *json.Decoder, path string, depth int) (*value, error) {
	if depth > maxDepth {
		return nil, &Error{Path: path, Err: fmt.Errorf("nested deeper than %d levels", maxDepth)}
	}
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, &Error{Err: errors.New("empty or truncated document")}
	}
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("not JSON: %v", err)}
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			v := &value{kind: kObject}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, &Error{Err: fmt.Errorf("not JSON: %v", err)}
				}
				k := kt.(string) // the decoder only yields string keys
				if slices.Contains(v.keys, k) {
					return nil, &Error{Path: join(path, k), Err: errors.New("duplicate key")}
				}
				val, err := readJSONValue(dec, join(path, k), depth+1)
				if err != nil {
					return nil, err
				}
				v.keys, v.vals = append(v.keys, k), append(v.vals, val)
			}
			if _, err := dec.Token(); err != nil {
				return nil, &Error{Err: fmt.Errorf("not JSON: %v", err)}
			}
			return v, nil
		case '[':
			v := &value{kind: kArray}
			for dec.More() {
				e, err := readJSONValue(dec, index(path, len(v.elems)), depth+1)
				if err != nil {
					return nil, err
				}
				v.elems = append(v.elems, e)
			}
			if _, err := dec.Token(); err != nil {
				return nil, &Error{Err: fmt.Errorf("not JSON: %v", err)}
			}
			return v, nil
		}
	case string:
		return &value{kind: kString, str: t}, nil
	case json.Number:
		return &value{kind: kNumber, str: t.String()}, nil
	case bool:
		return &value{kind: kBool, str: strconv.FormatBool(t)}, nil
	case nil:
		return &value{kind: kNull}, nil
	}
	return nil, &Error{Err: fmt.Errorf("not JSON: unexpected %v", tok)}
}

// readYAML reads one YAML document into a tree. Only plain YAML is
// accepted: no aliases or merge keys, string keys, one document.
func readYAML(b []byte) (*value, error) {
	if !utf8.Valid(b) {
		return nil, &Error{Err: errors.New("not valid UTF-8")}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Err: errors.New("empty document")}
		}
		return nil, &Error{Err: fmt.Errorf("not YAML: %v", oneLine(err))}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{Err: errors.New("only one YAML document is allowed")}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &Error{Err: errors.New("not a YAML document")}
	}
	return fromYAML(doc.Content[0], "", 0)
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

func fromYAML(n *yaml.Node, path string, depth int) (*value, error) {
	at := func(format string, args ...any) error {
		return &Error{Path: path, Line: n.Line, Err: fmt.Errorf(format, args...)}
	}
	if depth > maxDepth {
		return nil, at("nested deeper than %d levels", maxDepth)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return nil, at("aliases are not allowed")
	case yaml.MappingNode:
		v := &value{kind: kObject, line: n.Line}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, e := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
				return nil, &Error{Path: path, Line: k.Line, Err: errors.New("keys must be plain strings (no merge keys)")}
			}
			kp := join(path, k.Value)
			if slices.Contains(v.keys, k.Value) {
				return nil, &Error{Path: kp, Line: k.Line, Err: errors.New("duplicate key")}
			}
			val, err := fromYAML(e, kp, depth+1)
			if err != nil {
				return nil, err
			}
			v.keys, v.vals = append(v.keys, k.Value), append(v.vals, val)
		}
		return v, nil
	case yaml.SequenceNode:
		v := &value{kind: kArray, line: n.Line}
		for i, e := range n.Content {
			val, err := fromYAML(e, index(path, i), depth+1)
			if err != nil {
				return nil, err
			}
			v.elems = append(v.elems, val)
		}
		return v, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str", "!!timestamp":
			return &value{kind: kString, line: n.Line, str: n.Value}, nil
		case "!!int":
			s := strings.TrimPrefix(n.Value, "-")
			if s == "" || strings.Trim(s, "0123456789") != "" {
				return nil, at("integers must be written in decimal")
			}
			return &value{kind: kNumber, line: n.Line, str: n.Value}, nil
		case "!!float":
			return &value{kind: kNumber, line: n.Line, str: n.Value}, nil
		case "!!bool":
			b, err := strconv.ParseBool(strings.ToLower(n.Value))
			if err != nil {
				return nil, at("write booleans as true or false")
			}
			return &value{kind: kBool, line: n.Line, str: strconv.FormatBool(b)}, nil
		case "!!null":
			return &value{kind: kNull, line: n.Line}, nil
		}
		return nil, at("unsupported YAML tag %s", n.Tag)
	}
	return nil, at("unsupported YAML node")
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// check refuses anything in v that does not decode into a t exactly:
// unknown fields, nulls, wrong types, bad base64, texts the type's
// UnmarshalText refuses.
func check(t reflect.Type, v *value, path string) error {
	if v.kind == kNull {
		return errorAt(v, path, "must not be null")
	}
	if t.Kind() != reflect.Slice && reflect.PointerTo(t).Implements(textUnmarshaler) {
		if v.kind != kString {
			return errorAt(v, path, "must be a string, not %s", kindNames[v.kind])
		}
		u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := u.UnmarshalText([]byte(v.str)); err != nil {
			return errorAt(v, path, "%v", err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		// An optional section: absent is nil, present is checked as its
		// element (null is refused above).
		return check(t.Elem(), v, path)
	case reflect.String:
		if v.kind != kString {
			return errorAt(v, path, "must be a string, not %s (quote it)", kindNames[v.kind])
		}
	case reflect.Bool:
		if v.kind != kBool {
			return errorAt(v, path, "must be true or false, not %s", kindNames[v.kind])
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.kind != kNumber {
			return errorAt(v, path, "must be an integer, not %s", kindNames[v.kind])
		}
		if _, err := strconv.ParseInt(v.str, 10, t.Bits()); err != nil {
			return errorAt(v, path, "must be an integer of %d bits, not %s", t.Bits(), v.str)
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			if v.kind != kString {
				return errorAt(v, path, "must be a base64 string, not %s", kindNames[v.kind])
			}
			if _, err := base64.StdEncoding.DecodeString(v.str); err != nil {
				return errorAt(v, path, "must be standard base64 with padding: %v", err)
			}
			return nil
		}
		if v.kind != kArray {
			return errorAt(v, path, "must be a list, not %s", kindNames[v.kind])
		}
		for i, e := range v.elems {
			if err := check(t.Elem(), e, index(path, i)); err != nil {
				return err
			}
		}
	case reflect.Struct:
		if v.kind != kObject {
			return errorAt(v, path, "must be a mapping, not %s", kindNames[v.kind])
		}
		fields := jsonFields(t)
		for i, k := range v.keys {
			f, ok := fields[k]
			if !ok {
				known := slices.Sorted(maps.Keys(fields))
				return errorAt(v.vals[i], join(path, k), "unknown field (known: %s)", strings.Join(known, ", "))
			}
			if err := check(f.Type, v.vals[i], join(path, k)); err != nil {
				return err
			}
		}
	default:
		return errorAt(v, path, "internal error: cannot check a %s", t)
	}
	return nil
}

// jsonFields maps a struct's JSON names to its fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// encode writes a checked tree as JSON for encoding/json to decode.
func (v *value) encode(buf *bytes.Buffer) {
	switch v.kind {
	case kObject:
		buf.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, k)
			buf.WriteByte(':')
			v.vals[i].encode(buf)
		}
		buf.WriteByte('}')
	case kArray:
		buf.WriteByte('[')
		for i, e := range v.elems {
			if i > 0 {
				buf.WriteByte(',')
			}
			e.encode(buf)
		}
		buf.WriteByte(']')
	case kString:
		writeJSONString(buf, v.str)
	case kNumber, kBool:
		buf.WriteString(v.str)
	case kNull:
		buf.WriteString("null")
	}
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always encodes
	buf.Write(b)
}

// decodeTree checks v against out's type and decodes it into out.
func decodeTree(v *value, out any) error {
	if err := check(reflect.TypeOf(out).Elem(), v, ""); err != nil {
		return err
	}
	var buf bytes.Buffer
	v.encode(&buf)
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		// check accepted it, so this is a gap in check: still refuse.
		return &Error{Err: err}
	}
	return nil
}
