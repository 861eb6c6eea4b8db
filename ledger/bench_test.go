package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	metrics "github.com/armon/go-metrics"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	. "github.com/custody-dev/custody/ledger"
)

// commitRow is one sub-benchmark's result for the side-by-side table.
type commitRow struct {
	proposers int
	store     LogStore
	n         int
	p50, p99  float64    // ms
	rate      float64    // commits/s
	fsync     [2]float64 // the disk's fsync p50, p99 (ms), measured just before
	trace     commitTrace
}

// commitTrace is where a commit's time goes, from raft's own timers
// (armon/go-metrics, collected in memory for the run): means in ms.
type commitTrace struct {
	leaderWrite   float64 // raft.leader.dispatchLog: the leader's log write (fsync) before replication starts
	perWrite      float64 // entries per leader log write (the batch one fsync covers)
	followerWrite float64 // raft.rpc.appendEntries.storeLogs: a follower's log write
	replicate     float64 // raft.replication.appendEntries.rpc: leader→follower round trip incl. the follower's write
	perRPC        float64 // entries per AppendEntries RPC
	commit        float64 // raft.commitTime: leader dispatch → majority has it
	apply         float64 // raft.fsm.applyBatch per entry: FSM time per entry (each node)
	perApply      float64 // entries per FSM batch
}

// BenchmarkCommit measures request.create commits (policy evaluation and all)
// on a 3-node cluster over mutually authenticated TLS on loopback with fsync
// on, for both log stores in the same run on the same disk, interleaved
// (wal, boltdb, wal, ...) so background load hits both alike. Reported per
// sub-benchmark: commit latency p50/p99 in ms, commits/s, and the raft
// timers that show where the time goes; at the end a side-by-side table
// with, per row, the disk's own fsync latency measured just before it (the
// floor: a commit waits for the leader's write, then a follower's, in
// sequence).
func BenchmarkCommit(b *testing.B) {
	var rows []commitRow
	for _, proposers := range []int{1, 16, 64} {
		for _, store := range []LogStore{LogStoreWAL, LogStoreBoltDB} {
			b.Run(fmt.Sprintf("proposers=%d/store=%s", proposers, store), func(b *testing.B) {
				r := benchCommit(b, store, proposers)
				b.ReportMetric(r.p50, "p50-ms")
				b.ReportMetric(r.p99, "p99-ms")
				b.ReportMetric(r.rate, "commits/s")
				b.ReportMetric(r.trace.leaderWrite, "leader-write-ms")
				b.ReportMetric(r.trace.followerWrite, "follower-write-ms")
				b.ReportMetric(r.trace.perWrite, "entries/write")
				// Go runs each sub-benchmark first with b.N = 1; keep the
				// last (full) run of each.
				rows = slices.DeleteFunc(rows, func(o commitRow) bool { return o.store == store && o.proposers == proposers })
				rows = append(rows, r)
			})
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nledger commits: 3 nodes in one process, mTLS on loopback, fsync on (data dirs in %s)\n", os.TempDir())
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "proposers\tstore\tcommits\tp50 ms\tp99 ms\tcommits/s\tdisk fsync p50/p99 ms\t"+
		"leader write ms\tentries/write\tfollower write ms\treplicate RTT ms\tentries/RPC\tcommit ms\tapply ms/entry\tentries/apply\t")
	for _, r := range rows {
		t := r.trace
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.1f\t%.1f\t%.0f\t%.2f/%.2f\t%.2f\t%.1f\t%.2f\t%.2f\t%.1f\t%.2f\t%.3f\t%.1f\t\n",
			r.proposers, r.store, r.n, r.p50, r.p99, r.rate, r.fsync[0], r.fsync[1],
			t.leaderWrite, t.perWrite, t.followerWrite, t.replicate, t.perRPC, t.commit, t.apply, t.perApply)
	}
	_ = tw.Flush()
	fmt.Print(sb.String())
}

