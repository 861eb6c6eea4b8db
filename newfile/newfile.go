// Package newfile is the one way the module creates a file that must not
// already exist: key files, certificates, genesis files, CLI outputs, a
// data dir's identity stamp.
//
// [Create] opens the path with O_EXCL (an existing file, or a symlink, is
// never overwritten or followed), lets the caller fill it, and fsyncs and
// closes it. If anything fails the partial file is removed: the path then
// holds all of the output or does not exist.
package newfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Exists is the error for a path that is already there; it wraps
// fs.ErrExist and names the path.
func Exists(path string) error {
	return fmt.Errorf("%s: %w; refusing to overwrite", path, fs.ErrExist)
}

// Write is Create for data already in memory.
func Write(path string, mode os.FileMode, data []byte) error {
	return Create(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Create creates path with mode (O_EXCL), lets write fill it, fsyncs and
// closes it, and removes it again if any of that fails. Every error names
// path; an existing path is [Exists].
func Create(path string, mode os.FileMode, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return Exists(path)
	}
	if err != nil {
		return err // an *fs.PathError, which names path
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		var pe *fs.PathError
		if !errors.As(err, &pe) {
			err = fmt.Errorf("%s: %w", path, err)
		}
		return err
	}
	return nil
}
