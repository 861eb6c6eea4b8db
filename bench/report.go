package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets of issue #14.
const (
	TargetLatencyRatio    = 1.3  // p50 ≤ 1.3× plain single-session latency
	TargetThroughputRatio = 0.8  // withdrawals/s at 4 ≥ 0.8× plain signatures/s at 4
	TargetCreatesPerSec   = 1000 // creates/s at concurrency 16
	TargetCreateP99MS     = 25   // with p99 ≤ 25 ms
)

// Machine describes where a run was measured.
type Machine struct {
	CPUs     int    `json:"cpus"`
	Model    string `json:"cpu_model"`
	LoadAvg  string `json:"loadavg_at_start"`
	Go       string `json:"go"`
	Date     string `json:"date"`
	Hostname string `json:"hostname,omitempty"`
}

// ThisMachine reads the CPU count and model, the load average and the
// date.
func ThisMachine(now time.Time) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Date: now.UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// Ratios are the run's figures against the targets (0 when a side was
// not measured).
type Ratios struct {
	// LatencyRatio = withdrawal p50 / plain single-session p50.
	// (withdrawals one at a time when measured: LatencyConcurrency).
	LatencyRatio       float64 `json:"p50_over_plain_single"`
	LatencyConcurrency int     `json:"p50_at_concurrency"`
	LatencyMet         bool    `json:"p50_target_met"`
	// ThroughputRatio = withdrawals/s / plain signatures/s at the
	// baseline's concurrency; the target is defined at concurrency 4 on
	// both sides (ThroughputComparable).
	ThroughputRatio      float64 `json:"withdrawals_over_plain_signatures"`
	ThroughputMet        bool    `json:"throughput_target_met"`
	ThroughputComparable bool    `json:"throughput_comparable"`
	CreateMet            bool    `json:"create_target_met"`
}

// Report is everything one `custody bench withdraw` measured.
type Report struct {
	Machine Machine `json:"machine"`
	// Devnet is the devnet's directory ("" for a temporary one) and
	// Started whether this run started it.
	Devnet  string `json:"devnet,omitempty"`
	Started bool   `json:"started_devnet"`
	Nodes   int    `json:"nodes"`
	// IdleWaitSeconds is how long the run waited for the nodes to go
	// idle before measuring; Idle whether they did.
	IdleWaitSeconds float64 `json:"idle_wait_seconds"`
	Idle            bool    `json:"idle"`
	// Sequential are withdrawals one at a time (the latency ratio's);
	// Withdraw the run at the asked concurrency.
	Sequential *WithdrawResult `json:"sequential,omitempty"`
	Withdraw   WithdrawResult  `json:"withdraw"`
	Create     *CreateResult   `json:"create,omitempty"`
	Plain      *PlainResult    `json:"plain_tss,omitempty"`
	Ratios     Ratios          `json:"ratios"`
	Notes      []string        `json:"notes,omitempty"`
}

