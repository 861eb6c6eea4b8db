package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/custody-dev/custody/newfile"
)

// maxInputFile bounds what a command reads from one rules, state, request,
// registry, approval or key file.
const maxInputFile = 8 << 20

// readInputFile reads path, refusing files larger than maxInputFile.
func readInputFile(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("a file name is required")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInputFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInputFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxInputFile)
	}
	return b, nil
}

// decodeInputFile reads JSON, or YAML converted to JSON, into v with unknown
// fields rejected.
func decodeInputFile(path string, v any) error {
	b, err := readInputFile(path)
	if err != nil {
		return err
	}
	if t := bytes.TrimSpace(b); len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		var y any
		if err := yaml.Unmarshal(b, &y); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if b, err = json.Marshal(y); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: trailing data after the document", path)
	}
	return nil
}

// errExists is the error for an output file that is already there; it
// wraps fs.ErrExist.
func errExists(path string) error { return newfile.Exists(path) }

// checkNew fails as createNew would if path exists, so that a command can
// refuse before it does any work (opening a token, reading a data dir).
func checkNew(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return errExists(path)
	}
	return nil
}

// writeNew is createNew for data already in memory.
func writeNew(path string, mode os.FileMode, data []byte) error {
	return newfile.Write(path, mode, data)
}

// createNew is the one way the CLI writes an output file: newfile.Create
// (O_EXCL, never following a symlink, fsynced, and removed again if
// anything fails, so path holds all of the output or does not exist).
func createNew(path string, mode os.FileMode, write func(io.Writer) error) error {
	return newfile.Create(path, mode, write)
}
