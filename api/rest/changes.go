package rest

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Governance changes collect their approvals in the ledger's staging area
// (ledger.ChangePropose, ChangeApprove): each operator signs the change's
// payload hash on their own device and posts it here; the node verifies it
// on its replica, commits it, and once the proposal is Ready submits the
// real command (policy.change, registry.change, wallet.create,
// wallet.reshare) with every approval, which the ledger verifies as any
// other. The server never signs.

// Change statuses (ChangeView.Status).
const (
	ChangeCollecting = "collecting"
	ChangeReady      = "ready"
	ChangeExpired    = "expired"
	ChangeApplied    = "applied"
)

// ChangeView is a governance change as operators review it.
type ChangeView struct {
	ID     string `json:"id"`
	Kind   string `json:"kind,omitempty"`
	Status string `json:"status"`
	// Description says in one line what the change does.
	Description string                 `json:"description,omitempty"`
	Change      *ledger.ProposedChange `json:"change,omitempty"`
	// PayloadHash is what an approver signs (with the change ID as the
	// statement's request ID).
	PayloadHash string         `json:"payload_hash,omitempty"`
	ClusterID   string         `json:"cluster_id"`
	ProposedBy  string         `json:"proposed_by,omitempty"`
	ProposedAt  *time.Time     `json:"proposed_at,omitempty"`
	ExpiresAt   *time.Time     `json:"expires_at,omitempty"`
	Required    int            `json:"required"`
	Roles       []string       `json:"roles"`
	Approvals   []ApprovalView `json:"approvals"`
	// AppliedIndex is the ledger index that applied the change.
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

// DescribeChange says in one line what c does.
func DescribeChange(c ledger.ProposedChange) string {
	scope := func(w string) string {
		if w == policy.AccountScope {
			return "the whole account"
		}
		return "wallet " + w
	}
	switch {
	case c.Policy != nil:
		p := c.Policy
		switch p.Kind {
		case policy.ChangeAllowlistAdd, policy.ChangeAllowlistRemove:
			verb, prep := "add", "to"
			if p.Kind == policy.ChangeAllowlistRemove {
				verb, prep = "remove", "from"
			}
			label := ""
			if p.Label != "" {
				label = fmt.Sprintf(" (%q)", p.Label)
			}
			return fmt.Sprintf("%s %s%s on %s/%s %s the allowlist of %s", verb, p.Address, label, p.Chain, p.Network, prep, scope(p.Wallet))
		case policy.ChangeLock:
			return fmt.Sprintf("lock %s (reason: %q)", scope(p.Wallet), p.Reason)
		case policy.ChangeUnlock:
			return fmt.Sprintf("unlock %s (after the rules' unlock delay)", scope(p.Wallet))
		}
	case c.Registry != nil:
		r := c.Registry
		switch r.Kind {
		case quorum.ChangeEnrollOperator:
			var devs []string
			for _, d := range r.Devices {
				devs = append(devs, d.ID+" ("+string(d.Kind)+")")
			}
			if r.Operator != nil {
				return fmt.Sprintf("enroll %s operator %s (%q) with roles %v and devices %s", r.Operator.Kind, r.Operator.ID, r.Operator.Name, r.Operator.Roles, strings.Join(devs, ", "))
			}
		case quorum.ChangeAddDevice:
			if len(r.Devices) == 1 {
				return fmt.Sprintf("add device %s (%s) to operator %s", r.Devices[0].ID, r.Devices[0].Kind, r.Devices[0].OperatorID)
			}
		case quorum.ChangeRevokeDevice:
			return "revoke device " + r.DeviceID
		case quorum.ChangeSuspendOperator:
			return "suspend operator " + r.OperatorID
		case quorum.ChangeReactivateOperator:
			return "reactivate operator " + r.OperatorID
		case quorum.ChangeSetRoles:
			return fmt.Sprintf("set the roles of operator %s to %v", r.OperatorID, r.Roles)
		case quorum.ChangeSetAdminQuorum:
			return fmt.Sprintf("set the admin quorum to %d", r.AdminQuorum)
		}
		return "registry change " + string(r.Kind)
	case c.WalletCreate != nil:
		w := c.WalletCreate
		return fmt.Sprintf("create wallet %s on %s/%s held by %v, threshold %d (any %d sign)", w.Wallet, w.Chain, w.Network, w.Committee, w.Threshold, w.Threshold+1)
	case c.WalletReshare != nil:
		w := c.WalletReshare
		return fmt.Sprintf("reshare wallet %s to %v, threshold %d (same key)", w.Wallet, w.NewCommittee, w.NewThreshold)
	case c.WalletRegister != nil:
		w := c.WalletRegister
		return fmt.Sprintf("register cold wallet %s on %s/%s: key %x, custodians %v, any %d sign; ceremony transcript sha256 %s",
			w.Wallet, w.Chain, w.Network, w.PubKey, w.Custodians, w.Threshold+1, w.Transcript)
	}
	return c.Kind()
}

// changeView renders a proposal.
func changeView(st *ledger.State, p *ledger.Proposal, now time.Time) ChangeView {
	c := p.Change
	v := ChangeView{ID: c.ID(), Kind: c.Kind(), Status: ChangeCollecting, Description: DescribeChange(c), Change: &c,
		PayloadHash: c.PayloadHash().String(), ClusterID: st.Registry.ClusterID, ProposedBy: p.ProposedBy,
		Required: p.Required, Roles: []string{}, Approvals: []ApprovalView{}}
	at, exp := p.ProposedAt.UTC(), p.ExpiresAt.UTC()
	v.ProposedAt, v.ExpiresAt = &at, &exp
	switch {
	case !now.Before(p.ExpiresAt): // an expired proposal is never ready
		v.Status = ChangeExpired
	case p.Ready:
		v.Status = ChangeReady
	}
	for _, r := range p.Roles {
		v.Roles = append(v.Roles, string(r))
	}
	for i, a := range p.Approvals {
		av := ApprovalView{Operator: st.Registry.Devices[a.DeviceID].OperatorID, Device: a.DeviceID, Decision: a.Decision.String()}
		if i < len(p.ApprovedAt) {
			t := p.ApprovedAt[i].UTC()
			av.At = &t
		}
		v.Approvals = append(v.Approvals, av)
	}
	return v
}

// readChange reads change id: the open proposal, or the index that
// applied it; on this replica, and when it knows neither, again at the
// leader's read index.
func (s *server) readChange(r *http.Request, id string, atLeast uint64) (*ledger.Proposal, uint64, error) {
	var p *ledger.Proposal
	var applied uint64
	read := func(st *ledger.State) error {
		p, applied = st.Proposals[id].Clone(), st.Changes[id]
		return nil
	}
	if err := s.cfg.Service.Read(r.Context(), atLeast, read); err != nil || p != nil || applied != 0 {
		return p, applied, err
	}
	idx, err := s.cfg.Service.ReadIndex(r.Context())
	if err != nil {
		return nil, 0, err
	}
	return p, applied, s.cfg.Service.Read(r.Context(), idx, read)
}

// viewChange answers for change id as of index atLeast.
func (s *server) viewChange(r *http.Request, id string, atLeast uint64) (ChangeView, error) {
	p, applied, err := s.readChange(r, id, atLeast)
	if err != nil {
		return ChangeView{}, err
	}
	var v ChangeView
	err = s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		switch {
		case p != nil:
			v = changeView(st, p, s.cfg.Now())
		case applied != 0:
			v = ChangeView{ID: id, Status: ChangeApplied, ClusterID: st.Registry.ClusterID, AppliedIndex: applied, Roles: []string{}, Approvals: []ApprovalView{}}
		default:
			return apiErr(http.StatusNotFound, CodeNotFound, "", "api: no change %q", id)
		}
		return nil
	})
	return v, err
}

