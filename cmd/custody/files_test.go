package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret")
	if err := writeNew(p, 0o600, []byte("data\n")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "data\n" {
		t.Fatalf("content %q, %v", b, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	// An existing file is neither overwritten nor truncated, and the error
	// names it.
	err := writeNew(p, 0o600, []byte("other"))
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), p) {
		t.Fatalf("second write: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "data\n" {
		t.Fatalf("existing file changed to %q", b)
	}
	if err := checkNew(p); !errors.Is(err, fs.ErrExist) || err.Error() != writeNew(p, 0o600, nil).Error() {
		t.Fatalf("checkNew and writeNew disagree: %v", err)
	}
	if err := checkNew(filepath.Join(dir, "absent")); err != nil {
		t.Fatalf("checkNew of an absent file: %v", err)
	}
	// A symlink, even a dangling one, is not followed.
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := writeNew(link, 0o600, []byte("x")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("write through a dangling symlink: %v", err)
	}
	if err := checkNew(link); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("checkNew of a dangling symlink: %v", err)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatal("the symlink's target was created")
	}
	// A missing directory: the error names the path.
	missing := filepath.Join(dir, "no", "such", "file")
	if err := writeNew(missing, 0o600, nil); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing dir: %v", err)
	}
}

func TestCreateNewRemovesPartialFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "export")
	boom := errors.New("boom")
	err := createNew(p, 0o640, func(w io.Writer) error {
		if _, err := io.WriteString(w, "half of it"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), p) {
		t.Fatalf("got %v, want boom naming %s", err, p)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatal("a failed createNew left the partial file")
	}
	if err := createNew(p, 0o640, func(w io.Writer) error { _, err := io.WriteString(w, "all"); return err }); err != nil {
		t.Fatalf("createNew after a failed one: %v", err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", st.Mode().Perm())
	}
}
