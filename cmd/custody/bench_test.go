package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/bench"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

// TestBenchWithdraw runs `custody bench withdraw` end to end at a tiny
// scale (the test binary as the CLI, starting its own 3-node devnet on the
// committed pre-params fixtures, without the plain tss-lib baseline): every
// withdrawal signed, every create answered pending, the JSON report's
// shape. No timing is asserted.
func TestBenchWithdraw(t *testing.T) {
	softhsmtest.SharedEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "bench", "withdraw", "--count", "3", "--concurrency", "2", "--nodes", "3",
		"--latency-count", "1", "--create-count", "12", "--create-concurrency", "4", "--skip-baseline", "--idle-wait", "4s", "-o", "json")
	cmd.Env = append(os.Environ(), execEnv+"=1", devnetFixturesEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("custody bench withdraw: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var r bench.Report
	dec := json.NewDecoder(bytes.NewReader(stdout.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("the report is not one JSON object: %v\n%s", err, stdout.String())
	}
	w := r.Withdraw
	if !r.Started || r.Nodes != 3 || w.Count != 3 || w.Concurrency != 2 || w.Signed != 3 || w.Failed != 0 || len(w.Errors) != 0 {
		t.Errorf("report: started %v, %d nodes, withdraw %+v", r.Started, r.Nodes, w)
	}
	if w.ApprovalToSigned.N != 3 || w.Create.N != 3 || w.Approve.N != 6 || w.PollMS != 25 || w.PerSecond <= 0 ||
		strings.Join(w.Approvers, ",") != "alice,bob" || w.To == "" {
		t.Errorf("withdraw stats: %+v", w)
	}
	if s := w.ApprovalToSigned; s.P50 <= 0 || s.P50 > s.P99 || s.P99 > s.Max {
		t.Errorf("latency percentiles out of order: %+v", s)
	}
	if q := r.Sequential; q == nil || q.Concurrency != 1 || q.Signed != 1 || q.ApprovalToSigned.N != 1 {
		t.Errorf("one at a time: %+v", q)
	}
	c := r.Create
	if c == nil || c.Count != 12 || c.Concurrency != 4 || c.Created != 12 || c.Failed != 0 || c.Statuses["pending_approval"] != 12 || c.Latency.N != 12 {
		t.Errorf("create: %+v", c)
	}
	if r.Plain != nil || r.Ratios.LatencyRatio != 0 || r.Ratios.ThroughputRatio != 0 {
		t.Errorf("the baseline ran although skipped: %+v %+v", r.Plain, r.Ratios)
	}
	if r.Machine.CPUs < 1 || r.Machine.Date == "" {
		t.Errorf("machine: %+v", r.Machine)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", stderr.String())
	}
}

// TestBenchWithdrawFlags: values that cannot make a measurement exit 1 with
// one line naming the flag, before anything starts.
func TestBenchWithdrawFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--count", "0"}, "--count 0"},
		{[]string{"--concurrency", "0"}, "--concurrency 0"},
		{[]string{"--concurrency", "8", "--count", "4"}, "more than --count"},
		{[]string{"--amount", "0"}, "--amount"},
		{[]string{"--amount", "abc"}, "--amount"},
		{[]string{"--amount", "5"}, "at most 1 ETH"},
		{[]string{"--poll", "0s"}, "--poll"},
		{[]string{"--nodes", "1"}, "--nodes 1"},
		{[]string{"--create-concurrency", "0"}, "--create-concurrency"},
		{[]string{"--baseline-count", "2"}, "--baseline-count"},
		{[]string{"--timeout", "0s"}, "--timeout"},
		{[]string{"--dir", "x", "--nodes", "3"}, "--nodes applies"},
		{[]string{"--dir", t.TempDir()}, "devnet.json"},
		{[]string{"-o", "yaml"}, "--output"},
	} {
		code, _, errOut := runCLI(append([]string{"bench", "withdraw"}, tc.args...)...)
		oneLineErr(t, code, errOut, tc.want)
	}
}
