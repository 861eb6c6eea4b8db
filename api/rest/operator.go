package rest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Paths of the operator API, version 1 (role operator).
const (
	PathWhoami    = "/v1/whoami"
	PathRequests  = "/v1/requests"
	PathChanges   = "/v1/changes"
	PathAllowlist = "/v1/allowlist"
	PathLocks     = "/v1/locks"
	PathAudit     = "/v1/audit"
)

// Error codes of the operator API (docs/api.md).
const (
	CodeInvalidApproval = "invalid_approval"     // 400: not a valid signed answer for this request or change (signature, device, payload, expiry)
	CodeApproverMatch   = "approver_mismatch"    // 403: the approval's device is not the principal's
	CodeNotAllowed      = "approval_not_allowed" // 403: this operator's answer does not count (initiator, role, suspended, revoked device)
	CodeAlreadyAnswered = "already_answered"     // 409: the operator answered already
	CodeNotConfigured   = "not_configured"       // 501: the node serves no operator writes
)

func operatorCodes() map[string]int {
	return map[string]int{CodeInvalidApproval: 400, CodeApproverMatch: 403, CodeNotAllowed: 403, CodeAlreadyAnswered: 409, CodeNotConfigured: 501}
}

// OperatorService is what the operator API needs beyond Service: committing
// an operator-signed command on the leader (the daemon's Node.Submit,
// forwarded from a follower with its signatures unchanged).
type OperatorService interface {
	Submit(ctx context.Context, actor string, cmd ledger.Command) (ledger.Outcome, error)
}

// IdentityView is GET /v1/whoami: who the certificate is and what the
// registry knows of it.
type IdentityView struct {
	Principal string           `json:"principal"`
	Role      string           `json:"role"`
	ClusterID string           `json:"cluster_id"`
	Operator  *quorum.Operator `json:"operator,omitempty"`
	Devices   []DeviceView     `json:"devices"`
}

// DeviceView is an enrolled device.
type DeviceView struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Label  string `json:"label,omitempty"`
}

func (s *server) whoami(_ http.ResponseWriter, r *http.Request, peer pki.Peer, _ []byte) (int, any, error) {
	v := IdentityView{Principal: peer.ID, Role: string(peer.Role), Devices: []DeviceView{}}
	err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		v.ClusterID = st.Registry.ClusterID
		if op, ok := st.Registry.Operators[peer.ID]; ok {
			op.Roles = slices.Clone(op.Roles)
			v.Operator = &op
		}
		for _, d := range st.Registry.Devices {
			if d.OperatorID == peer.ID {
				v.Devices = append(v.Devices, DeviceView{ID: d.ID, Kind: string(d.Kind), Status: string(d.Status), Label: d.Label})
			}
		}
		slices.SortFunc(v.Devices, func(a, b DeviceView) int { return strings.Compare(a.ID, b.ID) })
		return nil
	})
	return http.StatusOK, v, err
}

// RequestView is a withdrawal request as an operator reviews it: the
// withdrawal, and what a person must see before signing: the wallet's
// address, the asset's decimals, one line describing it all, and the
// cluster ID the approval statement names.
type RequestView struct {
	Withdrawal  WithdrawalView `json:"withdrawal"`
	ClusterID   string         `json:"cluster_id"`
	From        string         `json:"from,omitempty"`
	Decimals    int            `json:"decimals"`
	Description string         `json:"description"`
	// RejectReason is the rejecting operator's words (unsigned).
	RejectReason string `json:"reject_reason,omitempty"`

	// What an operator's tool needs to derive what it shows and signs
	// from the transaction itself (ReviewRequest), never from Description
	// or the payload hash alone. GET of one request (and the answer's
	// reply) only, not the list.

	// Payload is the unsigned transaction as the ledger recorded it
	// (ledger.Request.Payload; base64 in JSON).
	Payload []byte `json:"payload,omitempty"`
	// WalletPubKey is the wallet's 33-byte compressed secp256k1 key in hex
	// as the ledger records it (the committee's attested key, or a cold
	// wallet's registered one); absent when it records none.
	WalletPubKey string `json:"wallet_pubkey,omitempty"`
	// BTCParams names a Bitcoin wallet's network parameters (mainnet,
	// testnet3, signet, regtest): what the payload is parsed for.
	BTCParams string `json:"btc_params,omitempty"`
	// Outpoints are the outputs a Bitcoin request reserved ("txid:vout",
	// in input order).
	Outpoints []string `json:"outpoints,omitempty"`
}

