package preparams

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
)

// CacheMarker is written into every cache file. Cached pre-params sit in a
// plain file, so they are devnet material only: daemon config refuses a
// cache unless every chain the node signs for is a local development chain
// (docs/config.md, tss.preparams_cache), where a leaked Paillier key
// protects nothing of value.
const CacheMarker = "custody-devnet-preparams-NOT-FOR-PRODUCTION"

// cacheExt names ready files; a file is claimed by renaming it away from
// this extension, so two processes sharing a cache never take the same set.
const cacheExt = ".preparams.json"

type cacheFile struct {
	Marker    string                `json:"marker"`
	PreParams keygen.LocalPreParams `json:"preparams"`
}

// Cache is a directory of pre-params sets, each in its own file, each handed
// out once: Take claims a file by renaming it, reads it and deletes it
// before returning the set. It lets a devnet start without minutes of
// pre-params generation (custody devnet keeps one in the user's cache
// directory and its nodes return their unused sets at shutdown). Safe for
// concurrent use by several processes on one machine.
type Cache struct{ dir string }

// OpenCache opens (creating it, mode 0700) the cache directory dir.
func OpenCache(dir string) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("preparams: cache: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("preparams: cache: %w", err)
	}
	// Another user who can write the directory could plant sets whose
	// secrets they know, or read ours.
	st, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("preparams: cache: %w", err)
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return nil, fmt.Errorf("preparams: cache %s: not a directory (a symlink is refused)", dir)
	case st.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("preparams: cache %s: mode %v, want no access for group or others (chmod 700)", dir, st.Mode().Perm())
	case sys != nil && int(sys.Uid) != os.Geteuid():
		return nil, fmt.Errorf("preparams: cache %s: owned by uid %d, not this user", dir, sys.Uid)
	}
	c := &Cache{dir: dir}
	c.removeLeftovers(time.Now().Add(-time.Hour))
	return c, nil
}

// removeLeftovers deletes what a process that died mid-Put or mid-Take
// left (a temporary or claimed file) older than before.
func (c *Cache) removeLeftovers(before time.Time) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".tmp") && !strings.Contains(name, cacheExt+".taken") {
			continue
		}
		if info, err := e.Info(); err == nil && info.ModTime().Before(before) {
			os.Remove(filepath.Join(c.dir, name))
		}
	}
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// Put stores one validated set under a fresh name (written to a temporary
// file with mode 0600, synced, then renamed into place, so Take never sees
// half a file).
func (c *Cache) Put(pp *keygen.LocalPreParams) error {
	if err := Validate(pp); err != nil {
		return err
	}
	raw, err := json.Marshal(cacheFile{Marker: CacheMarker, PreParams: *pp})
	if err != nil {
		return fmt.Errorf("preparams: cache: %w", err)
	}
	var name [12]byte
	if _, err := rand.Read(name[:]); err != nil {
		return err
	}
	base := filepath.Join(c.dir, hex.EncodeToString(name[:]))
	tmp := base + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("preparams: cache: %w", err)
	}
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, base+cacheExt)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("preparams: cache: %w", err)
	}
	return nil
}

// Take returns one set and removes it from the cache, or ErrEmpty. A file
// that does not parse, lacks the marker or fails Validate is deleted and
// skipped; the error returned with a set is nil.
func (c *Cache) Take() (*keygen.LocalPreParams, error) {
	for _, name := range c.ready() {
		claimed := name + ".taken"
		var suffix [6]byte
		if _, err := rand.Read(suffix[:]); err != nil {
			return nil, err
		}
		claimed += hex.EncodeToString(suffix[:])
		if err := os.Rename(name, claimed); err != nil {
			continue // another process took it first
		}
		// A rename keeps the old mtime: mark the claim's time, so another
		// process's removeLeftovers does not take it for a dead claim.
		now := time.Now()
		_ = os.Chtimes(claimed, now, now)
		raw, err := readClaimed(claimed)
		os.Remove(claimed)
		if err != nil {
			continue
		}
		var f cacheFile
		if json.Unmarshal(raw, &f) != nil || f.Marker != CacheMarker {
			continue
		}
		if Validate(&f.PreParams) != nil {
			continue
		}
		return &f.PreParams, nil
	}
	return nil, ErrEmpty
}

// maxCacheFile bounds a cache file (a set is about 10 KiB of JSON).
const maxCacheFile = 256 << 10

// readClaimed reads a claimed file: a regular file (not followed if it is
// a symlink, never a FIFO that would block) of at most maxCacheFile bytes.
func readClaimed(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > maxCacheFile {
		return nil, fmt.Errorf("preparams: cache: %s is not a regular file of at most %d bytes", path, maxCacheFile)
	}
	return io.ReadAll(io.LimitReader(f, maxCacheFile))
}

// Len reports how many sets the cache holds.
func (c *Cache) Len() int { return len(c.ready()) }

func (c *Cache) ready() []string {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.Type()&fs.ModeType == 0 && strings.HasSuffix(e.Name(), cacheExt) {
			out = append(out, filepath.Join(c.dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// Generator takes from the cache first and calls gen (nil: crypto/rand
// generation) only when the cache is empty.
func (c *Cache) Generator(gen Generator) Generator {
	if gen == nil {
		gen = func(ctx context.Context) (*keygen.LocalPreParams, error) {
			return keygen.GeneratePreParamsWithContext(ctx)
		}
	}
	return func(ctx context.Context) (*keygen.LocalPreParams, error) {
		if pp, err := c.Take(); err == nil {
			return pp, nil
		}
		return gen(ctx)
	}
}
