package rest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/requestid"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// Paths of the backend API, version 1.
const (
	PathWithdrawals = "/v1/withdrawals"
	PathWallets     = "/v1/wallets"
)

// MaxBody bounds a request body; a larger one is refused with 413.
const MaxBody = 1 << 20

// DefaultExpiry is how long a withdrawal created without expires_at stays
// open for approvals, from the node's clock.
const DefaultExpiry = 24 * time.Hour

// Withdrawal is a create as the API hands it to the Service: the
// backend's request with the amount in base units of the asset (parsed
// against the asset's decimals) and the principal's signed initiation,
// unchanged.
type Withdrawal struct {
	ID     string
	Wallet string
	Asset  string
	// To is the destination in its canonical form (EIP-55, or the Bitcoin
	// address as its network encodes it).
	To         string
	Amount     amount.Amount
	ExpiresAt  time.Time
	Initiation quorum.Approval
	// Note is the backend's note for the operators (policy.ValidNote),
	// part of the signed intent.
	Note string
}

// Service is what the API needs of its node; the daemon implements it.
type Service interface {
	// CreateWithdrawal builds and records w on the leader (this node's
	// orchestrator when it leads, else forwarded over the node RPC) on
	// behalf of principal. A policy denial is a recorded request, not an
	// error; an ID already in the ledger comes back as stored with
	// existing true. Errors carry the ledger's sentinels
	// (ledger.ErrNotLeader, ErrTimeout, ErrInitiation, ErrConflict, ...),
	// ErrRefused for a request the leader cannot build, ErrUnavailable
	// when no leader answers.
	CreateWithdrawal(ctx context.Context, principal string, w Withdrawal) (r *ledger.Request, existing bool, err error)
	// Read runs fn on this node's replica once it has applied index
	// atLeast (0: as it is now). fn must not keep or modify the state.
	Read(ctx context.Context, atLeast uint64, fn func(*ledger.State) error) error
	// ReadIndex is the leader's read index: reading at it sees every
	// write acknowledged before (a not-found is confirmed there).
	ReadIndex(ctx context.Context) (uint64, error)
	// WalletKey is the public key of a wallet whose key the ledger does
	// not record (a legacy wallet.set wallet): this node's own share's;
	// nil when it holds none.
	WalletKey(ctx context.Context, walletID string) []byte
	// Balances reads the balances at a wallet's address from this node's
	// chain adapter, each asset it knows on the wallet's chain, within
	// ctx's deadline; what it cannot read (no adapter for the chain or
	// network, an RPC error) it leaves out. Only the wallets endpoints
	// call it.
	Balances(ctx context.Context, w *ledger.Wallet, address string) []Balance
}

// Errors a Service returns that are not the ledger's.
var (
	// ErrRefused: the leader could not build the withdrawal (not enough
	// funds, a destination its chain refuses); nothing was recorded.
	ErrRefused = errors.New("api: the leader refused to build the withdrawal")
	// ErrUnavailable: no leader answered; nothing is known to have
	// happened.
	ErrUnavailable = errors.New("api: no leader available")
)

// Config builds the handler.
type Config struct {
	// CA is the cluster CA: client certificates must chain to it.
	CA *x509.CertPool
	// Service is the node. Required.
	Service Service
	// Operators commits operators' signed commands (the operator API's
	// writes); nil answers them 501 not_configured.
	Operators OperatorService
	// Genesis is the genesis file the node verified against its pin: the
	// cold export bundles carry it. nil answers cold export 501
	// not_configured.
	Genesis []byte
	// Now is the node's clock (default expiries); nil means time.Now.
	Now func() time.Time
	// Logger receives one line per request (never a body), with its
	// request ID when the logger is wrapped by requestid.Handler; nil
	// discards.
	Logger *slog.Logger
	// Timeout bounds a request's work (default 30 s).
	Timeout time.Duration
	// RetryAfter is the Retry-After of a 503 (default 1 s).
	RetryAfter time.Duration
	// RateLimit bounds each principal's requests (defaults:
	// DefaultRatePerMinute, DefaultRateBurst).
	RateLimit RateLimit
	// BalanceTimeout bounds the balance reads of one wallets request
	// (default DefaultBalanceTimeout); a balance not read by then is
	// absent.
	BalanceTimeout time.Duration
	// ExportAttestTimeout bounds how long a cold export waits for the node
	// set's attestations before it answers 503 (default
	// DefaultExportAttestTimeout; within Timeout).
	ExportAttestTimeout time.Duration
}