type requestsResponse struct {
	Requests   []RequestView `json:"requests"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

// summary is a withdrawal's one-line description (WithdrawalView's):
// what it sends where under which rule; decimals < 0 when the rules do not
// know the asset.
func summary(v *WithdrawalView, from string, decimals int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "send %s %s", v.Amount, v.Asset)
	if decimals >= 0 {
		fmt.Fprintf(&b, " (%d decimals)", decimals)
	}
	fmt.Fprintf(&b, " on %s/%s from wallet %s", v.Chain, v.Network, v.Wallet)
	if from != "" {
		fmt.Fprintf(&b, " (%s)", from)
	}
	fmt.Fprintf(&b, " to %s; max fee %s %s; ", v.To, v.FeeCap.Amount, v.FeeCap.Asset)
	p := v.Policy
	if p.Allowed {
		fmt.Fprintf(&b, "rule %s (%s route)", p.Rule, p.Route)
	} else {
		fmt.Fprintf(&b, "policy denied: %s", p.Reason)
		if p.Detail != "" {
			fmt.Fprintf(&b, " (%s)", p.Detail)
		}
	}
	if v.Note != "" {
		fmt.Fprintf(&b, "; note %q", v.Note)
	}
	return b.String()
}

// describe is the withdrawal's description with the approvals so far and
// the status: what an operator reviews.
func describe(v *WithdrawalView) string {
	var b strings.Builder
	b.WriteString(v.Description)
	a := v.Approvals
	fmt.Fprintf(&b, "; approvals %d of %d (roles %s)", a.Collected, a.Required, strings.Join(a.Roles, ", "))
	var by []string
	for _, x := range a.By {
		s := x.Operator + " " + x.Decision
		if x.At != nil {
			s += " at " + x.At.Format(time.RFC3339)
		}
		by = append(by, s)
	}
	if len(by) > 0 {
		fmt.Fprintf(&b, ": %s", strings.Join(by, "; "))
	}
	fmt.Fprintf(&b, "; status %s", v.Status)
	return b.String()
}

// operatorView adds what an operator reviews to a rendered withdrawal;
// withPayload adds the unsigned transaction and what parsing it needs.
func (s *server) operatorView(r *http.Request, v *WithdrawalView, withPayload bool) (RequestView, error) {
	out := RequestView{Withdrawal: *v}
	if err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		out.ClusterID = st.Registry.ClusterID
		if d, ok := st.ActivePolicy().Assets[v.Asset]; ok {
			out.Decimals = d.Decimals
		}
		req := st.Requests[v.ID]
		if req == nil {
			return nil
		}
		out.RejectReason = req.RejectReason
		if withPayload {
			out.Payload, out.Outpoints = slices.Clone(req.Payload), slices.Clone(req.Outpoints)
			if w := st.Wallets[req.Wallet]; w != nil {
				out.WalletPubKey, out.BTCParams = reviewKey(w)
			}
		}
		return nil
	}); err != nil {
		return out, err
	}
	ws, err := s.readWallets(r, v.Wallet)
	if err != nil {
		return out, err
	}
	if len(ws) == 1 {
		out.From = ws[0].Address
	}
	out.Description = describe(v)
	return out, nil
}

func (s *server) requests(w http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error) {
	st, out, err := s.list(w, r, peer, body)
	if err != nil {
		return st, out, err
	}
	page := out.(listResponse)
	resp := requestsResponse{Requests: []RequestView{}, NextCursor: page.NextCursor}
	for i := range page.Withdrawals {
		v, err := s.operatorView(r, &page.Withdrawals[i], false)
		if err != nil {
			return 0, nil, err
		}
		resp.Requests = append(resp.Requests, v)
	}
	return st, resp, nil
}

func (s *server) request(w http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error) {
	st, out, err := s.get(w, r, peer, body)
	if err != nil {
		return st, out, err
	}
	v, err := s.operatorView(r, out.(*WithdrawalView), true)
	return st, v, err
}

// answerBody is POST /v1/requests/{id}/approvals: the approval (or
// rejection) the operator's device signed locally, and for a rejection the
// operator's reason.
type answerBody struct {
	Approval *quorum.Approval `json:"approval"`
	Reason   string           `json:"reason,omitempty"`
}

// checkAnswer checks an operator's answer to req on the replica: the
// statement names this cluster, request and payload; the device is the
// principal's, active, and its signature verifies; it is not expired nor
// beyond the cluster's ceiling; the operator may answer and has not.
func checkAnswer(st *ledger.State, peer pki.Peer, req *ledger.Request, a quorum.Approval, now time.Time) error {
	if err := checkSigner(st, peer, a, req.ID, req.PayloadHash, now); err != nil {
		return err
	}
	switch {
	case a.Decision != quorum.Approve && a.Decision != quorum.Reject:
		return apiErr(http.StatusBadRequest, CodeInvalidApproval, "approval", "api: approval: decision %s, want approve or reject", a.Decision)
	case req.Status == ledger.StatusAwaitingApprovals:
	case req.Status == ledger.StatusApproved && a.Decision == quorum.Reject:
	default:
		return apiErr(http.StatusConflict, CodeLedgerRefused, "", "api: request %q is %s (%s): it takes no %s", req.ID, APIStatus(req), req.Status, a.Decision)
	}
	tally := quorum.Count(st.Registry, quorum.Subject{RequestID: req.ID, PayloadHash: req.PayloadHash, Initiator: req.Initiator},
		quorum.Requirement{Required: 1, Roles: req.Decision.Roles}, []quorum.Approval{a}, now)
	if len(tally.Ignored) > 0 {
		return ignoredErr(tally.Ignored[0].Reason)
	}
	op := st.Registry.Devices[a.DeviceID].OperatorID
	for _, old := range req.Approvals {
		if st.Registry.Devices[old.DeviceID].OperatorID == op && (a.Decision != quorum.Reject || old.Decision == quorum.Reject) {
			return apiErr(http.StatusConflict, CodeAlreadyAnswered, "approval", "api: operator %q already answered %q (%s)", op, req.ID, old.Decision)
		}
	}
	return nil
}

// checkSigner checks what every operator answer shares: it names this
// cluster, subject and payload; its device is the principal's; it is not
// expired nor valid beyond the cluster's ceiling.
func checkSigner(st *ledger.State, peer pki.Peer, a quorum.Approval, subject string, payload quorum.Hash, now time.Time) error {
	bad := func(format string, args ...any) error {
		return apiErr(http.StatusBadRequest, CodeInvalidApproval, "approval", "api: approval: "+format, args...)
	}
	switch {
	case a.ClusterID != st.Registry.ClusterID:
		return bad("signed for cluster %q, this is %q", a.ClusterID, st.Registry.ClusterID)
	case a.RequestID != subject:
		return bad("signed for %q, not %q", a.RequestID, subject)
	case a.PayloadHash != payload:
		return bad("signed payload %s, %q has %s", a.PayloadHash, subject, payload)
	case !now.Before(a.Expiry):
		return bad("expired at %s", a.Expiry.UTC().Format(time.RFC3339))
	case a.Expiry.Sub(now) > st.MaxApprovalValidity:
		return bad("expires in %s, beyond the cluster's ceiling of %s", a.Expiry.Sub(now).Round(time.Second), st.MaxApprovalValidity)
	}
	dev, ok := st.Registry.Devices[a.DeviceID]
	if !ok {
		return bad("unknown device %q", a.DeviceID)
	}
	if dev.OperatorID != peer.ID {
		return apiErr(http.StatusForbidden, CodeApproverMatch, "approval",
			"api: approval: device %q belongs to %q, not to the certificate's operator %q", a.DeviceID, dev.OperatorID, peer.ID)
	}
	return nil
}

// ignoredErr maps why quorum.Count would ignore an answer to the API's
// codes: the caller's bytes are wrong (400) or this operator's answer does
// not count here (403).
func ignoredErr(why quorum.IgnoreReason) error {
	switch why {
	case quorum.ReasonDeviceRevoked, quorum.ReasonOperatorInactive, quorum.ReasonInitiator, quorum.ReasonRoleNotAllowed,
		quorum.ReasonBackendCannotApprove:
		return apiErr(http.StatusForbidden, CodeNotAllowed, "approval", "api: approval does not count: %s", why)
	case quorum.ReasonDuplicateOperator:
		return apiErr(http.StatusConflict, CodeAlreadyAnswered, "approval", "api: approval: %s", why)
	}
	return apiErr(http.StatusBadRequest, CodeInvalidApproval, "approval", "api: approval refused: %s", why)
}

// submitError maps the ledger's refusals of an operator command that
// toError does not know.
func submitError(err error) error {
	switch {
	case errors.Is(err, ledger.ErrApproval):
		return &apiError{status: http.StatusBadRequest, code: CodeInvalidApproval, field: "approval", msg: err.Error(), public: true}
	case errors.Is(err, ledger.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: err.Error(), public: true}
	case errors.Is(err, ledger.ErrReplayed), errors.Is(err, ledger.ErrQuorum):
		return &apiError{status: http.StatusConflict, code: CodeLedgerRefused, msg: err.Error(), public: true}
	}
	return err
}

// submit commits cmd as the principal through the node.
func (s *server) submit(r *http.Request, peer pki.Peer, cmd ledger.Command) (ledger.Outcome, error) {
	if s.cfg.Operators == nil {
		return ledger.Outcome{}, apiErr(http.StatusNotImplemented, CodeNotConfigured, "", "api: this node serves no operator writes")
	}
	out, err := s.cfg.Operators.Submit(r.Context(), peer.ID, cmd)
	return out, submitError(err)
}

func (s *server) answer(_ http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error) {
	var in answerBody
	if err := decodeStrict(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Approval == nil {
		return 0, nil, apiErr(http.StatusBadRequest, CodeInvalid, "approval", "api: approval is required (signed on your device)")
	}
	if in.Reason != "" && (in.Approval.Decision != quorum.Reject || len(in.Reason) > ledger.MaxReasonLen) {
		return 0, nil, apiErr(http.StatusBadRequest, CodeInvalid, "reason", "api: a reason goes with a rejection, at most %d bytes", ledger.MaxReasonLen)
	}
	id := r.PathValue("id")
	req, err := s.readRequest(r, id)
	if err != nil {
		return 0, nil, err
	}
	if req == nil {
		return 0, nil, apiErr(http.StatusNotFound, CodeNotFound, "", "api: no request %q", id)
	}
	if err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		return checkAnswer(st, peer, req, *in.Approval, s.cfg.Now())
	}); err != nil {
		return 0, nil, err
	}
	out, err := s.submit(r, peer, ledger.Approve{RequestID: id, Approval: *in.Approval, Reason: in.Reason})
	if err != nil {
		return 0, nil, err
	}
	if out.Index > 0 {
		// Render from a replica that has applied the answer.
		if err := s.cfg.Service.Read(r.Context(), out.Index, func(*ledger.State) error { return nil }); err != nil {
			return 0, nil, err
		}
	}
	return s.request(nil, r, peer, nil)
}

// AllowlistView is an allowlist entry; Active once its cooling-off passed
// (by the answering node's clock; each member counts it from its own first
// sight).
type AllowlistView struct {
	policy.AllowlistEntry
	Active bool `json:"active"`
}

// LockView is a lock; Active while it holds.
type LockView struct {
	policy.Lock
	Active bool `json:"active"`
}

// noQuery refuses query parameters other than allowed, and any given
// twice.
func noQuery(r *http.Request, allowed ...string) error {
	for k, v := range r.URL.Query() {
		if !slices.Contains(allowed, k) {
			return apiErr(http.StatusBadRequest, CodeInvalid, k, "api: unknown query parameter %q", k)
		}
		if len(v) != 1 {
			return apiErr(http.StatusBadRequest, CodeInvalid, k, "api: query parameter %q given %d times", k, len(v))
		}
	}
	return nil
}

func (s *server) allowlist(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	if err := noQuery(r, "wallet"); err != nil {
		return 0, nil, err
	}
	wallet, now := r.URL.Query().Get("wallet"), s.cfg.Now()
	out := struct {
		Allowlist []AllowlistView `json:"allowlist"`
	}{Allowlist: []AllowlistView{}}
	err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		for _, e := range st.Policy.Allowlist() {
			if wallet == "" || e.Wallet == wallet {
				out.Allowlist = append(out.Allowlist, AllowlistView{AllowlistEntry: e, Active: !now.Before(e.ActiveAt)})
			}
		}
		return nil
	})
	return http.StatusOK, out, err
}

func (s *server) locks(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	if err := noQuery(r); err != nil {
		return 0, nil, err
	}
	now := s.cfg.Now()
	out := struct {
		Locks []LockView `json:"locks"`
	}{Locks: []LockView{}}
	err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		for _, l := range st.Policy.Locks() {
			out.Locks = append(out.Locks, LockView{Lock: l, Active: l.Active(now)})
		}
		return nil
	})
	return http.StatusOK, out, err
}

// Pagination of GET /v1/audit.
const (
	DefaultAuditLimit = 500
	MaxAuditLimit     = 1000
)

// AuditPage is a page of the hash-chained audit log, oldest first;
// NextAfter is set when more follow (pass it as after).
type AuditPage struct {
	Events    []ledger.AuditEvent `json:"events"`
	NextAfter *uint64             `json:"next_after,omitempty"`
}

func (s *server) audit(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	if err := noQuery(r, "after", "limit"); err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	limit := DefaultAuditLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxAuditLimit {
			return 0, nil, apiErr(http.StatusBadRequest, CodeInvalid, "limit", "api: limit must be 1..%d", MaxAuditLimit)
		}
		limit = n
	}
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, nil, apiErr(http.StatusBadRequest, CodeInvalid, "after", "api: after must be an audit sequence number")
		}
		after = n
	}
	page := AuditPage{Events: []ledger.AuditEvent{}}
	err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		i, _ := slices.BinarySearchFunc(st.Audit, after+1, func(e ledger.AuditEvent, seq uint64) int { return cmp.Compare(e.Seq, seq) })
		end := min(len(st.Audit), i+limit)
		page.Events = append(page.Events, st.Audit[i:end]...)
		if end < len(st.Audit) && end > i {
			next := st.Audit[end-1].Seq
			page.NextAfter = &next
		}
		return nil
	})
	return http.StatusOK, page, err
}

func (s *server) heads(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	if err := noQuery(r); err != nil {
		return 0, nil, err
	}
	out := struct {
		Heads []ledger.Checkpoint `json:"heads"`
	}{Heads: []ledger.Checkpoint{}}
	err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		out.Heads = append(out.Heads, st.Checkpoints...)
		return nil
	})
	return http.StatusOK, out, err
}
