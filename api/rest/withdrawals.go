package rest

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// createBody is the body of POST /v1/withdrawals.
type createBody struct {
	ID     string `json:"id"`
	Wallet string `json:"wallet"`
	Asset  string `json:"asset"`
	To     string `json:"to"`
	// Amount is a decimal string in whole units of the asset ("1.5").
	Amount    string     `json:"amount"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Initiation is the principal's signed quorum.Initiate statement over
	// policy.Withdrawal.IntentHash(id) (docs/api.md).
	Initiation *quorum.Approval `json:"initiation"`
	// Note is optional text for the operators (policy.ValidNote), signed
	// with the intent.
	Note string `json:"note,omitempty"`
}

// maxID bounds a withdrawal ID.
const maxID = 128

// validID: 1..maxID of letters, digits and . _ : @ - (printable, what an
// approval statement carries).
func validID(s string) bool {
	if s == "" || len(s) > maxID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:@-", c) >= 0) {
			return false
		}
	}
	return true
}

// decodeStrict reads exactly one JSON value into v, refusing unknown
// fields; a failure is CodeMalformed naming the field when known.
func decodeStrict(b []byte, v any) error {
	if err := checkDepth(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		field := ""
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field = te.Field
		} else if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			field = strings.Trim(f, `"`)
		}
		return apiErr(http.StatusBadRequest, CodeMalformed, field, "api: malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return apiErr(http.StatusBadRequest, CodeMalformed, "", "api: malformed JSON: data after the value")
	}
	return nil
}

// amountError maps package amount's errors to the API's codes.
func amountError(err error) error {
	code := CodeAmountMalformed
	switch {
	case errors.Is(err, amount.ErrNegative):
		code = CodeAmountNegative
	case errors.Is(err, amount.ErrTooPrecise):
		code = CodeAmountTooPrecise
	case errors.Is(err, amount.ErrOverflow):
		code = CodeAmountTooLarge
	}
	return apiErr(http.StatusBadRequest, code, "amount", "api: amount: %v", err)
}

// canonicalAddress checks to as a destination of a wallet on chain/network
// and requires its canonical spelling (what the initiator signs and the
// ledger stores).
func canonicalAddress(chain, network, to string) error {
	switch chain {
	case "eth":
		a, err := eth.ParseAddress(to)
		if err != nil {
			return apiErr(http.StatusBadRequest, CodeInvalidAddress, "to", "api: to: %v", err)
		}
		if a.Hex() != to {
			return apiErr(http.StatusBadRequest, CodeAddressCase, "to", "api: to: %s is not in its EIP-55 form %s", to, a.Hex())
		}
	case "btc":
		net, err := btc.Network(network)
		if err != nil {
			return nil // a network name of this cluster's own: the leader checks
		}
		a, err := btc.ParseAddress(to, net)
		if err != nil {
			return apiErr(http.StatusBadRequest, CodeInvalidAddress, "to", "api: to: %v", err)
		}
		if a.EncodeAddress() != to {
			return apiErr(http.StatusBadRequest, CodeAddressCase, "to", "api: to: %s is not in its canonical form %s", to, a.EncodeAddress())
		}
	}
	return nil
}

// feeAsset is the asset a chain's fees are paid in.
func feeAsset(chain string) string {
	switch chain {
	case "btc":
		return "BTC"
	case "eth":
		return "ETH"
	}
	return ""
}

