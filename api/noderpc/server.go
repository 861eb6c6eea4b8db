package noderpc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/custody-dev/custody/api/requestid"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// Store is what the RPC needs of this node's ledger; *ledger.Store
// implements it.
type Store interface {
	// Submit commits cmd as the leader (a *ledger.NotLeaderError on a
	// follower).
	Submit(ctx context.Context, actor string, cmd ledger.Command) (ledger.Outcome, error)
	// ReadIndex is the leader's read index.
	ReadIndex(ctx context.Context) (uint64, error)
	// Leader is the leader as this node knows it.
	Leader() (id pki.NodeID, addr string)
	// ReadLocal reads this node's replica (GET PathRequest, PathWallet).
	ReadLocal(fn func(*ledger.State) error) error
}

// Member is this node's committee member; *member.Member implements it.
type Member interface {
	SignClaimed(ctx context.Context, requestID string, c member.Claim) (*member.Signed, error)
	Keygen(ctx context.Context, walletID string, session tss.SessionID) (*member.KeygenResult, error)
	TestSign(ctx context.Context, walletID string, pubkey []byte, session tss.SessionID, signers []pki.NodeID) ([]byte, error)
}

// ReshareMember is a Member that also reshares wallets; *member.Member
// implements it. A Config.Member without these methods answers
// PathReshare and PathWalletInfo with CodeUnavailable.
type ReshareMember interface {
	Member
	Reshare(ctx context.Context, walletID string, session tss.SessionID, oldSigners []pki.NodeID, oldMembers []tss.Party) (*member.ReshareResult, error)
	WalletInfo(ctx context.Context, walletID string) (tss.WalletInfo, error)
}

// Creator builds and records a backend's withdrawal on the leader
// (POST PathWithdrawals): the daemon's withdraw.Orchestrator by the
// wallet's chain. A policy denial is a recorded request, not an error; a
// request ID already in the ledger comes back as stored with existing
// true; on a follower it answers a *ledger.NotLeaderError. Errors that
// are the caller's (nothing recorded) wrap ErrCreateRefused.
type Creator interface {
	CreateWithdrawal(ctx context.Context, principal string, w Withdrawal) (r *ledger.Request, existing bool, err error)
}

var (
	_ Store         = (*ledger.Store)(nil)
	_ Member        = (*member.Member)(nil)
	_ ReshareMember = (*member.Member)(nil)
)

// Status is what a node reports about itself (GET PathStatus). The daemon
// fills it ([StoreStatus] for the ledger's part, then its own ready flags).
type Status struct {
	NodeID pki.NodeID `json:"node_id"`
	// RaftState is "Leader", "Follower", "Candidate" or "Shutdown".
	RaftState string     `json:"raft_state"`
	Leader    pki.NodeID `json:"leader"`
	// AppliedIndex is raft's applied index, StateIndex the FSM's (see
	// ledger.Store.StateIndex).
	AppliedIndex uint64 `json:"applied_index"`
	StateIndex   uint64 `json:"state_index"`
	// Halted is why the FSM halted ("" when it did not).
	Halted string `json:"halted,omitempty"`
	// Ready are the daemon's readiness flags by component ("ledger",
	// "member", "engine", ...).
	Ready map[string]bool `json:"ready"`
}

// StoreStatus fills the ledger's part of a Status.
func StoreStatus(s *ledger.Store) Status {
	lid, _ := s.Leader()
	st := Status{NodeID: s.ID(), RaftState: s.RaftState().String(), Leader: lid,
		AppliedIndex: s.AppliedIndex(), StateIndex: s.StateIndex(), Ready: map[string]bool{}}
	if err := s.Halted(); err != nil {
		st.Halted = err.Error()
	}
	return st
}

// Default timeouts of the server's work per request.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultSignTimeout = 2 * time.Minute
	// DefaultKeygenTimeout bounds a keygen or a reshare: far slower than
	// a signature (a whole committee's rounds with range proofs).
	DefaultKeygenTimeout = 5 * time.Minute
)