func (s *server) changes(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	if err := noQuery(r, "status"); err != nil {
		return 0, nil, err
	}
	status := r.URL.Query().Get("status")
	if status != "" && !slices.Contains([]string{ChangeCollecting, ChangeReady, ChangeExpired}, status) {
		return 0, nil, apiErr(http.StatusBadRequest, CodeInvalid, "status", "api: status must be collecting, ready or expired")
	}
	out := struct {
		Changes []ChangeView `json:"changes"`
	}{Changes: []ChangeView{}}
	err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		for _, p := range st.Proposals {
			if v := changeView(st, p, s.cfg.Now()); status == "" || v.Status == status {
				out.Changes = append(out.Changes, v)
			}
		}
		return nil
	})
	slices.SortFunc(out.Changes, func(a, b ChangeView) int {
		if c := a.ProposedAt.Compare(*b.ProposedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return http.StatusOK, out, err
}

func (s *server) change(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	v, err := s.viewChange(r, r.PathValue("id"), 0)
	return http.StatusOK, v, err
}

// proposeBody is POST /v1/changes: the change and the proposer's approval
// of it, signed on their device.
type proposeBody struct {
	Change   *ledger.ProposedChange `json:"change"`
	Approval *quorum.Approval       `json:"approval"`
}

// checkProposed checks a proposed change's content on the replica as far
// as the API can name the field at fault; the ledger's dry run of the real
// command checks the rest.
func checkProposed(st *ledger.State, c ledger.ProposedChange) error {
	n := 0
	for _, set := range []bool{c.Policy != nil, c.Registry != nil, c.WalletCreate != nil, c.WalletReshare != nil, c.WalletRegister != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return apiErr(http.StatusBadRequest, CodeInvalid, "change", "api: a change names exactly one of policy, registry, wallet_create, wallet_reshare, wallet_register")
	}
	if !validID(c.ID()) {
		return apiErr(http.StatusBadRequest, CodeInvalid, "change", "api: the change id must be 1..%d letters, digits and . _ : @ -", maxID)
	}
	if p := c.Policy; p != nil && (p.Kind == policy.ChangeAllowlistAdd || p.Kind == policy.ChangeAllowlistRemove) {
		if p.Wallet != policy.AccountScope {
			w := st.Wallets[p.Wallet]
			if w == nil {
				return apiErr(http.StatusBadRequest, CodeUnknownWallet, "wallet", "api: no wallet %q", p.Wallet)
			}
			if w.Chain != p.Chain || w.Network != p.Network {
				return apiErr(http.StatusBadRequest, CodeInvalid, "chain", "api: wallet %q is on %s/%s, not %s/%s", p.Wallet, w.Chain, w.Network, p.Chain, p.Network)
			}
		}
		if err := canonicalAddress(p.Chain, p.Network, p.Address); err != nil {
			var e *apiError
			if errors.As(err, &e) {
				e.field = "address"
			}
			return err
		}
	}
	return nil
}

func (s *server) propose(_ http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error) {
	var in proposeBody
	if err := decodeStrict(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Change == nil || in.Approval == nil {
		return 0, nil, apiErr(http.StatusBadRequest, CodeInvalid, "change", "api: change and approval are required")
	}
	c, a := *in.Change, *in.Approval
	if err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		if err := checkProposed(st, c); err != nil {
			return err
		}
		if err := checkSigner(st, peer, a, c.ID(), c.PayloadHash(), s.cfg.Now()); err != nil {
			return err
		}
		if a.Decision != quorum.Approve {
			return apiErr(http.StatusBadRequest, CodeInvalidApproval, "approval", "api: a proposal carries an approval, not a %s", a.Decision)
		}
		if err := counts(st, c, a, s.cfg.Now()); err != nil {
			return err
		}
		if st.Changes[c.ID()] != 0 {
			return apiErr(http.StatusConflict, CodeLedgerRefused, "change", "api: change %q was applied at index %d; change IDs are single-use", c.ID(), st.Changes[c.ID()])
		}
		if p := st.Proposals[c.ID()]; p != nil && s.cfg.Now().Before(p.ExpiresAt) {
			return apiErr(http.StatusConflict, CodeConflict, "change", "api: change %q is already proposed; approve it (POST %s/%s/approvals)", c.ID(), PathChanges, c.ID())
		}
		return nil
	}); err != nil {
		return 0, nil, err
	}
	out, err := s.submit(r, peer, ledger.ChangePropose{Change: c, Approval: a})
	if err != nil {
		return 0, nil, err
	}
	v, err := s.complete(r, peer, c.ID(), out.Index)
	return http.StatusCreated, v, err
}

// complete submits change id's real command when its proposal is Ready as
// of index idx, and answers the change as it then is.
func (s *server) complete(r *http.Request, peer pki.Peer, id string, idx uint64) (ChangeView, error) {
	p, _, err := s.readChange(r, id, idx)
	if err != nil {
		return ChangeView{}, err
	}
	if p != nil && p.Ready {
		out, err := s.submit(r, peer, p.Change.Command(p.Approvals))
		if err != nil {
			return ChangeView{}, fmt.Errorf("api: change %q has its approvals but the ledger refused it: %w", id, err)
		}
		idx = out.Index
	}
	return s.viewChange(r, id, idx)
}

// counts checks that a's operator may approve c: a role that counts, not
// the change's target, active (quorum.Count's checks of this one approval).
func counts(st *ledger.State, c ledger.ProposedChange, a quorum.Approval, now time.Time) error {
	req, target := c.Requirement(st.ActivePolicy(), st.Registry)
	tally := quorum.Count(st.Registry, quorum.Subject{RequestID: c.ID(), PayloadHash: c.PayloadHash(), Initiator: target},
		quorum.Requirement{Required: 1, Roles: req.Roles}, []quorum.Approval{a}, now)
	if len(tally.Ignored) > 0 {
		return ignoredErr(tally.Ignored[0].Reason)
	}
	return nil
}

type approveChangeBody struct {
	Approval *quorum.Approval `json:"approval"`
}

func (s *server) approveChange(_ http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error) {
	var in approveChangeBody
	if err := decodeStrict(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Approval == nil {
		return 0, nil, apiErr(http.StatusBadRequest, CodeInvalid, "approval", "api: approval is required (signed on your device)")
	}
	id, a := r.PathValue("id"), *in.Approval
	p, applied, err := s.readChange(r, id, 0)
	if err != nil {
		return 0, nil, err
	}
	switch {
	case p == nil && applied != 0:
		return 0, nil, apiErr(http.StatusConflict, CodeLedgerRefused, "", "api: change %q was applied at index %d", id, applied)
	case p == nil:
		return 0, nil, apiErr(http.StatusNotFound, CodeNotFound, "", "api: no change %q", id)
	}
	again := false
	if err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		now := s.cfg.Now()
		if err := checkSigner(st, peer, a, id, p.Change.PayloadHash(), now); err != nil {
			return err
		}
		if a.Decision != quorum.Approve {
			return apiErr(http.StatusBadRequest, CodeInvalidApproval, "approval", "api: a change collects approvals, not a %s", a.Decision)
		}
		if !now.Before(p.ExpiresAt) {
			return apiErr(http.StatusConflict, CodeLedgerRefused, "", "api: change %q expired at %s; propose it again", id, p.ExpiresAt.UTC().Format(time.RFC3339))
		}
		if slices.Contains(p.Operators(st.Registry), peer.ID) {
			if p.Ready {
				again = true // approved and ready: complete it
				return nil
			}
			return apiErr(http.StatusConflict, CodeAlreadyAnswered, "approval", "api: operator %q already approved change %q", peer.ID, id)
		}
		return counts(st, p.Change, a, now)
	}); err != nil {
		return 0, nil, err
	}
	var idx uint64
	if !again {
		out, err := s.submit(r, peer, ledger.ChangeApprove{ID: id, Approval: a})
		if err != nil {
			return 0, nil, err
		}
		idx = out.Index
	}
	v, err := s.complete(r, peer, id, idx)
	return http.StatusOK, v, err
}