// Compute fills the ratios.
func (r *Report) Compute() {
	lat := r.Withdraw
	if r.Sequential != nil && r.Sequential.ApprovalToSigned.N > 0 {
		lat = *r.Sequential
	}
	if p := r.Plain; p != nil && p.Single.P50 > 0 && lat.ApprovalToSigned.N > 0 {
		r.Ratios.LatencyRatio = lat.ApprovalToSigned.P50 / p.Single.P50
		r.Ratios.LatencyConcurrency = lat.Concurrency
		r.Ratios.LatencyMet = r.Ratios.LatencyRatio <= TargetLatencyRatio
	}
	if p := r.Plain; p != nil && p.PerSecond > 0 && r.Withdraw.PerSecond > 0 {
		r.Ratios.ThroughputRatio = r.Withdraw.PerSecond / p.PerSecond
		r.Ratios.ThroughputComparable = r.Withdraw.Concurrency == 4 && p.Concurrency == 4
		r.Ratios.ThroughputMet = r.Ratios.ThroughputComparable && r.Ratios.ThroughputRatio >= TargetThroughputRatio
	}
	if c := r.Create; c != nil {
		r.Ratios.CreateMet = c.Concurrency == 16 && c.Failed == 0 && c.PerSecond >= TargetCreatesPerSec && c.Latency.P99 <= TargetCreateP99MS
	}
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// Text writes the report for people.
func (r *Report) Text(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, load %s at start, %s, %s\n", m.CPUs, m.Model, m.LoadAvg, m.Go, m.Date)
	where := r.Devnet
	if r.Started {
		where = "a devnet started by this run"
	}
	fmt.Fprintf(w, "cluster: %d nodes, %s; nodes idle before measuring: %v (waited %.0f s)\n\n", r.Nodes, where, r.Idle, r.IdleWaitSeconds)
	wd := r.Withdraw
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "withdrawals: %d ETH withdrawals of %s to %s, %d in flight; approvals by %s (signed in-process with their device keys, sent to the operator API); latency read every %.0f ms\n",
		wd.Count, wd.Amount, wd.To, wd.Concurrency, strings.Join(wd.Approvers, " then "), wd.PollMS)
	fmt.Fprintln(tw, "measure\tn\tp50 ms\tp99 ms\tmax ms\tmean ms\t")
	row := func(name string, s Stats) {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", name, s.N, s.P50, s.P99, s.Max, s.Mean)
	}
	if s := r.Sequential; s != nil {
		row("one at a time: final approval → signed", s.ApprovalToSigned)
	}
	row(fmt.Sprintf("%d in flight: final approval → signed", wd.Concurrency), wd.ApprovalToSigned)
	row("create (POST)", wd.Create)
	row("approval (POST)", wd.Approve)
	if p := r.Plain; p != nil {
		row("plain tss-lib 2-of-3 session", p.Single)
	}
	if c := r.Create; c != nil {
		row(fmt.Sprintf("create at concurrency %d", c.Concurrency), c.Latency)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if s := r.Sequential; s != nil {
		fmt.Fprintf(w, "withdrawals one at a time: %d signed, %d failed\n", s.Signed, s.Failed)
		for _, e := range s.Errors {
			fmt.Fprintf(w, "  error: %s\n", e)
		}
	}
	fmt.Fprintf(w, "withdrawals %d in flight: %d signed, %d failed in %.1f s: %.2f withdrawals/s\n", wd.Concurrency, wd.Signed, wd.Failed, wd.Seconds, wd.PerSecond)
	for _, e := range wd.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
	if c := r.Create; c != nil {
		fmt.Fprintf(w, "creates: %d of %d answered (%s) in %.1f s: %.1f requests/s, p99 %.1f ms (target ≥ %d/s, p99 ≤ %d ms: %s); sent to %s\n",
			c.Created, c.Count, statuses(c.Statuses), c.Seconds, c.PerSecond, c.Latency.P99, TargetCreatesPerSec, TargetCreateP99MS, met(r.Ratios.CreateMet), c.Spread)
		for _, e := range c.Errors {
			fmt.Fprintf(w, "  error: %s\n", e)
		}
	}
	if p := r.Plain; p != nil {
		fmt.Fprintf(w, "plain tss-lib: pre-params for 3 parties %.1f s (fresh, generated here), keygen %.1f s; %d single sessions p50 %.0f ms; %d sessions at concurrency %d: %.2f signatures/s\n",
			p.PreParamsSeconds, p.KeygenSeconds, p.Single.N, p.Single.P50, p.Count, p.Concurrency, p.PerSecond)
		fmt.Fprintf(w, "ratio withdrawal p50 (%d in flight) / plain single-session p50: %.2f (target ≤ %.1f: %s)\n", r.Ratios.LatencyConcurrency, r.Ratios.LatencyRatio, TargetLatencyRatio, met(r.Ratios.LatencyMet))
		note := ""
		if !r.Ratios.ThroughputComparable {
			note = fmt.Sprintf(" (the target compares concurrency 4 with 4; this run had %d and %d)", wd.Concurrency, p.Concurrency)
		}
		fmt.Fprintf(w, "ratio withdrawals/s / plain signatures/s: %.2f (target ≥ %.1f: %s)%s\n", r.Ratios.ThroughputRatio, TargetThroughputRatio, met(r.Ratios.ThroughputMet), note)
	} else {
		fmt.Fprintln(w, "plain tss-lib baseline skipped (--skip-baseline): no ratios")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func statuses(m map[string]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
