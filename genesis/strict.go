package genesis

import (
	"errors"
	"fmt"

	"github.com/custody-dev/custody/strictdoc"
)

// The strict reading of genesis files (JSON) and ceremony configs (YAML)
// is package strictdoc's; its errors become this package's *Error, which
// wraps ErrInvalid.

func decodeJSON(b []byte, out any) error { return fromStrict(strictdoc.DecodeJSON(b, out)) }
func decodeYAML(b []byte, out any) error { return fromStrict(strictdoc.DecodeYAML(b, out)) }

func fromStrict(err error) error {
	var e *strictdoc.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return &Error{Path: e.Path, Line: e.Line, Err: e.Err}
	default:
		return &Error{Err: err}
	}
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
