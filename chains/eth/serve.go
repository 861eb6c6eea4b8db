package eth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/rpc"
)

// ServeConfig says where and how a simulated chain is served.
type ServeConfig struct {
	// Addr is the loopback host:port to listen on ("" means
	// 127.0.0.1:0, a free port). Other addresses are refused: the
	// simulated chain has no authentication and is for one machine.
	Addr string
	// CommitOnSend mines a block right after each accepted
	// eth_sendRawTransaction, before answering: a client that broadcast a
	// transaction finds it mined.
	CommitOnSend bool
	// BlockPeriod, if positive, mines a block every period while
	// transactions are pending (transactions sent through the in-process
	// client, or when CommitOnSend is off).
	BlockPeriod time.Duration
}

// Served is a simulated chain served over HTTP JSON-RPC on a loopback
// address, so that other processes reach it as they would a real node
// (`chains.eth.rpc: http://127.0.0.1:PORT`, chain ID 1337). The devnet
// and the process tests run one.
type Served struct {
	*Simulated
	rpc    *rpc.Client
	ipcDir string
	ln     net.Listener
	srv    *http.Server
	cfg    ServeConfig
	mine   sync.Mutex // one Commit at a time
	stop   chan struct{}
	loopWG sync.WaitGroup
	once   sync.Once
}

// maxServeBody bounds one JSON-RPC request body.
const maxServeBody = 8 << 20

// NewServed starts a simulated chain with the given starting balances and
// serves it over HTTP JSON-RPC: every call is passed to the chain node's
// own RPC server (reached over a private IPC socket; all of its
// namespaces, errors with their code and data). Close stops both.
func NewServed(alloc types.GenesisAlloc, cfg ServeConfig) (_ *Served, err error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("eth: serve: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("eth: serve: %s is not a loopback address: the simulated chain is served on this machine only", cfg.Addr)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("eth: serve: %w", err)
	}
	sv := &Served{ln: ln, cfg: cfg, stop: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = ln.Close()
			if sv.Simulated != nil {
				_ = sv.Simulated.Close()
			}
			if sv.ipcDir != "" {
				_ = os.RemoveAll(sv.ipcDir)
			}
		}
	}()
	// A short private directory: a unix socket path has a length limit.
	if sv.ipcDir, err = os.MkdirTemp("", "custody-eth-"); err != nil {
		return nil, fmt.Errorf("eth: serve: %w", err)
	}
	ipc := filepath.Join(sv.ipcDir, "geth.ipc")
	b := simulated.NewBackend(alloc, func(nc *node.Config, _ *ethconfig.Config) { nc.IPCPath = ipc })
	sv.Simulated = &Simulated{Client: NewClient(b.Client()), backend: b}
	if sv.rpc, err = rpc.Dial(ipc); err != nil {
		return nil, fmt.Errorf("eth: serve: attach to the chain: %w", err)
	}
	sv.srv = &http.Server{Handler: sv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = sv.srv.Serve(ln) }()
	if cfg.BlockPeriod > 0 {
		sv.loopWG.Add(1)
		go sv.mineLoop()
	}
	return sv, nil
}

// URL is the chain's JSON-RPC endpoint, http://127.0.0.1:PORT.
func (sv *Served) URL() string { return "http://" + sv.ln.Addr().String() }

// Commit mines the pending transactions into a block (serialised with
// the auto-commit).
func (sv *Served) Commit() common.Hash {
	sv.mine.Lock()
	defer sv.mine.Unlock()
	return sv.Simulated.Commit()
}

// Close stops serving, the block loop and the chain.
func (sv *Served) Close() error {
	var err error
	sv.once.Do(func() {
		close(sv.stop)
		sv.loopWG.Wait()
		err = sv.srv.Close()
		sv.rpc.Close()
		err = errors.Join(err, sv.Simulated.Close(), os.RemoveAll(sv.ipcDir))
	})
	return err
}

func (sv *Served) mineLoop() {
	defer sv.loopWG.Done()
	t := time.NewTicker(sv.cfg.BlockPeriod)
	defer t.Stop()
	for {
		select {
		case <-sv.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), sv.cfg.BlockPeriod+time.Second)
		n, err := sv.backend.Client().PendingTransactionCount(ctx)
		cancel()
		if err == nil && n > 0 {
			_ = sv.Commit()
		}
	}
}

// jsonrpcCall is one JSON-RPC 2.0 request.
type jsonrpcCall struct {
	Version string            `json:"jsonrpc"`
	ID      json.RawMessage   `json:"id,omitempty"`
	Method  string            `json:"method"`
	Params  []json.RawMessage `json:"params,omitempty"`
}

type jsonrpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type jsonrpcAnswer struct {
	Version string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *jsonrpcError   `json:"error,omitempty"`
}

// ServeHTTP answers one JSON-RPC request or batch (POST).
func (sv *Served) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "JSON-RPC over POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxServeBody))
	if err != nil {
		http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		return
	}
	body = bytes.TrimSpace(body)
	var out any
	if len(body) > 0 && body[0] == '[' {
		var calls []jsonrpcCall
		if err := json.Unmarshal(body, &calls); err != nil {
			out = parseError(err)
		} else {
			answers := make([]jsonrpcAnswer, len(calls))
			for i, c := range calls {
				answers[i] = sv.call(r.Context(), c)
			}
			out = answers
		}
	} else {
		var c jsonrpcCall
		if err := json.Unmarshal(body, &c); err != nil {
			out = parseError(err)
		} else {
			out = sv.call(r.Context(), c)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func parseError(err error) jsonrpcAnswer {
	return jsonrpcAnswer{Version: "2.0", ID: json.RawMessage("null"), Error: &jsonrpcError{Code: -32700, Message: "parse error: " + err.Error()}}
}

// call passes c to the chain's RPC server and, with CommitOnSend, mines
// an accepted raw transaction before answering.
func (sv *Served) call(ctx context.Context, c jsonrpcCall) jsonrpcAnswer {
	ans := jsonrpcAnswer{Version: "2.0", ID: c.ID}
	if ans.ID == nil {
		ans.ID = json.RawMessage("null")
	}
	args := make([]any, len(c.Params))
	for i, p := range c.Params {
		args[i] = p
	}
	var res json.RawMessage
	err := sv.rpc.CallContext(ctx, &res, c.Method, args...)
	if err != nil {
		e := &jsonrpcError{Code: -32000, Message: err.Error()}
		var ce rpc.Error
		if errors.As(err, &ce) {
			e.Code = ce.ErrorCode()
		}
		var de rpc.DataError
		if errors.As(err, &de) {
			e.Data = de.ErrorData()
		}
		ans.Error = e
		return ans
	}
	if len(res) == 0 {
		res = json.RawMessage("null")
	}
	ans.Result = res
	if sv.cfg.CommitOnSend && c.Method == "eth_sendRawTransaction" {
		_ = sv.Commit()
	}
	return ans
}