// Config builds the server side.
type Config struct {
	// Identity is this node's node certificate; its CA checks peers.
	Identity pki.Identity
	// Authorize admits peers: (*ledger.NodeGate).Authorize, so only the
	// nodes of the node set with their pinned keys are served. It runs in
	// every TLS handshake and again on every request (a node removed from
	// the set is refused on a connection it opened before). Required.
	Authorize pki.Authorizer
	// Store is this node's ledger. Required.
	Store Store
	// Member is this node's committee member; nil answers sign requests
	// with rpc.unavailable.
	Member Member
	// Status reports this node's status; nil answers rpc.unavailable.
	Status func() Status
	// Creator builds backends' withdrawals when this node leads; nil
	// answers PathWithdrawals with rpc.unavailable.
	Creator Creator
	// Logger receives refused and failed requests (never bodies); nil
	// discards.
	Logger *slog.Logger
	// Timeout bounds submit, read-index and status work (DefaultTimeout);
	// SignTimeout bounds a signature (DefaultSignTimeout); KeygenTimeout
	// a keygen or reshare (DefaultKeygenTimeout).
	Timeout       time.Duration
	SignTimeout   time.Duration
	KeygenTimeout time.Duration
}

func (c *Config) check() error {
	if err := c.Identity.Valid(); err != nil {
		return fmt.Errorf("noderpc: identity: %w", err)
	}
	if c.Authorize == nil {
		return errors.New("noderpc: no authorizer (the node gate's Authorize)")
	}
	if c.Store == nil {
		return errors.New("noderpc: no ledger store")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.SignTimeout <= 0 {
		c.SignTimeout = DefaultSignTimeout
	}
	if c.KeygenTimeout <= 0 {
		c.KeygenTimeout = DefaultKeygenTimeout
	}
	return nil
}

type server struct {
	cfg Config
}

// NewHandler returns the node RPC's handler. It expects to be served over
// TLS with the node's NodeTLS configuration (see NewServer) and refuses a
// request without a verified node certificate of the node set.
func NewHandler(cfg Config) (http.Handler, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &server{cfg: cfg}
	mux := http.NewServeMux()
	mux.Handle(PathSubmit, s.endpoint(http.MethodPost, s.submit))
	mux.Handle(PathReadIndex, s.endpoint(http.MethodGet, s.readIndex))
	mux.Handle(PathSign, s.endpoint(http.MethodPost, s.sign))
	mux.Handle(PathKeygen, s.endpoint(http.MethodPost, s.keygen))
	mux.Handle(PathTestSign, s.endpoint(http.MethodPost, s.testSign))
	mux.Handle(PathReshare, s.endpoint(http.MethodPost, s.reshare))
	mux.Handle(PathWalletInfo, s.endpoint(http.MethodPost, s.walletInfo))
	mux.Handle(PathStatus, s.endpoint(http.MethodGet, s.status))
	mux.Handle(PathRequest, s.endpoint(http.MethodGet, s.request))
	mux.Handle(PathWallet, s.endpoint(http.MethodGet, s.wallet))
	mux.Handle(PathWithdrawals, s.endpoint(http.MethodPost, s.createWithdrawal))
	mux.Handle("/", s.endpoint("", func(*http.Request, pki.Peer, []byte) (any, error) {
		return nil, fail(CodeNoRoute, "noderpc: no such endpoint")
	}))
	return mux, nil
}

// NewServer returns an http.Server for the node RPC: the handler, the
// node's mutual TLS (NodeTLS with cfg.Authorize) and timeouts. Serve it
// with srv.ServeTLS(listener, "", "").
func NewServer(cfg Config) (*http.Server, error) {
	h, err := NewHandler(cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &http.Server{
		Handler:           h,
		TLSConfig:         cfg.Identity.NodeTLS(cfg.Authorize),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      max(cfg.Timeout, cfg.SignTimeout, cfg.KeygenTimeout) + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		// A connection's chain verification is kept for its later
		// requests (pki.ConnContext); the node-set check stays per request.
		ConnContext: pki.ConnContext,
	}, nil
}

type handlerFunc func(r *http.Request, peer pki.Peer, body []byte) (any, error)

// endpoint wraps h: method, peer authentication, body limit, then the
// one error shape.
func (s *server) endpoint(method string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A call made for a backend API request carries its ID: the work
		// and its log lines here are that request's too. A malformed one
		// is dropped, never replaced: the ID belongs to the caller.
		if id := r.Header.Get(requestid.Header); requestid.Valid(id) {
			r = r.WithContext(requestid.With(r.Context(), id))
		}
		peer, err := s.authenticate(r)
		var out any
		if err == nil {
			out, err = s.serve(w, r, method, peer, h)
		}
		if err != nil {
			we, status, internal := encodeError(err)
			var ie *indexedError
			if errors.As(err, &ie) {
				we.Index = ie.index
			}
			level := slog.LevelWarn
			if internal {
				level = slog.LevelError
			}
			// The message names the cause, never a body or a secret.
			s.cfg.Logger.Log(r.Context(), level, "noderpc: request refused", "path", r.URL.Path, "peer", peer.ID, "code", we.Code, "err", err)
			writeJSON(w, status, errorBody{Error: we})
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (s *server) serve(w http.ResponseWriter, r *http.Request, method string, peer pki.Peer, h handlerFunc) (any, error) {
	if method != "" && r.Method != method {
		w.Header().Set("Allow", method)
		return nil, fail(CodeMethod, "noderpc: %s wants %s", r.URL.Path, method)
	}
	var body []byte
	if r.Method == http.MethodPost {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return nil, fail(CodeBadRequest, "noderpc: the body must be application/json")
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, fail(CodeTooLarge, "noderpc: body larger than %d bytes", MaxBody)
			}
			return nil, fail(CodeBadRequest, "noderpc: reading the body: %v", err)
		}
		body = b
	}
	return h(r, peer, body)
}

// authenticate re-checks the TLS peer on every request: a node
// certificate of the cluster CA (its chain verified once per connection
// while valid: pki.VerifyConnPeer) that the authorizer admits now.
func (s *server) authenticate(r *http.Request) (pki.Peer, error) {
	if r.TLS == nil {
		return pki.Peer{}, fail(CodeForbidden, "noderpc: TLS with a node certificate is required")
	}
	p, _, err := pki.VerifyConnPeer(r.Context(), *r.TLS, s.cfg.Identity.CA, time.Now(), pki.RoleNode)
	if err != nil {
		return pki.Peer{}, fail(CodeForbidden, "noderpc: %v", err)
	}
	if err := s.cfg.Authorize(p); err != nil {
		return pki.Peer{}, fail(CodeForbidden, "noderpc: %s: %v", p, err)
	}
	return p, nil
}

// indexedError carries the log index of a refused command to the wire.
type indexedError struct {
	error
	index uint64
}

func (e *indexedError) Unwrap() error { return e.error }

// NodeActor is the actor a node submits its own commands as.
func NodeActor(id pki.NodeID) string { return "node:" + string(id) }

func (s *server) submit(r *http.Request, peer pki.Peer, body []byte) (any, error) {
	actor, cmd, err := decodeSubmit(body)
	if err != nil {
		if errors.Is(err, ledger.ErrInvalid) {
			return nil, err
		}
		return nil, fail(CodeBadRequest, "noderpc: submit: %v", err)
	}
	// A node speaks only for itself; an operator's or the backend's actor
	// is a label, their signatures inside the command are what counts.
	if strings.HasPrefix(actor, "node:") && actor != NodeActor(peer.Node()) {
		return nil, fail(CodeForbidden, "noderpc: node %q cannot submit as %q", peer.ID, actor)
	}
	if !Forwardable(cmd.Type()) {
		return nil, fail(CodeForbidden, "noderpc: node %q cannot forward %s: the leader proposes it itself", peer.ID, cmd.Type())
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	out, err := s.cfg.Store.Submit(ctx, actor, cmd)
	if err != nil {
		return nil, &indexedError{error: err, index: out.Index}
	}
	s.cfg.Logger.InfoContext(r.Context(), "noderpc: forwarded command committed", "type", cmd.Type(), "peer", peer.ID, "index", out.Index)
	return submitResponse{Index: out.Index, Existing: out.Existing, Request: out.Request}, nil
}

func (s *server) readIndex(r *http.Request, _ pki.Peer, _ []byte) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	idx, err := s.cfg.Store.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return readIndexResponse{Index: idx}, nil
}

func (s *server) sign(r *http.Request, peer pki.Peer, body []byte) (any, error) {
	// Only the leader orchestrates; the member re-checks the claim against
	// its own ledger whoever asks, this only keeps other nodes from
	// starting sessions.
	m, err := s.leaderMember(peer, "a signature")
	if err != nil {
		return nil, err
	}
	requestID, claim, err := decodeSign(body)
	if err != nil {
		return nil, fail(CodeBadRequest, "noderpc: sign: %v", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.SignTimeout)
	defer cancel()
	signed, err := m.SignClaimed(ctx, requestID, claim)
	if err != nil {
		return nil, err
	}
	if signed == nil {
		return nil, fail(CodeInternal, "noderpc: the member returned no signature")
	}
	return signResponse{RequestID: signed.RequestID, SessionID: hex.EncodeToString(signed.SessionID[:]),
		Raw: signed.Raw, TxHash: signed.TxHash, Signature: signed.Signature}, nil
}

// leaderMember is the member when peer is the leader this node's ledger
// knows: only the leader orchestrates sessions (the member re-checks
// everything against its own ledger whoever asks).
func (s *server) leaderMember(peer pki.Peer, what string) (Member, error) {
	if s.cfg.Member == nil {
		return nil, fail(CodeUnavailable, "noderpc: this node runs no committee member")
	}
	if lid, _ := s.cfg.Store.Leader(); lid == "" || peer.Node() != lid {
		return nil, fail(CodeForbidden, "noderpc: only the leader may ask for %s; %q is not the leader (%q is)", what, peer.ID, lid)
	}
	return s.cfg.Member, nil
}

func (s *server) keygen(r *http.Request, peer pki.Peer, body []byte) (any, error) {
	m, err := s.leaderMember(peer, "a keygen")
	if err != nil {
		return nil, err
	}
	wallet, session, err := decodeKeygen(body)
	if err != nil {
		return nil, fail(CodeBadRequest, "noderpc: keygen: %v", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.KeygenTimeout)
	defer cancel()
	res, err := m.Keygen(ctx, wallet, session)
	if err != nil {
		return nil, err
	}
	if res == nil {
		return nil, fail(CodeInternal, "noderpc: the member returned no keygen result")
	}
	return keygenResponse{Wallet: res.Wallet, Session: res.Session.String(), PubKey: res.PubKey, Attestation: res.Attestation}, nil
}

func (s *server) testSign(r *http.Request, peer pki.Peer, body []byte) (any, error) {
	m, err := s.leaderMember(peer, "a test signature")
	if err != nil {
		return nil, err
	}
	req, session, err := decodeTestSign(body)
	if err != nil {
		return nil, fail(CodeBadRequest, "noderpc: test-sign: %v", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.SignTimeout)
	defer cancel()
	sig, err := m.TestSign(ctx, req.Wallet, req.PubKey, session, req.Signers)
	if err != nil {
		return nil, err
	}
	return testSignResponse{Signature: sig}, nil
}

// reshareMember is leaderMember for the reshare endpoints.
func (s *server) reshareMember(peer pki.Peer, what string) (ReshareMember, error) {
	m, err := s.leaderMember(peer, what)
	if err != nil {
		return nil, err
	}
	rm, ok := m.(ReshareMember)
	if !ok {
		return nil, fail(CodeUnavailable, "noderpc: this node's member does not reshare")
	}
	return rm, nil
}

func (s *server) reshare(r *http.Request, peer pki.Peer, body []byte) (any, error) {
	m, err := s.reshareMember(peer, "a reshare")
	if err != nil {
		return nil, err
	}
	req, session, err := decodeReshare(body)
	if err != nil {
		return nil, fail(CodeBadRequest, "noderpc: reshare: %v", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.KeygenTimeout)
	defer cancel()
	res, err := m.Reshare(ctx, req.Wallet, session, req.OldSigners, req.OldMembers)
	if err != nil {
		return nil, err
	}
	if res == nil {
		return nil, fail(CodeInternal, "noderpc: the member returned no reshare result")
	}
	out := reshareResponse{Wallet: res.Wallet, Session: res.Session.String(), PubKey: res.PubKey}
	if res.Attestation.Node != "" {
		out.Attestation = &res.Attestation
	}
	return out, nil
}

func (s *server) walletInfo(r *http.Request, peer pki.Peer, body []byte) (any, error) {
	m, err := s.reshareMember(peer, "a wallet description")
	if err != nil {
		return nil, err
	}
	wallet, err := decodeWallet(body)
	if err != nil {
		return nil, fail(CodeBadRequest, "noderpc: wallet-info: %v", err)
	}
	info, err := m.WalletInfo(r.Context(), wallet)
	if err != nil {
		return nil, err
	}
	return info, nil
}

func (s *server) status(*http.Request, pki.Peer, []byte) (any, error) {
	if s.cfg.Status == nil {
		return nil, fail(CodeUnavailable, "noderpc: no status")
	}
	return s.cfg.Status(), nil
}

// queryID is the one query parameter id of a read: present once, not
// empty, nothing else in the query.
func queryID(r *http.Request) (string, error) {
	q := r.URL.Query()
	ids := q["id"]
	if len(q) != 1 || len(ids) != 1 || ids[0] == "" || len(ids[0]) > maxReadID {
		return "", fail(CodeBadRequest, "noderpc: want exactly one query parameter id (1..%d bytes)", maxReadID)
	}
	return ids[0], nil
}

// maxReadID bounds the id of a read.
const maxReadID = 256

func (s *server) request(r *http.Request, _ pki.Peer, _ []byte) (any, error) {
	id, err := queryID(r)
	if err != nil {
		return nil, err
	}
	var out RequestView
	err = s.cfg.Store.ReadLocal(func(st *ledger.State) error {
		req := st.Requests[id]
		if req == nil {
			return fmt.Errorf("%w: request %q", ledger.ErrNotFound, id)
		}
		out = RequestView{StateIndex: st.Index, Request: req.Clone(), Sessions: []string{}}
		for sid, rid := range st.Sessions {
			if rid == id {
				out.Sessions = append(out.Sessions, sid)
			}
		}
		slices.Sort(out.Sessions)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *server) wallet(r *http.Request, _ pki.Peer, _ []byte) (any, error) {
	id, err := queryID(r)
	if err != nil {
		return nil, err
	}
	var out WalletView
	err = s.cfg.Store.ReadLocal(func(st *ledger.State) error {
		w := st.Wallets[id]
		if w == nil {
			return fmt.Errorf("%w: wallet %q", ledger.ErrNotFound, id)
		}
		out = WalletView{StateIndex: st.Index, Wallet: w.Clone()}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// createWithdrawal is POST PathWithdrawals: a follower's backend API
// forwards a withdrawal to the leader, which builds and records it. The
// creator refuses on a follower (not leader); the initiation inside is
// verified by the ledger whoever forwards it.
func (s *server) createWithdrawal(r *http.Request, peer pki.Peer, body []byte) (any, error) {
	if s.cfg.Creator == nil {
		return nil, fail(CodeUnavailable, "noderpc: this node builds no withdrawals")
	}
	principal, w, err := decodeCreate(body)
	if err != nil {
		return nil, fail(CodeBadRequest, "noderpc: withdrawals: %v", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	req, existing, err := s.cfg.Creator.CreateWithdrawal(ctx, principal, w)
	if err != nil {
		return nil, err
	}
	if req == nil {
		return nil, fail(CodeInternal, "noderpc: the creator returned no request")
	}
	s.cfg.Logger.InfoContext(ctx, "noderpc: forwarded withdrawal recorded", "request", req.ID, "peer", peer.ID, "existing", existing)
	return createResponse{Request: req, Existing: existing}, nil
}

// forwardable are the command types a node may forward to the leader:
// what operators, admins or the backend signed (the ledger verifies the
// signatures), and what a node signs with its own key (checkpoint, claim and export
// attestations, chain witnesses, its token declaration). Everything the leader proposes on
// its own authority (claims, re-claims, results, broadcast and chain status,
// expiry, wallet keys, voters, the genesis, legacy wallet.set) is refused
// from peers: a compromised follower could otherwise exhaust a request's
// signing attempts with its own claims and failed results, or write chain
// status, without ever leading.
var forwardable = map[string]bool{
	ledger.CmdCheckpointSign: true, ledger.CmdColdAttest: true, ledger.CmdNodeToken: true, ledger.CmdChainWitness: true,
	ledger.CmdRequestCreate: true, ledger.CmdApprove: true,
	ledger.CmdPolicyChange: true, ledger.CmdRegistryChange: true, ledger.CmdRulesSet: true,
	ledger.CmdNodeChange: true, ledger.CmdWalletCreate: true, ledger.CmdWalletReshare: true,
	ledger.CmdWalletRegister: true, ledger.CmdColdExport: true, ledger.CmdColdImport: true,
	ledger.CmdChangePropose: true, ledger.CmdChangeApprove: true,
}

// Forwardable reports whether a node may forward a command of type typ.
func Forwardable(typ string) bool { return forwardable[typ] }
