package rest

// Cold requests through the operator API (docs/cold.md): export builds the
// signing bundle from this node's replica and commits cold.export with its
// hash; import checks the offline-signed transaction against the approved
// payload and the wallet's key and commits cold.import. The offline signer
// trusts none of this node's word (it verifies the bundle from the genesis
// hash the custodians pin).

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/custody-dev/custody/cold"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// ExportView is POST /v1/requests/{id}/export's answer: the bundle (its
// file form is cold.Bundle.Encode of it) and the hash cold.export recorded.
type ExportView struct {
	BundleHash string       `json:"bundle_hash"`
	Bundle     *cold.Bundle `json:"bundle"`
}

// importBody is POST /v1/requests/{id}/import: the hash of the bundle that
// was signed, what `custody cold sign` added to it, and the operator's
// signed authorization of importing exactly those bytes
// (ledger.ColdImportHash).
type importBody struct {
	BundleHash    string           `json:"bundle_hash"`
	Signed        *cold.Signed     `json:"signed"`
	Authorization *quorum.Approval `json:"authorization"`
}

// exportBody is POST /v1/requests/{id}/export: the operator's signed
// authorization of the export (ledger.ColdExportHash); not needed to fetch
// the bundle of a request exported already.
type exportBody struct {
	Authorization *quorum.Approval `json:"authorization"`
}

// checkAuthorization checks an operator's signed authorization of a cold
// step as the ledger will (checkSigner, then quorum.Count's reasons).
func checkAuthorization(st *ledger.State, peer pki.Peer, a *quorum.Approval, id string, h quorum.Hash, now time.Time) error {
	if a == nil {
		return apiErr(http.StatusBadRequest, CodeInvalid, "authorization", "api: the operator's signed authorization is required (custody cold export and import sign it with your device)")
	}
	if err := checkSigner(st, peer, *a, id, h, now); err != nil {
		return err
	}
	tally := quorum.Count(st.Registry, quorum.Subject{RequestID: id, PayloadHash: h},
		quorum.Requirement{Required: 1, Roles: []quorum.Role{quorum.RoleAdmin, quorum.RoleApprover}}, []quorum.Approval{*a}, now)
	if len(tally.Ignored) > 0 {
		return ignoredErr(tally.Ignored[0].Reason)
	}
	return nil
}

// coldWriter: export and import need an active operator with the admin or
// approver role.
func coldWriter(st *ledger.State, peer pki.Peer) error {
	op, ok := st.Registry.Operators[peer.ID]
	if !ok || op.Status != quorum.StatusActive || !op.HasRole(quorum.RoleAdmin, quorum.RoleApprover) {
		return apiErr(http.StatusForbidden, CodeForbidden, "", "api: cold export and import need an active admin or approver")
	}
	return nil
}

// coldRequest is request id for an operator who may export and import
// (coldWriter).
func coldRequest(st *ledger.State, peer pki.Peer, id string) (*ledger.Request, error) {
	if err := coldWriter(st, peer); err != nil {
		return nil, err
	}
	req := st.Requests[id]
	if req == nil {
		return nil, apiErr(http.StatusNotFound, CodeNotFound, "", "api: no request %q", id)
	}
	return req, nil
}

