package devnet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"

	"github.com/custody-dev/custody/signer/preparams"
)

// DefaultPreParamsTarget is how many tss pre-params sets the devnet keeps in
// its cache: what a devnet's two keygens take (one set per committee member:
// 3 + 3) plus the refills nodes make after them, so the next devnet starts
// without generating.
const DefaultPreParamsTarget = 8

// DefaultPreParamsCache is the cache a devnet uses unless told otherwise:
// custody/devnet-preparams under the user's cache directory ("" when there
// is none).
func DefaultPreParamsCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "custody", "devnet-preparams")
}

// FillPreParams generates pre-params into the cache at dir until it holds
// target sets; with keep it then goes on topping the cache up (polling
// every 2 s) until ctx ends. progress (may be nil) gets one line per set.
func FillPreParams(ctx context.Context, dir string, target int, keep bool, progress func(format string, a ...any)) error {
	if target < 1 || target > 64 {
		return fmt.Errorf("devnet: pre-params target %d: want 1..64", target)
	}
	cache, err := preparams.OpenCache(dir)
	if err != nil {
		return err
	}
	if progress == nil {
		progress = func(string, ...any) {}
	}
	for {
		if have := cache.Len(); have < target {
			start := time.Now()
			pp, err := keygen.GeneratePreParamsWithContext(ctx)
			if err == nil {
				err = cache.Put(pp)
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			progress("pre-params set generated in %s (%d of %d cached)", time.Since(start).Round(time.Second), cache.Len(), target)
			continue
		}
		if !keep {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// startFiller runs `custody devnet preparams --keep` at the lowest CPU
// priority for the devnet's lifetime: it tops the cache up from CPU the
// nodes leave idle (the story mostly waits for blocks and delays), so the
// sets the keygens took are back for the next devnet.
func (n *Net) startFiller() error {
	if n.cfg.PreParamsCache == "" {
		return nil
	}
	target := n.cfg.PreParamsTarget
	if target == 0 {
		target = DefaultPreParamsTarget
	}
	cache, err := preparams.OpenCache(n.cfg.PreParamsCache)
	if err != nil {
		return err
	}
	n.progress("  tss pre-params cache %s: %d of %d sets (topped up in the background at low priority)", cache.Dir(), cache.Len(), target)
	if err := os.MkdirAll(filepath.Join(n.Dir, "logs"), 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(n.Dir, "logs", "preparams.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{"devnet", "preparams", "--cache", cache.Dir(), "--target", strconv.Itoa(target), "--keep"}
	cmd := exec.Command(n.cfg.Bin, args...)
	// Lowest priority for every thread: through nice(1) when there is one
	// (setpriority on a started Go process reaches only its first thread;
	// threads made before it keep their priority).
	if nice, err := exec.LookPath("nice"); err == nil {
		cmd = exec.Command(nice, append([]string{"-n", "19", n.cfg.Bin}, args...)...)
	}
	cmd.Env = n.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	// Without nice(1), at least the first thread (the nodes' own work goes
	// first).
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, 19)
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	n.filler = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	return nil
}

// stopFiller stops the background filler (a set being generated is lost).
func (n *Net) stopFiller() {
	if f := n.filler; f != nil {
		n.filler = nil
		f()
	}
}