// DefaultExportAttestTimeout is Config.ExportAttestTimeout's default.
const DefaultExportAttestTimeout = 20 * time.Second

type server struct {
	cfg     Config
	limiter *limiter
}

// NewHandler returns the backend API's handler. It expects to be served
// with [ServerTLS] and refuses a request without a verified client
// certificate of role backend.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.CA == nil || cfg.Service == nil {
		return nil, errors.New("api: the handler needs the cluster CA and a service")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.BalanceTimeout <= 0 {
		cfg.BalanceTimeout = DefaultBalanceTimeout
	}
	s := &server{cfg: cfg, limiter: newLimiter(cfg.RateLimit, cfg.Now)}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.Pattern(), s.endpoint(rt.Roles, func(w http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error) {
			return rt.handle(s, w, r, peer, body)
		}))
	}
	// Any other path or method: 404 or 405 to an authenticated principal
	// of any role.
	mux.Handle("/", s.endpoint(nil, func(w http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
		if allowed(r.URL.Path) != "" {
			return 0, nil, apiErr(http.StatusMethodNotAllowed, CodeMethod, "", "api: %s does not answer %s", r.URL.Path, r.Method)
		}
		return 0, nil, apiErr(http.StatusNotFound, CodeNotFound, "", "api: no such endpoint %s", r.URL.Path)
	}))
	return mux, nil
}

// listenerRoles are the roles the listener admits: backend and operator
// (the operator API shares the listener); each endpoint checks its role.
var listenerRoles = []pki.Role{pki.RoleBackend, pki.RoleOperator}

// verifyPeer is pki.VerifyPeerAt with listenerRoles.
func verifyPeer(cs tls.ConnectionState, ca *x509.CertPool, now time.Time) (pki.Peer, error) {
	return pki.VerifyPeerAt(cs, ca, now, listenerRoles...)
}

// ServerTLS is the listener's TLS: TLS 1.3, the node's certificate, and a
// client certificate of the cluster CA with the role backend or operator,
// valid by now (the node's clock; nil: time.Now), required at the
// handshake (node certificates, other CAs, expired or not yet valid
// certificates and no certificate are refused there).
func ServerTLS(id pki.Identity, now func() time.Time) *tls.Config {
	if now == nil {
		now = time.Now
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// The chain, role and ID are verified in VerifyConnection (pki's
		// one peer check), as pki.Identity.ServerTLS does.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPeer(cs, id.CA, now())
			return err
		},
	}
}