// coldBundle builds the bundle of cold request r from st: for an approved
// request, under the ledger's governance head now; for an exported one,
// again exactly as cold.export recorded it (the governance records its
// head covered, its time), with the node set's attestations so far.
func coldBundle(st *ledger.State, genesisFile []byte, r *ledger.Request) (*cold.Bundle, error) {
	exported := r.Export != nil
	if !exported && (r.Status != ledger.StatusApproved || r.Decision.Route != policy.RouteCold) {
		return nil, apiErr(http.StatusConflict, CodeLedgerRefused, "", "api: request %q is %s/%s: export needs an approved cold request", r.ID, r.Status, r.Decision.Route)
	}
	w := st.Wallets[r.Wallet]
	if w == nil || w.Cold == nil {
		return nil, apiErr(http.StatusConflict, CodeLedgerRefused, "", "api: wallet %q is not a registered cold wallet", r.Wallet)
	}
	records, head, at := st.Governance, st.GovernanceHead, st.Clock
	if head == "" {
		head = st.GenesisHash
	}
	if exported {
		if r.Export.GovernanceLen > len(st.Governance) {
			return nil, fmt.Errorf("api: request %q was exported under %d governance records, this replica holds %d", r.ID, r.Export.GovernanceLen, len(st.Governance))
		}
		records, head, at = st.Governance[:r.Export.GovernanceLen], r.Export.GovernanceHead, r.Export.ExportedAt
	}
	gov := make([]cold.Change, len(records))
	for i, g := range records {
		gov[i] = cold.Change{Type: g.Type, Time: g.Time, Payload: slices.Clone(g.Payload)}
	}
	cr := cold.Request{ID: r.ID, Withdrawal: r.Withdrawal, Payload: slices.Clone(r.Payload), PayloadHash: r.PayloadHash, Nonce: r.Nonce,
		Outpoints: slices.Clone(r.Outpoints), VSize: r.VSize, ExpiresAt: r.ExpiresAt, Initiation: r.Initiation, Initiator: r.Initiator,
		Approvals: slices.Clone(r.Approvals)}
	b, err := cold.Build(genesisFile, cold.WalletSpec(*w.Cold), gov, head, cr, at)
	if err != nil {
		return nil, apiErr(http.StatusConflict, CodeLedgerRefused, "", "api: %v", err)
	}
	if exported {
		if b.Hash() != r.BundleHash {
			return nil, fmt.Errorf("api: the bundle of %q rebuilt from this replica hashes to %s, cold.export recorded %s", r.ID, b.Hash(), r.BundleHash)
		}
		b.Attestations = slices.Clone(r.Export.Attestations)
	}
	return b, nil
}

// exportAttestPoll is how often coldExport looks for the node set's
// attestations of an export it recorded.
const exportAttestPoll = 100 * time.Millisecond