// checkCreate checks a create against this node's replica: the wallet,
// the asset and its decimals, the destination, the initiation's signer
// and statement. It returns the withdrawal for the Service and the stored
// request of the same ID, if any.
func checkCreate(st *ledger.State, peer pki.Peer, in createBody) (Withdrawal, *ledger.Request, error) {
	var w Withdrawal
	lw := st.Wallets[in.Wallet]
	if lw == nil || !lw.Active() {
		return w, nil, apiErr(http.StatusBadRequest, CodeUnknownWallet, "wallet", "api: no active wallet %q", in.Wallet)
	}
	asset, ok := st.ActivePolicy().Assets[in.Asset]
	if !ok || (lw.Chain == "btc" && in.Asset != "BTC") || (lw.Chain == "eth" && in.Asset == "BTC") {
		return w, nil, apiErr(http.StatusBadRequest, CodeUnknownAsset, "asset", "api: asset %q is not an asset of %s wallet %q", in.Asset, lw.Chain, in.Wallet)
	}
	amt, err := amount.ParseUnits(in.Amount, asset.Decimals)
	if err != nil {
		return w, nil, amountError(err)
	}
	if amt.Sign() == 0 {
		return w, nil, apiErr(http.StatusBadRequest, CodeAmountZero, "amount", "api: amount must be positive")
	}
	if err := canonicalAddress(lw.Chain, lw.Network, in.To); err != nil {
		return w, nil, err
	}
	a := *in.Initiation
	dev, ok := st.Registry.Devices[a.DeviceID]
	if !ok {
		return w, nil, apiErr(http.StatusBadRequest, CodeInvalidInitiation, "initiation", "api: initiation: unknown device %q", a.DeviceID)
	}
	if op, ok := st.Registry.Operators[dev.OperatorID]; !ok || op.ID != peer.ID || op.Kind != quorum.KindBackend {
		return w, nil, apiErr(http.StatusForbidden, CodeInitiatorMismatch, "initiation",
			"api: initiation: device %q belongs to %q, not to the backend principal %q", a.DeviceID, dev.OperatorID, peer.ID)
	}
	intent := policy.Withdrawal{Wallet: in.Wallet, Asset: in.Asset, To: in.To, Amount: amt, Note: in.Note}.IntentHash(in.ID)
	switch {
	case a.Decision != quorum.Initiate:
		return w, nil, apiErr(http.StatusBadRequest, CodeInvalidInitiation, "initiation", "api: initiation: decision %s, want initiate", a.Decision)
	case a.RequestID != in.ID:
		return w, nil, apiErr(http.StatusBadRequest, CodeInvalidInitiation, "initiation", "api: initiation: signed for request %q, not %q", a.RequestID, in.ID)
	case a.PayloadHash != intent:
		return w, nil, apiErr(http.StatusBadRequest, CodeInvalidInitiation, "initiation",
			"api: initiation: signed another withdrawal (intent %s, this body's %s)", a.PayloadHash, intent)
	}
	w = Withdrawal{ID: in.ID, Wallet: in.Wallet, Asset: in.Asset, To: in.To, Amount: amt, Initiation: a, Note: in.Note}
	if in.ExpiresAt != nil {
		w.ExpiresAt = in.ExpiresAt.UTC()
	}
	return w, st.Requests[in.ID].Clone(), nil
}

// difference names the first field in which the stored request differs
// from w ("" when it asks for the same withdrawal). The initiation is
// compared by its signer, not its bytes: a retry may carry a fresh
// signature over the same intent.
func difference(stored *ledger.Request, w Withdrawal, expiresGiven bool) string {
	switch {
	case stored.Wallet != w.Wallet:
		return "wallet"
	case stored.Asset != w.Asset:
		return "asset"
	case stored.To != w.To:
		return "to"
	case stored.Amount.Cmp(w.Amount) != 0:
		return "amount"
	case stored.Note != w.Note:
		return "note"
	case expiresGiven && !stored.ExpiresAt.Equal(w.ExpiresAt):
		return "expires_at"
	case stored.Initiation == nil || stored.Initiation.DeviceID != w.Initiation.DeviceID:
		return "initiation"
	}
	return ""
}

