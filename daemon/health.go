package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths on the metrics listener (listen.metrics).
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// Readiness thresholds.
const (
	// maxReadyLag is how many committed raft entries a ready node may not
	// have applied yet.
	maxReadyLag = 64
	// readyCheckTimeout bounds each readiness check (the chain calls).
	readyCheckTimeout = 2 * time.Second
)

// Readiness is /readyz's answer: Ready when every check passed; Checks
// maps each check's name to "ok" or why it is not ready.
type Readiness struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// Ready runs the readiness checks (docs/node.md#operability): the node is
// not draining; its ledger knows a leader, has applied what it knows
// committed (within maxReadyLag entries) and is not halted; its HSM token
// is logged in (the KEK answers); each configured chain's node answers
// (the Ethereum node with the configured chain ID); pre-params are ready.
func (n *Node) Ready(ctx context.Context) Readiness {
	out := Readiness{Ready: true, Checks: map[string]string{}}
	set := func(name string, err error) {
		if err != nil {
			out.Ready = false
			out.Checks[name] = err.Error()
			return
		}
		out.Checks[name] = "ok"
	}
	if n.draining() {
		set("node", errors.New("draining: shutting down"))
	} else {
		set("node", nil)
	}
	set("ledger", n.ledgerReady())
	err := n.hsmReady()
	if err != nil {
		n.metrics.hsmError(hsmProbe)
	}
	set("hsm", err)
	if n.cfg.Chains.ETH != nil {
		set("chain.eth", n.ethReady(ctx))
	}
	if n.cfg.Chains.BTC != nil {
		set("chain.btc", n.btcReady(ctx))
	}
	if n.pool == nil || n.pool.Len() == 0 {
		set("preparams", errors.New("no tss pre-params generated yet (about 30 s each after start)"))
	} else {
		set("preparams", nil)
	}
	return out
}

func (n *Node) ledgerReady() error {
	s := n.store
	if err := s.Halted(); err != nil {
		return fmt.Errorf("halted: %w", err)
	}
	if id, _ := s.Leader(); id == "" {
		return errors.New("no leader known")
	}
	stats := s.RaftStats()
	commit, _ := strconv.ParseUint(stats["commit_index"], 10, 64)
	applied := s.AppliedIndex()
	if commit > applied+maxReadyLag {
		return fmt.Errorf("catching up: applied index %d, commit index %d", applied, commit)
	}
	return nil
}

func (n *Node) hsmReady() error {
	a, err := n.kek.Attributes()
	if err != nil {
		return fmt.Errorf("the KEK does not answer: %w", err)
	}
	if !a.Safe() {
		return errors.New("the KEK's attributes are not safe")
	}
	return nil
}

func (n *Node) ethReady(ctx context.Context) error {
	if n.eth == nil {
		return errors.New("no Ethereum node")
	}
	ctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
	defer cancel()
	id, err := n.eth.ChainID(ctx)
	if err != nil {
		return fmt.Errorf("the Ethereum node does not answer: %w", err)
	}
	if want := n.cfg.Chains.ETH.ChainID; !id.IsInt64() || id.Int64() != want {
		return fmt.Errorf("the Ethereum node is on chain %s, the config says %d", id, want)
	}
	return nil
}

func (n *Node) btcReady(ctx context.Context) error {
	if n.btc == nil {
		return errors.New("no Bitcoin node")
	}
	ctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
	defer cancel()
	if _, err := n.btc.BlockCount(ctx); err != nil {
		return fmt.Errorf("btcd does not answer: %w", err)
	}
	return nil
}

// serveMetrics serves /metrics, /healthz and /readyz on listen.metrics
// (plain HTTP: bind it to loopback or an internal interface); nothing when
// it is empty.
func (n *Node) serveMetrics() error {
	if n.cfg.Listen.Metrics == "" {
		return nil
	}
	n.metrics.reg.MustRegister(newStateCollector(n))
	mux := http.NewServeMux()
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{
		ErrorLog: promLog{n}, Registry: n.metrics.reg, Timeout: 10 * time.Second}))
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		writeHealth(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET "+PathReadyz, func(w http.ResponseWriter, r *http.Request) {
		rd := n.Ready(r.Context())
		status := http.StatusOK
		if !rd.Ready {
			status = http.StatusServiceUnavailable
		}
		writeHealth(w, status, rd)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	ln, err := net.Listen("tcp", n.cfg.Listen.Metrics)
	if err != nil {
		return err
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics listener stopped", "err", err)
		}
	}()
	n.onClose(func() error { return srv.Close() })
	if !loopback(n.cfg.Listen.Metrics) {
		n.log.Warn("metrics: plain HTTP without authentication on a non-loopback address: keep it on an internal network",
			"addr", n.cfg.Listen.Metrics)
	}
	return nil
}

func writeHealth(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// promLog is promhttp's error log: the node's logger.
type promLog struct{ n *Node }

func (l promLog) Println(v ...any) { l.n.log.Warn("metrics", "err", fmt.Sprint(v...)) }

// lineLog is an io.Writer for a library that logs text lines
// (hashicorp/raft's hclog: "TIME [LEVEL]  raft: message"): each line
// becomes one record of the node's logger at the line's level, so it is
// JSON like the rest.
type lineLog struct{ log *slog.Logger }

func (l lineLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(p), "\n") {
		level, msg := slog.LevelWarn, strings.TrimSpace(line)
		if i := strings.Index(msg, " ["); i > 0 {
			if j := strings.Index(msg[i:], "] "); j > 0 {
				switch msg[i+2 : i+j] {
				case "ERROR":
					level = slog.LevelError
				case "INFO":
					level = slog.LevelInfo
				case "DEBUG", "TRACE":
					level = slog.LevelDebug
				}
				msg = strings.TrimSpace(msg[i+j+2:])
			}
		}
		if msg != "" {
			l.log.Log(context.Background(), level, msg)
		}
	}
	return len(p), nil
}
