package noderpc

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/custody-dev/custody/api/requestid"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/member"
	"github.com/custody-dev/custody/signer/tss"
)

// ClientConfig builds a Client.
type ClientConfig struct {
	// Self is this node's ID (the actor of Forward: node:Self).
	Self pki.NodeID
	// Identity is this node's node certificate.
	Identity pki.Identity
	// Authorize admits the servers this client talks to
	// ((*ledger.NodeGate).Authorize); the server must also be the node
	// dialled. Required.
	Authorize pki.Authorizer
	// Peers maps each node to its RPC address (host:port), this node's own
	// included or not.
	Peers map[pki.NodeID]string
	// Leader is the leader as this node's ledger knows it
	// ((*ledger.Store).Leader). Required.
	Leader func() (pki.NodeID, string)
	// Local is this node's ledger: used directly when this node leads (no
	// network round trip to itself). Nil: this node too is asked over the
	// RPC, and then it must be in Peers.
	Local Store
	// Creator builds withdrawals directly when this node leads
	// (CreateWithdrawal); nil asks this node too over the RPC.
	Creator Creator
	// Timeout bounds one submit, read-index or status call to a peer
	// (DefaultTimeout); SignTimeout one sign call (DefaultSignTimeout).
	// The caller's context bounds them too.
	Timeout     time.Duration
	SignTimeout time.Duration
	// KeygenTimeout bounds one keygen or reshare call
	// (DefaultKeygenTimeout).
	KeygenTimeout time.Duration
	// Retry is the pause before asking again when no leader is known or
	// the leader moved (default 100 ms).
	Retry time.Duration
}

// Client calls other nodes' RPC. It is safe for concurrent use.
type Client struct {
	cfg   ClientConfig
	peers map[pki.NodeID]*http.Client
	addrs map[pki.NodeID]string
}

// NewClient checks cfg and builds one HTTPS client per peer, each
// accepting only that peer's node certificate.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Self.Validate(); err != nil {
		return nil, fmt.Errorf("noderpc: self: %w", err)
	}
	if err := cfg.Identity.Valid(); err != nil {
		return nil, fmt.Errorf("noderpc: identity: %w", err)
	}
	if cfg.Authorize == nil || cfg.Leader == nil {
		return nil, errors.New("noderpc: client needs an authorizer and the ledger's leader")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.SignTimeout <= 0 {
		cfg.SignTimeout = DefaultSignTimeout
	}
	if cfg.KeygenTimeout <= 0 {
		cfg.KeygenTimeout = DefaultKeygenTimeout
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 100 * time.Millisecond
	}
	c := &Client{cfg: cfg, peers: map[pki.NodeID]*http.Client{}, addrs: map[pki.NodeID]string{}}
	for id, addr := range cfg.Peers {
		if err := id.Validate(); err != nil {
			return nil, fmt.Errorf("noderpc: peer: %w", err)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("noderpc: peer %s address %q: %w", id, addr, err)
		}
		auth, want := cfg.Authorize, id
		tr := &http.Transport{
			TLSClientConfig: cfg.Identity.NodeTLS(func(p pki.Peer) error {
				if err := pki.ExpectNode(want)(p); err != nil {
					return err
				}
				return auth(p)
			}),
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		}
		c.peers[id] = &http.Client{Transport: tr}
		c.addrs[id] = addr
	}
	return c, nil
}

// Close drops idle connections.
func (c *Client) Close() {
	for _, h := range c.peers {
		h.CloseIdleConnections()
	}
}