// parseCreate decodes and checks a create's body and Idempotency-Key
// header (the values given: nil when absent) on their own, before the
// ledger is read: strict JSON, the id, the required fields, the note, the
// expiry in the future of now.
func parseCreate(body []byte, key []string, now time.Time) (createBody, error) {
	var in createBody
	if err := decodeStrict(body, &in); err != nil {
		return in, err
	}
	if !validID(in.ID) {
		return in, apiErr(http.StatusBadRequest, CodeInvalid, "id", "api: id must be 1..%d letters, digits and . _ : @ -", maxID)
	}
	if key != nil && (len(key) != 1 || key[0] != in.ID) {
		return in, apiErr(http.StatusBadRequest, CodeIdempotencyKey, "Idempotency-Key", "api: the Idempotency-Key header must equal the body's id %q", in.ID)
	}
	for _, f := range []struct{ name, v string }{{"wallet", in.Wallet}, {"asset", in.Asset}, {"to", in.To}, {"amount", in.Amount}} {
		if f.v == "" {
			return in, apiErr(http.StatusBadRequest, CodeInvalid, f.name, "api: %s is required", f.name)
		}
	}
	if in.Initiation == nil {
		return in, apiErr(http.StatusBadRequest, CodeInvalid, "initiation", "api: initiation is required (the principal's signed initiate statement)")
	}
	if err := policy.ValidNote(in.Note); err != nil {
		return in, apiErr(http.StatusBadRequest, CodeInvalid, "note", "api: %v", err)
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(now) {
		return in, apiErr(http.StatusBadRequest, CodeInvalid, "expires_at", "api: expires_at %s is not in the future", in.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return in, nil
}

func (s *server) create(_ http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error) {
	now := s.cfg.Now()
	in, err := parseCreate(body, r.Header[http.CanonicalHeaderKey("Idempotency-Key")], now)
	if err != nil {
		return 0, nil, err
	}
	ctx := r.Context()
	var w Withdrawal
	var stored *ledger.Request
	if err := s.cfg.Service.Read(ctx, 0, func(st *ledger.State) error {
		var err error
		w, stored, err = checkCreate(st, peer, in)
		return err
	}); err != nil {
		return 0, nil, err
	}
	if stored != nil {
		return s.repeat(r, stored, w, in.ExpiresAt != nil)
	}
	if w.ExpiresAt.IsZero() {
		w.ExpiresAt = now.Add(DefaultExpiry).UTC().Truncate(time.Second)
	}
	res, existing, err := s.cfg.Service.CreateWithdrawal(ctx, peer.ID, w)
	if errors.Is(err, ledger.ErrConflict) {
		// Created meanwhile (a concurrent duplicate, or this replica was
		// behind): compare with what the leader stored.
		if stored, rerr := s.readRequest(r, w.ID); rerr == nil && stored != nil {
			return s.repeat(r, stored, w, in.ExpiresAt != nil)
		}
	}
	if err != nil {
		return 0, nil, err
	}
	if existing {
		return s.repeat(r, res, w, in.ExpiresAt != nil)
	}
	v, err := s.view(r, res, false)
	return http.StatusCreated, v, err
}

// repeat answers a create whose ID the ledger holds: 200 with the stored
// withdrawal when it is the same one, 409 naming the first difference.
func (s *server) repeat(r *http.Request, stored *ledger.Request, w Withdrawal, expiresGiven bool) (int, any, error) {
	if f := difference(stored, w, expiresGiven); f != "" {
		return 0, nil, apiErr(http.StatusConflict, CodeConflict, f, "api: withdrawal %q exists with another %s", w.ID, f)
	}
	v, err := s.view(r, stored, false)
	return http.StatusOK, v, err
}

// readRequest reads request id from this node's replica; when it has none,
// again at the leader's read index (a write acknowledged anywhere is
// found).
func (s *server) readRequest(r *http.Request, id string) (*ledger.Request, error) {
	var out *ledger.Request
	read := func(st *ledger.State) error { out = st.Requests[id].Clone(); return nil }
	if err := s.cfg.Service.Read(r.Context(), 0, read); err != nil || out != nil {
		return out, err
	}
	idx, err := s.cfg.Service.ReadIndex(r.Context())
	if err != nil {
		return nil, err
	}
	return out, s.cfg.Service.Read(r.Context(), idx, read)
}

func (s *server) get(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	id := r.PathValue("id")
	req, err := s.readRequest(r, id)
	if err != nil {
		return 0, nil, err
	}
	if req == nil {
		return 0, nil, apiErr(http.StatusNotFound, CodeNotFound, "", "api: no withdrawal %q", id)
	}
	v, err := s.view(r, req, true)
	return http.StatusOK, v, err
}

// Pagination of GET /v1/withdrawals.
const (
	DefaultLimit = 50
	MaxLimit     = 100
)

// listResponse is a page of withdrawals, oldest first; NextCursor is set
// when more follow.
type listResponse struct {
	Withdrawals []WithdrawalView `json:"withdrawals"`
	NextCursor  string           `json:"next_cursor,omitempty"`
}

// cursor is the position after a withdrawal in the list's order (ledger
// index of its creation, then ID); opaque to clients.
func encodeCursor(r *ledger.Request) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1." + strconv.FormatUint(r.CreatedIdx, 10) + "." + r.ID))
}

func decodeCursor(s string) (uint64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		parts := strings.SplitN(string(b), ".", 3)
		if len(parts) == 3 && parts[0] == "v1" {
			idx, err := strconv.ParseUint(parts[1], 10, 64)
			if err == nil && validID(parts[2]) {
				return idx, parts[2], nil
			}
		}
	}
	return 0, "", apiErr(http.StatusBadRequest, CodeInvalid, "cursor", "api: cursor is not one this API returned")
}

// listQuery is the parsed query of GET /v1/withdrawals.
type listQuery struct {
	status, wallet string
	limit          int
	// afterIdx, afterID: the cursor's position (afterID "" without one).
	afterIdx uint64
	afterID  string
}

// parseListQuery checks the list's query string: only status, wallet,
// cursor and limit, each at most once, each valid.
func parseListQuery(raw string) (listQuery, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return listQuery{}, apiErr(http.StatusBadRequest, CodeInvalid, "", "api: query string: %v", err)
	}
	for k, v := range q {
		if !slices.Contains([]string{"status", "wallet", "cursor", "limit"}, k) {
			return listQuery{}, apiErr(http.StatusBadRequest, CodeInvalid, k, "api: unknown query parameter %q", k)
		}
		if len(v) != 1 {
			return listQuery{}, apiErr(http.StatusBadRequest, CodeInvalid, k, "api: query parameter %q given %d times", k, len(v))
		}
	}
	out := listQuery{limit: DefaultLimit, status: q.Get("status"), wallet: q.Get("wallet")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return listQuery{}, apiErr(http.StatusBadRequest, CodeInvalid, "limit", "api: limit must be 1..%d", MaxLimit)
		}
		out.limit = n
	}
	if out.status != "" && !slices.Contains(Statuses(), out.status) {
		return listQuery{}, apiErr(http.StatusBadRequest, CodeInvalid, "status", "api: unknown status %q", out.status)
	}
	if c := q.Get("cursor"); c != "" {
		if out.afterIdx, out.afterID, err = decodeCursor(c); err != nil {
			return listQuery{}, err
		}
	}
	return out, nil
}

