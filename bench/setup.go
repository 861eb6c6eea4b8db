package bench

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/custody-dev/custody/devnet"
)

// Prepare readies a devnet this process started for a run, with the
// devnet's exported steps: the operators' logins, the hot ETH wallet by
// distributed keygen (alice proposes, bob approves), 10 ETH, and a fresh
// destination allowlisted by alice and bob; it returns once every node's
// API shows the destination active (its cooling-off passed).
func Prepare(ctx context.Context, n *devnet.Net, say func(string, ...any)) error {
	if err := n.WaitReady(ctx); err != nil {
		return err
	}
	for i, op := range []string{"alice", "bob"} {
		if err := n.Login(ctx, op, i); err != nil {
			return err
		}
	}
	say("setup: creating %s by distributed keygen", devnet.ETHWallet)
	ws, err := n.CreateWallets(ctx, devnet.WalletSpec{ID: devnet.ETHWallet, Chain: "eth", Network: "devnet", Committee: n.Nodes[:min(3, len(n.Nodes))]})
	if err != nil {
		return err
	}
	w := ws[0]
	if err := n.FundETH(ctx, common.HexToAddress(w.Address), new(big.Int).Mul(big.NewInt(10), big.NewInt(1e18))); err != nil {
		return fmt.Errorf("fund %s: %w", w.Address, err)
	}
	k, err := crypto.GenerateKey()
	if err != nil {
		return err
	}
	dest := crypto.PubkeyToAddress(k.PublicKey).Hex()
	id := "allow-bench-" + strings.ToLower(dest[len(dest)-6:])
	if _, err := n.Operator(ctx, "alice", nil, "allowlist", "add", "--chain", "eth", "--network", "devnet", "--address", dest,
		"--label", "bench destination", "--id", id, "--yes"); err != nil {
		return err
	}
	if _, err := n.Operator(ctx, "bob", nil, "changes", "approve", id, "--yes"); err != nil {
		return err
	}
	say("setup: %s funded with 10 ETH; %s allowlisted, waiting out its cooling-off", w.Address, dest)
	t, err := Open(n.Info(), []string{"alice"})
	if err != nil {
		return err
	}
	defer t.Close()
	for _, api := range t.APIs {
		one := *t
		one.APIs = []string{api}
		for {
			d, err := one.Discover(ctx, devnet.ETHWallet)
			if err == nil && d.To == dest {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("the allowlisted destination is not active on %s: %v (%w)", api, err, ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

// cpuTicks is the user+system time of process pid, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (in parentheses, which may hold spaces).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return ut + st, nil
}

// clockTicks is USER_HZ on Linux.
const clockTicks = 100

// WaitIdle waits until the processes pids together use less than
// maxCores of CPU over a 2-second window (the nodes refill their tss
// pre-params in the background after a keygen: seconds of safe-prime
// search that would be measured as signing otherwise), or until limit
// passes. It returns how long it waited and whether they went idle; on
// a machine without /proc it returns at once.
func WaitIdle(ctx context.Context, pids []int, maxCores float64, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	const window = 2 * time.Second
	total := func() (int64, bool) {
		var sum int64
		for _, p := range pids {
			t, err := cpuTicks(p)
			if err != nil {
				return 0, false
			}
			sum += t
		}
		return sum, true
	}
	prev, ok := total()
	if !ok {
		return 0, false
	}
	for time.Since(start) < limit {
		select {
		case <-ctx.Done():
			return time.Since(start), false
		case <-time.After(window):
		}
		cur, ok := total()
		if !ok {
			return time.Since(start), false
		}
		if float64(cur-prev)/clockTicks/window.Seconds() < maxCores {
			return time.Since(start), true
		}
		prev = cur
	}
	return time.Since(start), false
}