// call sends one request to peer and decodes a 200 answer into out, or
// returns the peer's error (requestID: the sign call's, for a member
// refusal). A request that never reached the peer is ErrUnreachable; one
// that may have (the connection broke or ctx ended after it was sent) is
// ledger.ErrTimeout: its outcome is unknown.
func (c *Client) call(ctx context.Context, peer pki.NodeID, method, path string, in, out any, timeout time.Duration, requestID string) error {
	h, ok := c.peers[peer]
	if !ok {
		return fmt.Errorf("%w: no RPC address for node %q", ErrUnreachable, peer)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { sent.Store(true) }})
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("noderpc: encode %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+c.addrs[peer]+path, body)
	if err != nil {
		return fmt.Errorf("noderpc: %s: %w", path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// The backend API request this call serves, if any: the peer logs
	// under the same ID.
	requestid.SetHeader(ctx, req)
	resp, err := h.Do(req)
	if err != nil {
		if !sent.Load() {
			return fmt.Errorf("%w: %s at %s: %v", ErrUnreachable, peer, c.addrs[peer], err)
		}
		return fmt.Errorf("%w: %s at %s: %v", ledger.ErrTimeout, peer, c.addrs[peer], err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%w: %s at %s: reading the answer: %v", ledger.ErrTimeout, peer, c.addrs[peer], err)
	}
	if len(b) > maxResponse {
		return fmt.Errorf("noderpc: %s answered more than %d bytes", peer, maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if err := decodeStrict(b, &eb); err != nil || eb.Error.Code == "" {
			return &Error{Peer: peer, Status: resp.StatusCode, Code: CodeInternal, Message: fmt.Sprintf("HTTP %d without the error shape", resp.StatusCode), sentinel: ErrInternal}
		}
		return decodeError(peer, resp.StatusCode, eb.Error, requestID)
	}
	if err := decodeStrict(b, out); err != nil {
		return fmt.Errorf("noderpc: %s answered %s: %w", peer, path, err)
	}
	return nil
}

// Submit commits cmd as actor on the leader: this node's own ledger when
// it leads (Local), else over the RPC. It follows the leader (the ledger's
// view, then each not-leader answer's) until the command is committed or
// refused or ctx ends; it never retries ledger.ErrTimeout (outcome unknown:
// retry only with the same request ID). Errors carry the ledger's
// sentinels (errors.Is(err, ledger.ErrConflict), ...).
func (c *Client) Submit(ctx context.Context, actor string, cmd ledger.Command) (ledger.Outcome, error) {
	if cmd == nil {
		return ledger.Outcome{}, fmt.Errorf("%w: no command", ledger.ErrInvalid)
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return ledger.Outcome{}, fmt.Errorf("noderpc: encode %s: %w", cmd.Type(), err)
	}
	req := submitRequest{Actor: actor, Type: cmd.Type(), Payload: payload}
	var out ledger.Outcome
	err = c.onLeader(ctx, false, func(leader pki.NodeID) error {
		if leader == c.cfg.Self && c.cfg.Local != nil {
			var err error
			out, err = c.cfg.Local.Submit(ctx, actor, cmd)
			return err
		}
		var resp submitResponse
		if err := c.call(ctx, leader, http.MethodPost, PathSubmit, req, &resp, c.cfg.Timeout, ""); err != nil {
			var e *Error
			out = ledger.Outcome{}
			if errors.As(err, &e) {
				out.Index = e.Index
			}
			return err
		}
		out = ledger.Outcome{Index: resp.Index, Existing: resp.Existing, Request: resp.Request}
		return nil
	})
	return out, err
}

// CreateWithdrawal has the leader build and record w for the backend
// principal (POST PathWithdrawals): this node's Creator when it leads,
// else the RPC. It follows the leader as Submit does and never retries
// ledger.ErrTimeout (outcome unknown: retry with the same ID). A build
// refusal wraps ErrCreateRefused, a ledger refusal its sentinel.
func (c *Client) CreateWithdrawal(ctx context.Context, principal string, w Withdrawal) (*ledger.Request, bool, error) {
	var out createResponse
	err := c.onLeader(ctx, false, func(leader pki.NodeID) error {
		if leader == c.cfg.Self && c.cfg.Creator != nil {
			r, existing, err := c.cfg.Creator.CreateWithdrawal(ctx, principal, w)
			out = createResponse{Request: r, Existing: existing}
			return err
		}
		out = createResponse{}
		if err := c.call(ctx, leader, http.MethodPost, PathWithdrawals, createRequest{Principal: principal, Withdrawal: w}, &out, c.cfg.Timeout, ""); err != nil {
			return err
		}
		if out.Request == nil || out.Request.ID != w.ID {
			return fmt.Errorf("noderpc: %s answered for another request", leader)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out.Request, out.Existing, nil
}

// Forward submits cmd as this node (actor node:Self): ledger.Config.Forward,
// which hands a follower's checkpoint signatures and attestations to the
// leader.
func (c *Client) Forward(ctx context.Context, cmd ledger.Command) error {
	_, err := c.Submit(ctx, NodeActor(c.cfg.Self), cmd)
	return err
}

// ReadIndex returns the leader's read index (member.ReadIndexFunc),
// following the leader and retrying (a read index has no effect) until
// ctx ends.
func (c *Client) ReadIndex(ctx context.Context) (uint64, error) {
	var idx uint64
	err := c.onLeader(ctx, true, func(leader pki.NodeID) error {
		if leader == c.cfg.Self && c.cfg.Local != nil {
			var err error
			idx, err = c.cfg.Local.ReadIndex(ctx)
			return err
		}
		var resp readIndexResponse
		if err := c.call(ctx, leader, http.MethodGet, PathReadIndex, nil, &resp, c.cfg.Timeout, ""); err != nil {
			return err
		}
		idx = resp.Index
		return nil
	})
	return idx, err
}

var _ member.ReadIndexFunc = (*Client)(nil).ReadIndex

// onLeader runs fn on the leader until it returns nil or an error that is
// not about where the leader is, or ctx ends (then the last error, also
// wrapping ctx's). read also retries what only a read may retry (an
// unknown outcome).
func (c *Client) onLeader(ctx context.Context, read bool, fn func(leader pki.NodeID) error) error {
	var hint pki.NodeID
	redirects := 0
	for {
		leader := hint
		if leader == "" {
			leader, _ = c.cfg.Leader()
		}
		var err error
		if leader == "" {
			err = ErrNoLeader
		} else {
			err = fn(leader)
		}
		if err == nil {
			return nil
		}
		retry := errors.Is(err, ledger.ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrUnreachable) ||
			(read && errors.Is(err, ledger.ErrTimeout))
		if !retry {
			return err
		}
		hint = ""
		var nl *ledger.NotLeaderError
		if errors.As(err, &nl) && nl.LeaderID != "" && nl.LeaderID != leader && redirects < 3 {
			// Follow the peer's word at once, a few times; the ledger's
			// own view is asked again after that.
			hint = nl.LeaderID
			redirects++
			continue
		}
		redirects = 0
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(c.cfg.Retry):
		}
	}
}

// Status asks node id for its status.
func (c *Client) Status(ctx context.Context, id pki.NodeID) (Status, error) {
	var st Status
	err := c.call(ctx, id, http.MethodGet, PathStatus, nil, &st, c.cfg.Timeout, "")
	return st, err
}

// Request reads request reqID from node id's own replica (ledger.ErrNotFound
// when it has none).
func (c *Client) Request(ctx context.Context, id pki.NodeID, reqID string) (RequestView, error) {
	var v RequestView
	err := c.call(ctx, id, http.MethodGet, PathRequest+"?id="+url.QueryEscape(reqID), nil, &v, c.cfg.Timeout, "")
	if err == nil && (v.Request == nil || v.Request.ID != reqID) {
		err = fmt.Errorf("noderpc: %s answered for another request", id)
	}
	return v, err
}

// Wallet reads wallet walletID from node id's own replica.
func (c *Client) Wallet(ctx context.Context, id pki.NodeID, walletID string) (WalletView, error) {
	var v WalletView
	err := c.call(ctx, id, http.MethodGet, PathWallet+"?id="+url.QueryEscape(walletID), nil, &v, c.cfg.Timeout, "")
	if err == nil && (v.Wallet == nil || v.Wallet.ID != walletID) {
		err = fmt.Errorf("noderpc: %s answered for another wallet", id)
	}
	return v, err
}

// Member returns node id's committee member as the leader's orchestrator
// sees it (a withdraw.Member).
func (c *Client) Member(id pki.NodeID) *RemoteMember { return &RemoteMember{c: c, id: id} }

// RemoteMember is another node's committee member, asked over the RPC.
type RemoteMember struct {
	c  *Client
	id pki.NodeID
}

// Self is the member's node ID.
func (m *RemoteMember) Self() pki.NodeID { return m.id }

// SignClaimed asks the member to sign the claim. A refusal is a
// *member.RefusalError naming the member, whose Err is the peer's *Error
// (errors.Is(err, member.ErrQuorum), ...). The answer must be for the
// request and session asked about.
func (m *RemoteMember) SignClaimed(ctx context.Context, requestID string, cl member.Claim) (*member.Signed, error) {
	var resp signResponse
	if err := m.c.call(ctx, m.id, http.MethodPost, PathSign, signRequest{RequestID: requestID, Claim: toWireClaim(cl)}, &resp, m.c.cfg.SignTimeout, requestID); err != nil {
		return nil, err
	}
	sid, err := parse32("session_id", resp.SessionID)
	if err != nil {
		return nil, fmt.Errorf("noderpc: %s answered: %w", m.id, err)
	}
	if resp.RequestID != requestID || sid != cl.SessionID {
		return nil, fmt.Errorf("noderpc: %s answered for request %q session %s, asked %q session %s",
			m.id, resp.RequestID, resp.SessionID, requestID, hex.EncodeToString(cl.SessionID[:]))
	}
	return &member.Signed{RequestID: resp.RequestID, SessionID: sid, Raw: resp.Raw, TxHash: resp.TxHash, Signature: resp.Signature}, nil
}

// Keygen asks the member to run its side of walletID's keygen under
// session. A refusal is a *member.RefusalError (errors.Is(err,
// member.ErrKeygen), ...). The answer must be for the wallet and session
// asked about and attested by the member asked; the key and attestation
// are checked by the leader (one key) and the ledger (WalletKeyed).
func (m *RemoteMember) Keygen(ctx context.Context, walletID string, session tss.SessionID) (*member.KeygenResult, error) {
	var resp keygenResponse
	if err := m.c.call(ctx, m.id, http.MethodPost, PathKeygen, keygenRequest{Wallet: walletID, Session: session.String()}, &resp, m.c.cfg.KeygenTimeout, "wallet:"+walletID); err != nil {
		return nil, err
	}
	sid, err := parse32("session", resp.Session)
	if err != nil {
		return nil, fmt.Errorf("noderpc: %s answered: %w", m.id, err)
	}
	if resp.Wallet != walletID || sid != session || resp.Attestation.Node != m.id {
		return nil, fmt.Errorf("noderpc: %s answered for wallet %q session %s attested by %q, asked %q session %s",
			m.id, resp.Wallet, resp.Session, resp.Attestation.Node, walletID, session)
	}
	return &member.KeygenResult{Wallet: resp.Wallet, Session: sid, PubKey: resp.PubKey, Attestation: resp.Attestation}, nil
}

// TestSign asks the member for its part of a test signature of walletID's
// new key pubkey (member.WalletTestDigest) under session with signers; it
// returns r || s || v. The caller verifies it (member.VerifyTestSignature).
func (m *RemoteMember) TestSign(ctx context.Context, walletID string, pubkey []byte, session tss.SessionID, signers []pki.NodeID) ([]byte, error) {
	var resp testSignResponse
	req := testSignRequest{Wallet: walletID, PubKey: pubkey, Session: session.String(), Signers: signers}
	if err := m.c.call(ctx, m.id, http.MethodPost, PathTestSign, req, &resp, m.c.cfg.SignTimeout, "wallet:"+walletID); err != nil {
		return nil, err
	}
	return resp.Signature, nil
}

// Reshare asks the member to run its side of walletID's reshare under
// session with oldSigners (the old committee's party keys in oldMembers,
// for new members). A refusal is a *member.RefusalError. The answer must be
// for the wallet and session asked about; an attestation, when present,
// must be by the member asked (the ledger verifies it: WalletReshared).
func (m *RemoteMember) Reshare(ctx context.Context, walletID string, session tss.SessionID, oldSigners []pki.NodeID, oldMembers []tss.Party) (*member.ReshareResult, error) {
	var resp reshareResponse
	req := reshareRequest{Wallet: walletID, Session: session.String(), OldSigners: oldSigners, OldMembers: oldMembers}
	if err := m.c.call(ctx, m.id, http.MethodPost, PathReshare, req, &resp, m.c.cfg.KeygenTimeout, "wallet:"+walletID); err != nil {
		return nil, err
	}
	sid, err := parse32("session", resp.Session)
	if err != nil {
		return nil, fmt.Errorf("noderpc: %s answered: %w", m.id, err)
	}
	if resp.Wallet != walletID || sid != session || (resp.Attestation != nil && resp.Attestation.Node != m.id) {
		return nil, fmt.Errorf("noderpc: %s answered for wallet %q session %s, asked %q session %s (or attested as another node)",
			m.id, resp.Wallet, resp.Session, walletID, session)
	}
	res := &member.ReshareResult{Wallet: resp.Wallet, Session: sid, PubKey: resp.PubKey}
	if resp.Attestation != nil {
		res.Attestation = *resp.Attestation
	}
	return res, nil
}

// WalletInfo asks the member for the public description of its share of
// walletID (tss party keys of the committee): what new members of a
// reshare need of the old committee.
func (m *RemoteMember) WalletInfo(ctx context.Context, walletID string) (tss.WalletInfo, error) {
	var info tss.WalletInfo
	if err := m.c.call(ctx, m.id, http.MethodPost, PathWalletInfo, walletRequest{Wallet: walletID}, &info, m.c.cfg.SignTimeout, "wallet:"+walletID); err != nil {
		return tss.WalletInfo{}, err
	}
	if info.Wallet != walletID {
		return tss.WalletInfo{}, fmt.Errorf("noderpc: %s described wallet %q, asked %q", m.id, info.Wallet, walletID)
	}
	return info, nil
}