// coldExport records the export of an approved cold request (cold.export
// with the bundle's hash and the governance head it was built under),
// then waits until a checkpoint quorum of the node set attested it (each
// node from its own replica) and answers the bundle with those
// attestations. Exporting an exported request answers the same bundle: a
// caller whose first call timed out before the attestations arrived
// calls again.
func (s *server) coldExport(_ http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error) {
	var in exportBody
	if err := decodeStrict(body, &in); err != nil {
		return 0, nil, err
	}
	if s.cfg.Genesis == nil {
		return 0, nil, apiErr(http.StatusNotImplemented, CodeNotConfigured, "", "api: this node serves no cold export (no genesis file)")
	}
	id := r.PathValue("id")
	var b *cold.Bundle
	exported := false
	err := s.readLinearizable(r, func(st *ledger.State) error {
		req, err := coldRequest(st, peer, id)
		if err != nil {
			return err
		}
		exported = req.Export != nil
		if !exported {
			if err := checkAuthorization(st, peer, in.Authorization, id, ledger.ColdExportHash(id, req.PayloadHash), s.cfg.Now()); err != nil {
				return err
			}
		}
		b, err = coldBundle(st, s.cfg.Genesis, req)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	hash := b.Hash()
	if !exported {
		cmd := ledger.ColdExport{RequestID: id, BundleHash: hash, GovernanceHead: b.GovernanceHead, ExportedAt: b.ExportedAt, Authorization: in.Authorization}
		if _, err := s.submit(r, peer, cmd); err != nil {
			return 0, nil, coldSubmitError(err)
		}
	}
	atts, err := s.exportAttestations(r, id, hash)
	if err != nil {
		return 0, nil, err
	}
	b.Attestations = atts
	return http.StatusOK, ExportView{BundleHash: hash, Bundle: b}, nil
}

// exportAttestations waits (bounded by ExportAttestTimeout and the
// caller's context) until this node's replica records request id's export
// of bundle hash as attested by a checkpoint quorum, and returns the
// attestations; 503 with Retry-After when they do not arrive in time
// (the export stays recorded: export again to fetch the bundle).
func (s *server) exportAttestations(r *http.Request, id, hash string) ([]ledger.CheckpointSig, error) {
	wait := s.cfg.ExportAttestTimeout
	if wait <= 0 {
		wait = DefaultExportAttestTimeout
	}
	deadline := time.Now().Add(wait)
	for {
		var atts []ledger.CheckpointSig
		var have, need int
		err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
			req := st.Requests[id]
			if req == nil || req.Export == nil || req.BundleHash != hash {
				return nil // not applied on this replica yet
			}
			have, need = len(req.Export.Attestations), ledger.CheckpointQuorum(len(st.Nodes))
			if req.Export.Attested {
				atts = slices.Clone(req.Export.Attestations)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if atts != nil {
			return atts, nil
		}
		if time.Now().After(deadline) {
			return nil, &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, public: true,
				msg: fmt.Sprintf("api: the export of %q is recorded, but the node set has attested it %d times of the %d needed so far; export again to fetch the bundle", id, have, need)}
		}
		select {
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-time.After(exportAttestPoll):
		}
	}
}

func (s *server) coldImport(_ http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error) {
	var in importBody
	if err := decodeStrict(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Signed == nil || len(in.Signed.Tx) == 0 {
		return 0, nil, apiErr(http.StatusBadRequest, CodeInvalid, "signed", "api: the signed transaction is required (custody cold sign's output)")
	}
	id := r.PathValue("id")
	err := s.readLinearizable(r, func(st *ledger.State) error {
		req, err := coldRequest(st, peer, id)
		if err != nil {
			return err
		}
		if req.Status != ledger.StatusExported {
			return apiErr(http.StatusConflict, CodeLedgerRefused, "", "api: request %q is %s: import needs an exported request", id, req.Status)
		}
		if in.BundleHash != req.BundleHash {
			return apiErr(http.StatusBadRequest, CodeInvalid, "bundle_hash", "api: the bundle signed is %s, request %q was exported as %s", in.BundleHash, id, req.BundleHash)
		}
		w := st.Wallets[req.Wallet]
		if w == nil || w.Cold == nil {
			return apiErr(http.StatusConflict, CodeLedgerRefused, "", "api: wallet %q is not a registered cold wallet", req.Wallet)
		}
		if err := cold.CheckSigned(cold.WalletSpec(*w.Cold), req.Payload, req.PayloadHash, in.Signed.Tx, in.Signed.TxHash); err != nil {
			return apiErr(http.StatusBadRequest, CodeInvalid, "signed", "api: %v", err)
		}
		return checkAuthorization(st, peer, in.Authorization, id, ledger.ColdImportHash(id, req.BundleHash, in.Signed.Tx), s.cfg.Now())
	})
	if err != nil {
		return 0, nil, err
	}
	out, err := s.submit(r, peer, ledger.ColdImport{RequestID: id, Signed: slices.Clone(in.Signed.Tx), TxHash: in.Signed.TxHash, Authorization: in.Authorization})
	if err != nil {
		return 0, nil, coldSubmitError(err)
	}
	if out.Index > 0 {
		if err := s.cfg.Service.Read(r.Context(), out.Index, func(*ledger.State) error { return nil }); err != nil {
			return 0, nil, err
		}
	}
	return s.request(nil, r, peer, nil)
}

// readLinearizable runs fn on this node's replica once it has applied the
// leader's read index: export and import see every write acknowledged
// before them (an approval just recorded through another node).
func (s *server) readLinearizable(r *http.Request, fn func(*ledger.State) error) error {
	idx, err := s.cfg.Service.ReadIndex(r.Context())
	if err != nil {
		return err
	}
	return s.cfg.Service.Read(r.Context(), idx, fn)
}

// coldSubmitError maps the ledger's status refusals of cold.export and
// cold.import (a rejection, an expiry or a lock between the read and the
// commit) to 409.
func coldSubmitError(err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		return err
	}
	if errors.Is(err, ledger.ErrWrongStatus) || errors.Is(err, ledger.ErrConflict) || errors.Is(err, ledger.ErrLocked) || errors.Is(err, ledger.ErrPolicy) || errors.Is(err, ledger.ErrInvalid) {
		return &apiError{status: http.StatusConflict, code: CodeLedgerRefused, msg: fmt.Sprint(err), public: true}
	}
	return err
}