// NewServer returns an http.Server for the API: the handler, ServerTLS,
// [ConnContext] and timeouts. Serve it with srv.ServeTLS(listener, "", "").
func NewServer(id pki.Identity, cfg Config) (*http.Server, error) {
	if err := id.Valid(); err != nil {
		return nil, fmt.Errorf("api: identity: %w", err)
	}
	if cfg.CA == nil {
		cfg.CA = id.CA
	}
	h, err := NewHandler(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		TLSConfig:         ServerTLS(id, cfg.Now),
		ConnContext:       ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}, nil
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (status int, out any, err error)

// endpoint wraps h: the request ID (the client's X-Request-ID when
// well-formed, else a new one; echoed in the answer, carried in the
// context into the node RPC and every log line), the peer, its registry
// entry, its rate limit and its role (roles; nil: any admitted role), the
// body's type and size, the work's timeout, then the one error shape.
func (s *server) endpoint(roles []pki.Role, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := requestid.FromRequest(r)
		w.Header().Set(requestid.Header, rid)
		r = r.WithContext(requestid.With(r.Context(), rid))
		peer, err := s.authenticate(r, roles)
		status, out := 0, any(nil)
		if err == nil {
			var body []byte
			if body, err = s.body(w, r); err == nil {
				ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
				status, out, err = h(w, r.WithContext(ctx), peer, body)
				cancel()
			}
		}
		if err != nil {
			e := toError(err)
			level := slog.LevelWarn
			if e.status >= 500 {
				level = slog.LevelError
			}
			// The log names the cause, never a body.
			s.cfg.Logger.Log(r.Context(), level, "backend api: request refused", "method", r.Method, "path", r.URL.Path,
				"principal", peer.ID, "status", e.status, "code", e.code, "err", err, "ms", time.Since(start).Milliseconds())
			switch e.status {
			case http.StatusServiceUnavailable:
				w.Header().Set("Retry-After", retrySeconds(s.cfg.RetryAfter))
			case http.StatusTooManyRequests:
				w.Header().Set("Retry-After", retrySeconds(e.retryAfter))
			case http.StatusMethodNotAllowed:
				w.Header().Set("Allow", allowed(r.URL.Path))
			}
			writeJSON(w, e.status, errorBody{Error: wireError{Code: e.code, Message: e.message(), Field: e.field}})
			return
		}
		// Reads are polled: they log at debug; writes at info.
		lvl := slog.LevelInfo
		if r.Method == http.MethodGet {
			lvl = slog.LevelDebug
		}
		s.cfg.Logger.Log(r.Context(), lvl, "backend api: request", "method", r.Method, "path", r.URL.Path,
			"principal", peer.ID, "status", status, "ms", time.Since(start).Milliseconds())
		writeJSON(w, status, out)
	})
}

// authenticate checks the TLS peer on every request, an open keep-alive
// connection's included: a certificate of the cluster CA valid by the
// node's clock (the chain verified once per connection while the clock
// stays within its validity, conn.go); its principal an active registry
// entry of this node's replica, of the certificate's kind (a suspended
// principal is refused at its next request); within its rate limit; of
// one of roles.
func (s *server) authenticate(r *http.Request, roles []pki.Role) (pki.Peer, error) {
	if r.TLS == nil {
		return pki.Peer{}, apiErr(http.StatusUnauthorized, CodeUnauthenticated, "", "api: TLS with a client certificate is required")
	}
	p, err := s.verifyRequest(r)
	if err != nil {
		return pki.Peer{}, apiErr(http.StatusUnauthorized, CodeUnauthenticated, "", "api: %v", err)
	}
	if err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error { return activePrincipal(st, p) }); err != nil {
		return p, err
	}
	if ok, wait := s.limiter.take(p.ID); !ok {
		return p, rateLimited(p.String(), wait)
	}
	if roles != nil && !slices.Contains(roles, p.Role) {
		return p, apiErr(http.StatusForbidden, CodeForbidden, "", "api: %s may not use %s %s (role %s required)", p, r.Method, r.URL.Path, roleList(roles))
	}
	return p, nil
}

func roleList(roles []pki.Role) string {
	var out []string
	for _, r := range roles {
		out = append(out, string(r))
	}
	return strings.Join(out, " or ")
}

// body reads a POST's body: application/json, at most MaxBody bytes.
func (s *server) body(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Method != http.MethodPost {
		return nil, nil
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, apiErr(http.StatusUnsupportedMediaType, CodeMediaType, "", "api: the body must be application/json")
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, apiErr(http.StatusRequestEntityTooLarge, CodeTooLarge, "", "api: body larger than %d bytes", MaxBody)
		}
		return nil, apiErr(http.StatusBadRequest, CodeMalformed, "", "api: reading the body: %v", err)
	}
	return b, nil
}