func benchCommit(b *testing.B, store LogStore, proposers int) commitRow {
	fsync := measureFsync(b, 200)
	sink := metrics.NewInmemSink(time.Hour, time.Hour)
	conf := metrics.DefaultConfig("custody")
	conf.EnableHostname, conf.EnableRuntimeMetrics = false, false
	if _, err := metrics.NewGlobal(conf, sink); err != nil {
		b.Fatal(err)
	}
	defer func() { _, _ = metrics.NewGlobal(conf, &metrics.BlackholeSink{}) }()

	c := newCluster(b, 3, func(cfg *Config) {
		cfg.LogStore = store
		// Production settings for the measurement, not the loaded-CI
		// timing and small test segments.
		cfg.WALSegmentSize = 0
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
		benchTuning(b, cfg)
	})
	seed(c)
	var leader atomic.Pointer[Store]
	leader.Store(c.WaitLeader(nil).Store)
	var next atomic.Uint64
	lat := make([][]time.Duration, proposers)
	base := traceCounts(sink)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range proposers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > uint64(b.N) {
					return
				}
				t0 := time.Now()
				create := createCmd(fmt.Sprintf("b-%d", i), i) // one command for every retry
				for {
					_, _, err := leader.Load().CreateRequest(context.Background(), "backend", create)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrTimeout) {
						b.Error(err)
						return
					}
					// A leader change on the loaded machine: the latency
					// sample includes the failover, and the retry uses the
					// same request ID.
					leader.Store(c.WaitLeader(nil).Store)
				}
				lat[p] = append(lat[p], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := commitRow{proposers: proposers, store: store, n: len(all), fsync: fsync}
	if len(all) == 0 {
		return r
	}
	q := func(f float64) float64 { return float64(all[int(f*float64(len(all)-1))]) / 1e6 }
	r.p50, r.p99 = q(0.50), q(0.99)
	r.rate = float64(len(all)) / elapsed.Seconds()
	r.trace = traceFrom(sink, base, len(all))
	return r
}

// traceCounts sums every timer's and counter's count and total over the
// sink's intervals, by metric name (labels folded); the difference of two
// calls is what happened in between (setup, genesis and joins also write).
func traceCounts(sink *metrics.InmemSink) map[string][2]float64 {
	out := map[string][2]float64{}
	add := func(vs map[string]metrics.SampledValue) {
		for _, v := range vs {
			c := out[v.Name]
			out[v.Name] = [2]float64{c[0] + float64(v.Count), c[1] + v.Sum}
		}
	}
	for _, im := range sink.Data() {
		im.RLock()
		add(im.Samples)
		add(im.Counters)
		im.RUnlock()
	}
	return out
}

func traceFrom(sink *metrics.InmemSink, base map[string][2]float64, commits int) commitTrace {
	now := traceCounts(sink)
	delta := func(name string) (count, sum float64) {
		n, b := now["custody."+name], base["custody."+name]
		return n[0] - b[0], n[1] - b[1]
	}
	mean := func(name string) float64 {
		c, s := delta(name)
		if c == 0 {
			return math.NaN()
		}
		return s / c
	}
	writes, _ := delta("raft.leader.dispatchLog")
	rpcs, _ := delta("raft.replication.appendEntries.rpc")
	_, logs := delta("raft.replication.appendEntries.logs")
	t := commitTrace{
		leaderWrite:   mean("raft.leader.dispatchLog"),
		followerWrite: mean("raft.rpc.appendEntries.storeLogs"),
		replicate:     mean("raft.replication.appendEntries.rpc"),
		commit:        mean("raft.commitTime"),
		perWrite:      math.NaN(),
		perRPC:        math.NaN(),
	}
	if writes > 0 {
		t.perWrite = float64(commits) / writes
	}
	if rpcs > 0 {
		t.perRPC = logs / rpcs
	}
	batches, applyMs := delta("raft.fsm.applyBatch")
	_, applied := delta("raft.fsm.applyBatchNum")
	t.apply, t.perApply = math.NaN(), math.NaN()
	if applied > 0 {
		t.apply, t.perApply = applyMs/applied, applied/batches
	}
	return t
}