func (s *server) list(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	q, err := parseListQuery(r.URL.RawQuery)
	if err != nil {
		return 0, nil, err
	}
	status, wallet, limit, afterIdx, afterID := q.status, q.wallet, q.limit, q.afterIdx, q.afterID
	var page []*ledger.Request
	more := false
	if err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		all := make([]*ledger.Request, 0, len(st.Requests))
		for _, req := range st.Requests {
			if (wallet != "" && req.Wallet != wallet) || (status != "" && APIStatus(req) != status) {
				continue
			}
			if afterID != "" && (req.CreatedIdx < afterIdx || req.CreatedIdx == afterIdx && req.ID <= afterID) {
				continue
			}
			all = append(all, req)
		}
		slices.SortFunc(all, func(a, b *ledger.Request) int {
			if a.CreatedIdx != b.CreatedIdx {
				return cmp.Compare(a.CreatedIdx, b.CreatedIdx)
			}
			return strings.Compare(a.ID, b.ID)
		})
		if len(all) > limit {
			all, more = all[:limit], true
		}
		for _, req := range all {
			page = append(page, req.Clone())
		}
		return nil
	}); err != nil {
		return 0, nil, err
	}
	out := listResponse{Withdrawals: []WithdrawalView{}}
	for _, req := range page {
		v, err := s.view(r, req, false)
		if err != nil {
			return 0, nil, err
		}
		out.Withdrawals = append(out.Withdrawals, *v)
	}
	if more {
		out.NextCursor = encodeCursor(page[len(page)-1])
	}
	return http.StatusOK, out, nil
}

// Statuses are the API's withdrawal statuses (docs/api.md).
func Statuses() []string {
	return []string{"denied", "pending_approval", "approved", "awaiting_ceremony", "signing", "signed", "broadcast",
		"confirmed", "rejected", "expired", "failed", "reverted", "dropped", "replaced"}
}

