package preparams

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
)

func TestCacheEachSetOnce(t *testing.T) {
	fx, c := newTestCache(t)
	if _, err := c.Take(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty cache: %v", err)
	}
	for _, pp := range fx[:4] {
		if err := c.Put(pp); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 4 {
		t.Fatalf("Len %d after 4 puts", c.Len())
	}
	entries, err := os.ReadDir(c.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	// Eight takers race for four sets: each set goes to exactly one.
	var (
		mu   sync.Mutex
		got  = map[string]int{}
		wg   sync.WaitGroup
		errs int
	)
	for range 8 {
		wg.Go(func() {
			pp, err := c.Take()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			got[Fingerprint(pp.PaillierSK.N)]++
		})
	}
	wg.Wait()
	if len(got) != 4 || errs != 4 {
		t.Fatalf("4 sets handed out as %v with %d empty answers", got, errs)
	}
	for fp, n := range got {
		if n != 1 {
			t.Fatalf("set %s handed out %d times", fp[:8], n)
		}
	}
	if left, _ := os.ReadDir(c.Dir()); len(left) != 0 {
		t.Fatalf("files left after every set was taken: %d", len(left))
	}
}

func TestCacheSkipsBadFiles(t *testing.T) {
	fx, c := newTestCache(t)
	// Sorted before any random name: taken (and dropped) first.
	for name, body := range map[string]string{
		"0-garbage" + cacheExt:  "{not json",
		"0-nomarker" + cacheExt: `{"marker":"prod","preparams":{}}`,
		"0-invalid" + cacheExt:  `{"marker":"` + CacheMarker + `","preparams":{}}`,
	} {
		if err := os.WriteFile(filepath.Join(c.Dir(), name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Put(fx[0]); err != nil {
		t.Fatal(err)
	}
	pp, err := c.Take()
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(pp.PaillierSK.N) != Fingerprint(fx[0].PaillierSK.N) {
		t.Fatal("Take returned another set than the one valid file")
	}
	if left, _ := os.ReadDir(c.Dir()); len(left) != 0 {
		names := []string{}
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Fatalf("bad files not removed: %s", strings.Join(names, ", "))
	}
	if err := c.Put(&keygen.LocalPreParams{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Put of an invalid set: %v", err)
	}
}

func TestCacheGeneratorFallsBack(t *testing.T) {
	fx, c := newTestCache(t)
	if err := c.Put(fx[1]); err != nil {
		t.Fatal(err)
	}
	calls := 0
	gen := c.Generator(func(context.Context) (*keygen.LocalPreParams, error) {
		calls++
		return fx[2], nil
	})
	a, err := gen(t.Context())
	if err != nil || calls != 0 || Fingerprint(a.PaillierSK.N) != Fingerprint(fx[1].PaillierSK.N) {
		t.Fatalf("first set not from the cache: calls %d, err %v", calls, err)
	}
	b, err := gen(t.Context())
	if err != nil || calls != 1 || Fingerprint(b.PaillierSK.N) != Fingerprint(fx[2].PaillierSK.N) {
		t.Fatalf("empty cache did not fall back to generating: calls %d, err %v", calls, err)
	}
}

func TestPoolDrain(t *testing.T) {
	fx, err := LoadFixtures(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	i := 0
	p := NewPool(ctx, 2, func(context.Context) (*keygen.LocalPreParams, error) {
		i++
		return fx[i%len(fx)], nil
	})
	waitLen(t, p, 2)
	cancel()
	if got := p.Drain(); len(got) != 2 {
		t.Fatalf("Drain returned %d sets, want 2", len(got))
	}
	if p.Len() != 0 {
		t.Fatalf("Len %d after Drain", p.Len())
	}
}

func waitLen(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for p.Len() < n {
		select {
		case <-deadline:
			t.Fatalf("pool holds %d sets, want %d", p.Len(), n)
		case <-tick.C:
		}
	}
}

func TestCacheRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, name := range []string{"a.tmp", "b" + cacheExt + ".taken0011", "fresh.tmp", "keep.txt"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if name != "fresh.tmp" {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := OpenCache(dir); err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if strings.Join(left, ",") != "fresh.tmp,keep.txt" {
		t.Fatalf("left after OpenCache: %v (want the fresh temporary file and the unrelated one)", left)
	}
}

func TestCacheRefusesSharedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCache(dir); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("a world-writable cache directory: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	target := t.TempDir()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCache(link); err == nil {
		t.Fatal("a symlinked cache directory was accepted")
	}
}

func TestCacheSkipsNonRegularFiles(t *testing.T) {
	fx, c := newTestCache(t)
	if err := c.Put(fx[0]); err != nil {
		t.Fatal(err)
	}
	// Sorted first: a symlink to the real set and a FIFO (which would block
	// a plain read) are skipped and removed, the real set is taken once.
	real := c.ready()[0]
	if err := os.Symlink(real, filepath.Join(c.Dir(), "0-link"+cacheExt)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(c.Dir(), "0-fifo"+cacheExt), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(c.Dir(), "0-big"+cacheExt)
	if err := os.WriteFile(big, make([]byte, maxCacheFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	pp, err := c.Take()
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(pp.PaillierSK.N) != Fingerprint(fx[0].PaillierSK.N) {
		t.Fatal("took another set than the real file")
	}
	if _, err := c.Take(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("second take: %v (the set reachable through a symlink was handed out twice?)", err)
	}
}

// newTestCache is an empty cache in a fresh directory and the fixtures.
func newTestCache(t *testing.T) ([]*keygen.LocalPreParams, *Cache) {
	t.Helper()
	fx, err := LoadFixtures(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCache(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return fx, c
}