// measureFsync appends 4 KiB and fsyncs, n times, in a file on the disk the
// benchmark's data dirs live on; it returns p50 and p99 in ms.
func measureFsync(b *testing.B, n int) [2]float64 {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var d []time.Duration
	for range n {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(t0))
	}
	slices.Sort(d)
	return [2]float64{float64(d[n/2]) / 1e6, float64(d[n*99/100]) / 1e6}
}

// benchTuning applies LEDGER_BENCH_TUNE, a comma-separated list of
// MaxAppendEntries=N and ReplicationInFlight=N, so a tuning experiment needs
// no code change (`LEDGER_BENCH_TUNE=ReplicationInFlight=1 make bench`).
func benchTuning(b *testing.B, cfg *Config) {
	for kv := range strings.SplitSeq(os.Getenv("LEDGER_BENCH_TUNE"), ",") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			b.Fatalf("LEDGER_BENCH_TUNE %q: %v", kv, err)
		case k == "MaxAppendEntries":
			cfg.MaxAppendEntries = n
		case k == "ReplicationInFlight":
			cfg.ReplicationInFlight = n
		default:
			b.Fatalf("LEDGER_BENCH_TUNE: unknown setting %q", k)
		}
	}
}

// BenchmarkSnapshot100k measures a snapshot of a ledger holding 100,000
// withdrawal requests (built by applying 100,000 request.create entries to
// the FSM; LEDGER_BENCH_REQUESTS changes the count): its size and the audit
// chain's share of it, the time the FSM holds its lock for it (applies wait
// that long), the time to encode and write it to raft's file snapshot store
// (beside Apply), and the time to restore it (read, CRC, decode, verify the
// chain).
func BenchmarkSnapshot100k(b *testing.B) {
	n := 100_000
	if v := os.Getenv("LEDGER_BENCH_REQUESTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	f := NewFSM(nil, nil)
	var idx uint64
	t0 := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	apply := func(actor string, at time.Time, cmd Command) {
		data, err := EncodeCommand(actor, at, cmd)
		if err != nil {
			b.Fatal(err)
		}
		idx++
		if _, _, err := ApplyOutcome(f.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data})); err != nil {
			b.Fatal(err)
		}
	}
	apply("ceremony", t0, genesisCmd())
	for _, cmd := range testWalletCmds(b, t0) {
		apply("keygen", t0, cmd)
	}
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		c := createCmd(fmt.Sprintf("r-%06d", i), uint64(i))
		c.ExpiresAt = t0.Add(24 * time.Hour)
		apply("backend", at, c)
	}
	var auditBytes int
	_ = f.Read(func(st *State) error {
		ab, err := json.Marshal(st.Audit)
		auditBytes = len(ab)
		return err
	})

	store, err := raft.NewFileSnapshotStoreWithLogger(b.TempDir(), 1, hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	var lock, persist, restore time.Duration
	var size int64
	b.ResetTimer()
	for range b.N {
		t1 := time.Now()
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		lock += time.Since(t1)
		t2 := time.Now()
		sink, err := store.Create(raft.SnapshotVersionMax, idx, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.Persist(sink); err != nil {
			b.Fatal(err)
		}
		persist += time.Since(t2)
		snap.Release()

		t3 := time.Now()
		meta, rc, err := store.Open(sink.ID())
		if err != nil {
			b.Fatal(err)
		}
		size = meta.Size
		g := NewFSM(nil, nil)
		if err := g.Restore(rc); err != nil {
			b.Fatal(err)
		}
		restore += time.Since(t3)
	}
	per := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
	b.ReportMetric(float64(size)/1e6, "snapshot-MB")
	b.ReportMetric(float64(auditBytes)/1e6, "audit-MB")
	b.ReportMetric(per(lock), "lock-ms")
	b.ReportMetric(per(persist), "persist-ms")
	b.ReportMetric(per(restore), "restore-ms")
}