// APIStatus maps a request's ledger status to the API's state machine:
// a create policy denied is "denied", an operator's rejection "rejected";
// an approved request on the cold route, and an exported one, wait for the
// offline ceremony; a claimed one is signing; an imported one (signed
// offline) is signed.
func APIStatus(r *ledger.Request) string {
	switch r.Status {
	case ledger.StatusAwaitingApprovals:
		return "pending_approval"
	case ledger.StatusApproved:
		if r.Decision.Route == policy.RouteCold {
			return "awaiting_ceremony"
		}
		return "approved"
	case ledger.StatusExported:
		return "awaiting_ceremony"
	case ledger.StatusClaimed:
		return "signing"
	case ledger.StatusSigned, ledger.StatusImported:
		return "signed"
	case ledger.StatusRejected:
		if r.Decision.Reason == policy.ReasonRejected {
			return "rejected"
		}
		return "denied"
	}
	return string(r.Status) // failed, expired, broadcast, confirmed, reverted, dropped, replaced
}

// WithdrawalView is a withdrawal as the API shows it.
type WithdrawalView struct {
	ID      string `json:"id"`
	Wallet  string `json:"wallet"`
	Chain   string `json:"chain"`
	Network string `json:"network"`
	Asset   string `json:"asset"`
	To      string `json:"to"`
	// Amount is in whole units of the asset; AmountBase in base units.
	Amount       string        `json:"amount"`
	AmountBase   string        `json:"amount_base"`
	Status       string        `json:"status"`
	LedgerStatus string        `json:"ledger_status"`
	Initiator    string        `json:"initiator"`
	CreatedAt    time.Time     `json:"created_at"`
	ExpiresAt    time.Time     `json:"expires_at"`
	PayloadHash  string        `json:"payload_hash"`
	Policy       PolicyView    `json:"policy"`
	Approvals    ApprovalsView `json:"approvals"`
	FeeCap       FeeView       `json:"fee_cap"`
	Nonce        *uint64       `json:"nonce,omitempty"`
	Signed       *SignedView   `json:"signed,omitempty"`
	OnChain      *OnChainView  `json:"on_chain,omitempty"`
	// Failure is the last signing session's error (status failed).
	Failure string `json:"failure,omitempty"`
	// Note is the backend's note, as signed with the intent.
	Note string `json:"note,omitempty"`
	// Description is what the withdrawal does, in one line for people:
	// the text operators see before they sign (their tools add the
	// approvals so far and the status).
	Description string `json:"description"`
}

// PolicyView is the policy decision recorded with the withdrawal.
type PolicyView struct {
	Rule    string `json:"rule,omitempty"`
	Class   string `json:"class,omitempty"`
	Route   string `json:"route,omitempty"`
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// ApprovalsView are the approvals required and given.
type ApprovalsView struct {
	Required  int            `json:"required"`
	Collected int            `json:"collected"`
	Roles     []string       `json:"roles"`
	By        []ApprovalView `json:"by"`
}

// ApprovalView is one operator's recorded answer.
type ApprovalView struct {
	Operator string `json:"operator"`
	Device   string `json:"device"`
	Decision string `json:"decision"`
	// At is the ledger time it was recorded (GET of one withdrawal only).
	At *time.Time `json:"at,omitempty"`
}

// FeeView is the most the transaction may pay in fees.
type FeeView struct {
	Asset      string `json:"asset"`
	Amount     string `json:"amount"`
	AmountBase string `json:"amount_base"`
}

// SignedView is the signed transaction.
type SignedView struct {
	RawTx  string `json:"raw_tx"`
	TxHash string `json:"tx_hash"`
}

// OnChainView is what the leader's node reported about the transaction,
// and which nodes saw the recorded status (and block) on their own chain
// nodes: Witnessed once a checkpoint quorum of the node set did (the
// status is then the node quorum's word, not the leader's alone).
type OnChainView struct {
	TxHash        string       `json:"tx_hash"`
	BroadcastAt   time.Time    `json:"broadcast_at"`
	Block         uint64       `json:"block,omitempty"`
	Confirmations uint64       `json:"confirmations,omitempty"`
	Detail        string       `json:"detail,omitempty"`
	StatusAt      *time.Time   `json:"status_at,omitempty"`
	Witnessed     bool         `json:"witnessed"`
	WitnessedBy   []pki.NodeID `json:"witnessed_by,omitempty"`
}

// view renders req with this node's replica's rules (decimals) and
// registry (who approved); withTimes adds when each approval was recorded
// (from the audit log).
func (s *server) view(r *http.Request, req *ledger.Request, withTimes bool) (*WithdrawalView, error) {
	var v *WithdrawalView
	err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		v = render(st, req, withTimes)
		return nil
	})
	return v, err
}

