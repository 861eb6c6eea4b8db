package watermark

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// helperEnv carries the store directory to TestHelperProcess; helperRound
// keeps request IDs and nonces distinct across rounds.
const (
	helperEnv   = "WATERMARK_HELPER_DIR"
	helperRound = "WATERMARK_HELPER_ROUND"
)

// TestHelperProcess is not a test: TestKillDurability re-executes the test
// binary to run it as a child that reserves in a loop, printing each
// acknowledged reservation and completion, until it is killed.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		return
	}
	round := os.Getenv(helperRound)
	s, err := Open(dir, WithLogger(quiet))
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	for i := range 100_000 { // bounded in case the parent dies first
		req := fmt.Sprintf("r%s-req-%d", round, i)
		tk, err := s.Reserve(intentFor(req, req,
			ETHNonceKey(wallet+"-"+round, 1, uint64(i)), BTCOutpointKey("btc-"+round, txA, uint32(i))))
		if err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(2)
		}
		fmt.Printf("reserved %s\n", req)
		if i%2 == 0 {
			if err := s.Complete(tk, hashOf("sig/"+req)); err != nil {
				fmt.Printf("error %v\n", err)
				os.Exit(2)
			}
			fmt.Printf("signed %s\n", req)
		}
	}
	os.Exit(3)
}

// TestKillDurability SIGKILLs a child process that is reserving as fast as it
// can, then checks that every reservation it acknowledged is in the reopened
// store. Three rounds share one directory, so each round also reopens a log
// that the previous kill may have left with a torn tail.
func TestKillDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	dir := t.TempDir()
	const rounds, ackedBeforeKill = 3, 60
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir, fmt.Sprintf("%s=%d", helperRound, round))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var reserved, signed []string
		sc := bufio.NewScanner(out)
		killed := false
		for sc.Scan() {
			verb, req, _ := strings.Cut(sc.Text(), " ")
			switch verb {
			case "reserved":
				reserved = append(reserved, req)
			case "signed":
				signed = append(signed, req)
			case "error":
				t.Fatalf("round %d: child: %s", round, req)
			}
			if !killed && len(reserved) == ackedBeforeKill {
				// The child keeps writing while the signal is delivered, so
				// the kill lands at an arbitrary point of a write.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, want SIGKILL", round, err)
		}

		s, err := Open(dir, WithLogger(quiet))
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		for _, req := range reserved {
			if _, ok := s.Lookup(req); !ok {
				t.Fatalf("round %d: acknowledged reservation %s lost", round, req)
			}
		}
		for _, req := range signed {
			if r, _ := s.Lookup(req); !r.Signed || r.SignatureHash != hashOf("sig/"+req) {
				t.Fatalf("round %d: acknowledged completion %s lost", round, req)
			}
		}
		t.Logf("round %d: %d reservations and %d completions acknowledged, %d records replayed, %d torn bytes truncated",
			round, len(reserved), len(signed), s.Recovery().Records, s.Recovery().TruncatedBytes)
		s.Close()
	}
}