func render(st *ledger.State, req *ledger.Request, withTimes bool) *WithdrawalView {
	format := func(asset string, a amount.Amount) string {
		if d, ok := st.ActivePolicy().Assets[asset]; ok {
			return a.Format(d.Decimals)
		}
		return a.String()
	}
	d := req.Decision
	v := &WithdrawalView{
		ID: req.ID, Wallet: req.Wallet, Chain: req.Chain, Network: req.Network, Asset: req.Asset, To: req.To,
		Amount: format(req.Asset, req.Amount), AmountBase: req.Amount.String(),
		Status: APIStatus(req), LedgerStatus: string(req.Status), Initiator: req.Initiator,
		CreatedAt: req.CreatedAt.UTC(), ExpiresAt: req.ExpiresAt.UTC(), PayloadHash: req.PayloadHash.String(),
		Policy:    PolicyView{Rule: d.Rule, Class: string(d.Class), Route: string(d.Route), Allowed: d.Allowed, Reason: string(d.Reason), Detail: d.Detail},
		Approvals: ApprovalsView{Required: d.Required, Collected: d.Collected, Roles: []string{}, By: []ApprovalView{}},
		FeeCap:    FeeView{Asset: feeAsset(req.Chain), Amount: format(feeAsset(req.Chain), req.MaxFee), AmountBase: req.MaxFee.String()},
		Nonce:     req.Nonce,
		Note:      req.Note,
	}
	from, decimals := "", -1
	if w := st.Wallets[req.Wallet]; w != nil && len(w.PubKey) > 0 {
		from = walletView(w, w.PubKey).Address
	}
	if d, ok := st.ActivePolicy().Assets[req.Asset]; ok {
		decimals = d.Decimals
	}
	v.Description = summary(v, from, decimals)
	for _, role := range d.Roles {
		v.Approvals.Roles = append(v.Approvals.Roles, string(role))
	}
	if req.Status == ledger.StatusAwaitingApprovals {
		// The decision's count is the create's until the quorum or a
		// rejection decides; each answer recorded since counted when it
		// was recorded.
		v.Approvals.Collected = 0
		for _, a := range req.Approvals {
			if a.Decision == quorum.Approve {
				v.Approvals.Collected++
			}
		}
	}
	var times []time.Time
	if withTimes {
		for _, e := range st.Audit {
			if e.Kind == ledger.CmdApprove && e.Subject == req.ID {
				times = append(times, e.Time.UTC())
			}
		}
		if len(times) != len(req.Approvals) {
			times = nil // the audit log does not line up (trimmed): no times
		}
	}
	for i, a := range req.Approvals {
		av := ApprovalView{Operator: st.Registry.Devices[a.DeviceID].OperatorID, Device: a.DeviceID, Decision: a.Decision.String()}
		if times != nil {
			av.At = &times[i]
		}
		v.Approvals.By = append(v.Approvals.By, av)
	}
	if res := req.Result; res != nil {
		if len(res.Signed) > 0 {
			v.Signed = &SignedView{RawTx: "0x" + hex.EncodeToString(res.Signed), TxHash: res.TxHash}
		}
		if res.Error != "" && req.Status == ledger.StatusFailed {
			v.Failure = res.Error
		}
	}
	if oc := req.OnChain; oc != nil {
		v.OnChain = &OnChainView{TxHash: oc.TxHash, BroadcastAt: oc.BroadcastAt.UTC(), Block: oc.Block, Confirmations: oc.Confirmations, Detail: oc.Detail,
			Witnessed: oc.Witnessed, WitnessedBy: oc.WitnessedBy()}
		if !oc.StatusAt.IsZero() {
			t := oc.StatusAt.UTC()
			v.OnChain.StatusAt = &t
		}
	}
	return v
}
