package ledger

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// ColdExport marks an approved cold request as exported in a bundle. The
// exporter names the governance chain head it built the bundle under and
// the ledger refuses any other head than its own (a bundle missing a lock
// or a suspension never gets recorded); ExportedAt is the bundle's
// (informational) time, kept so the same bundle can be rebuilt.
//
// Authorization is an active admin's or approver's signed statement
// (ColdExportHash) that this request may be exported: export ends the
// window in which a rejection cancels, so no node may take that step on
// its own word.
type ColdExport struct {
	RequestID      string           `json:"request_id"`
	BundleHash     string           `json:"bundle_hash"`
	GovernanceHead string           `json:"governance_head"`
	ExportedAt     time.Time        `json:"exported_at"`
	Authorization  *quorum.Approval `json:"authorization,omitempty"`
}

// ColdExportHash is what an operator signs to authorize the export of
// request id (payload hash payload): a quorum.Statement with RequestID =
// id, decision approve and PayloadHash = this hash, SHA-256 of
// "custody/cold-export/v1" 0x00 and {request_id, payload_hash}. It is
// never the request's payload hash, so an authorization never counts as
// an approval of the withdrawal, nor an approval as an authorization.
func ColdExportHash(id string, payload quorum.Hash) quorum.Hash {
	return quorum.DomainHash("custody/cold-export/v1", struct {
		RequestID   string      `json:"request_id"`
		PayloadHash quorum.Hash `json:"payload_hash"`
	}{id, payload})
}

// ColdImportHash is what an operator signs to import the signed
// transaction signed (its bytes) for request id exported as bundle
// bundleHash: SHA-256 of "custody/cold-import/v1" 0x00 and {request_id,
// bundle_hash, signed_hash}.
func ColdImportHash(id, bundleHash string, signed []byte) quorum.Hash {
	sum := sha256.Sum256(signed)
	return quorum.DomainHash("custody/cold-import/v1", struct {
		RequestID  string `json:"request_id"`
		BundleHash string `json:"bundle_hash"`
		SignedHash string `json:"signed_hash"`
	}{id, bundleHash, hex.EncodeToString(sum[:])})
}

// operatorAuthorized checks one operator's signed authorization of a cold
// step: within the ceiling, for this cluster, the request and hash, by an
// active device of an active admin or approver, unexpired.
func (t *txn) operatorAuthorized(what, id string, h quorum.Hash, a *quorum.Approval) error {
	if a == nil {
		return fmt.Errorf("%w: %s of %q needs an active admin's or approver's signed authorization; none given", ErrQuorum, what, id)
	}
	if err := t.checkValidity([]quorum.Approval{*a}); err != nil {
		return err
	}
	tally := quorum.Count(t.registry(), quorum.Subject{RequestID: id, PayloadHash: h},
		quorum.Requirement{Required: 1, Roles: []quorum.Role{quorum.RoleAdmin, quorum.RoleApprover}}, []quorum.Approval{*a}, t.now)
	if err := tally.Err(); err != nil {
		return approvalErr(fmt.Errorf("%s of %q needs an active admin's or approver's signed authorization: %w", what, id, err))
	}
	return nil
}

// Type implements Command.
func (ColdExport) Type() string { return CmdColdExport }

func (p ColdExport) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if r.Status != StatusApproved || r.Decision.Route != policy.RouteCold {
		return applyOut{}, fmt.Errorf("%w: %q is %s/%s, export needs approved/cold", ErrWrongStatus, r.ID, r.Status, r.Decision.Route)
	}
	if w := t.wallet(r.Wallet); w == nil || w.Cold == nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q of %q has no cold key (a hot wallet's request routed cold is never signed)", ErrWrongStatus, r.Wallet, r.ID)
	}
	if len(p.BundleHash) != 64 {
		return applyOut{}, invalid("export needs the bundle hash (64 hex digits)")
	}
	if err := t.operatorAuthorized("the export", r.ID, ColdExportHash(r.ID, r.PayloadHash), p.Authorization); err != nil {
		return applyOut{}, err
	}
	if head := t.st.governanceHead(); p.GovernanceHead != head {
		return applyOut{}, fmt.Errorf("%w: the bundle of %q was built under governance head %s, this ledger's head is %s (a change was applied since, or the bundle leaves one out): export again",
			ErrConflict, r.ID, short(p.GovernanceHead), short(head))
	}
	d, err := t.recheck(r)
	if err != nil {
		return applyOut{}, err
	}
	if d.Route != policy.RouteCold {
		return applyOut{}, fmt.Errorf("%w: %q is routed %q under the rules in force; only cold requests are exported", ErrPolicy, r.ID, d.Route)
	}
	if err := t.allocated(r); err != nil {
		return applyOut{}, err
	}
	r.Decision = d
	r.Status, r.BundleHash, r.UpdatedIdx = StatusExported, p.BundleHash, t.index
	r.Export = &Export{GovernanceHead: p.GovernanceHead, GovernanceLen: len(t.st.Governance), ExportedAt: p.ExportedAt.UTC()}
	t.recordSpend(r)
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// Export is what the ledger recorded when a cold request was exported:
// the governance head (and how many governance records it covers) the
// bundle was built under, the bundle's time, and the nodes' attestations
// of the export (ExportHead), each made from the attesting node's own
// replica. Attested latches once a checkpoint quorum of the node set
// signed; only then is the bundle handed out, and only then is an import
// accepted.
type Export struct {
	GovernanceHead string          `json:"governance_head"`
	GovernanceLen  int             `json:"governance_len"`
	ExportedAt     time.Time       `json:"exported_at"`
	Attestations   []CheckpointSig `json:"attestations,omitempty"`
	Attested       bool            `json:"attested,omitempty"`
}

// ExportHead is the head nodes sign to attest r's export (genesis.ExportHead;
// zero when r was not exported).
func (r *Request) ExportHead(clusterID, genesisHash string) genesis.ExportHead {
	if r.Export == nil {
		return genesis.ExportHead{}
	}
	return genesis.ExportHead{ClusterID: clusterID, GenesisHash: genesisHash, RequestID: r.ID, PayloadHash: r.PayloadHash,
		GovernanceHead: r.Export.GovernanceHead, BundleHash: r.BundleHash}
}

// SignExport is node's attestation of h with its node key.
func SignExport(h genesis.ExportHead, node pki.NodeID, key crypto.Signer) (CheckpointSig, error) {
	sig, err := signNodeDigest(h.Digest(), node, key)
	if err != nil {
		return CheckpointSig{}, fmt.Errorf("ledger: attest the export of %q: %w", h.RequestID, err)
	}
	return sig, nil
}

// ColdAttest records one node's attestation of a request's export: the
// signature must verify over the export head as this node's own replica
// recorded it (ErrCheckpoint otherwise: one of the two diverged), by a
// member of the node set with its pinned key.
type ColdAttest struct {
	Request string        `json:"request"`
	Sig     CheckpointSig `json:"sig"`
}

// Type implements Command.
func (ColdAttest) Type() string { return CmdColdAttest }

func (p ColdAttest) apply(t *txn) (applyOut, error) {
	if err := t.needGenesis(); err != nil {
		return applyOut{}, err
	}
	r := t.request(p.Request)
	if r == nil || r.Export == nil {
		return applyOut{}, fmt.Errorf("%w: %q was not exported on this node", ErrCheckpoint, p.Request)
	}
	if r.Export.Attested {
		return applyOut{}, errCheckpointDone
	}
	nodes := t.nodeSet()
	h := r.ExportHead(t.registry().ClusterID, t.st.GenesisHash)
	if err := p.Sig.VerifyDigest(h.Digest(), nodes); err != nil {
		return applyOut{}, fmt.Errorf("%w: the export of %q under governance head %s: %w (a node that signed another head diverged from this one)",
			ErrCheckpoint, r.ID, short(h.GovernanceHead), err)
	}
	if slices.ContainsFunc(r.Export.Attestations, func(s CheckpointSig) bool { return s.Node == p.Sig.Node }) {
		return applyOut{}, nil
	}
	e := *r.Export
	e.Attestations = append(slices.Clone(e.Attestations), p.Sig)
	slices.SortFunc(e.Attestations, func(a, b CheckpointSig) int { return cmpNode(a.Node, b.Node) })
	valid := 0
	for _, s := range e.Attestations {
		if nodes[s.Node] != nil {
			valid++
		}
	}
	e.Attested = valid >= CheckpointQuorum(len(nodes))
	r.Export = &e
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// VerifyExport checks that a checkpoint quorum of nodes attested r's
// export.
func (r *Request) VerifyExport(clusterID, genesisHash string, nodes map[pki.NodeID]*Node) error {
	if r.Export == nil {
		return fmt.Errorf("%w: %q was not exported", ErrCheckpoint, r.ID)
	}
	h := r.ExportHead(clusterID, genesisHash)
	if err := pki.VerifyQuorum("the export of "+r.ID, h.Digest(), r.Export.Attestations, nodes); err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	return nil
}

// ColdImport records the offline-signed transaction, with an active admin's
// or approver's signed authorization (ColdImportHash over the request, the
// exported bundle's hash and the signed bytes). The node that serves the
// import checks the transaction is the approved payload signed by the
// wallet's key (cold.CheckSigned) before it submits; the ledger, which
// parses no transactions, checks who authorized it.
type ColdImport struct {
	RequestID     string           `json:"request_id"`
	Signed        []byte           `json:"signed"`
	TxHash        string           `json:"tx_hash,omitempty"`
	Authorization *quorum.Approval `json:"authorization,omitempty"`
}

// Type implements Command.
func (ColdImport) Type() string { return CmdColdImport }

func (p ColdImport) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if r.Status != StatusExported {
		return applyOut{}, fmt.Errorf("%w: %q is %s", ErrWrongStatus, r.ID, r.Status)
	}
	if r.Export == nil || !r.Export.Attested {
		return applyOut{}, fmt.Errorf("%w: the export of %q is not attested by the node set yet (the offline signer refuses such a bundle)", ErrWrongStatus, r.ID)
	}
	if len(p.Signed) == 0 {
		return applyOut{}, invalid("import needs the signed transaction")
	}
	if err := t.operatorAuthorized("the import", r.ID, ColdImportHash(r.ID, r.BundleHash, p.Signed), p.Authorization); err != nil {
		return applyOut{}, err
	}
	r.Result = &Result{Signed: slices.Clone(p.Signed), TxHash: p.TxHash, Index: t.index, At: t.now}
	r.Status, r.UpdatedIdx = StatusImported, t.index
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// GovernanceRecord is one governance command in State.Governance: its
// type, the ledger time it was applied at and its payload as logged.
type GovernanceRecord struct {
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	Payload []byte    `json:"payload"`
}

// governanceTypes are the commands State.Governance records: those that
// decide a withdrawal (who may approve, the rules, allowlist and locks,
// the cold wallets, the node set whose attestations the offline signer
// checks).
var governanceTypes = map[string]bool{CmdRegistryChange: true, CmdPolicyChange: true, CmdRulesSet: true, CmdWalletRegister: true, CmdNodeChange: true}

// governanceHead is the governance chain's head: the genesis hash until
// the first governance change.
func (s *State) governanceHead() string {
	if s.GovernanceHead == "" {
		return s.GenesisHash
	}
	return s.GovernanceHead
}

func (s *State) appendGovernance(typ string, at time.Time, payload []byte) {
	prev := s.GovernanceHead
	if prev == "" {
		prev = s.GenesisHash
	}
	s.Governance = append(s.Governance, GovernanceRecord{Type: typ, Time: at, Payload: slices.Clone(payload)})
	s.GovernanceHead = genesis.GovernanceHash(prev, typ, at, payload)
}

// ColdWalletSpec is a cold wallet as the admins register it
// (wallet.register): the keygen ceremony's public key and the hash of its
// transcript (`custody ceremony keygen`, docs/cold.md); genesis.ColdWallet,
// the type the offline signer folds too.
type ColdWalletSpec = genesis.ColdWallet

// WalletRegister records a cold wallet, keyed offline by its custodians,
// after the registry's admin quorum approved its spec: active at once with
// the ceremony's key and no node committee (nodes never sign for it; its
// requests route cold). Single-use change ID, approvals within the
// ceiling; an existing wallet ID is a conflict.
type WalletRegister struct {
	Change    ColdWalletSpec    `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
}

// Type implements Command.
func (WalletRegister) Type() string { return CmdWalletRegister }

func (p WalletRegister) apply(t *txn) (applyOut, error) {
	c := p.Change
	if err := t.governance(c.ID, p.Approvals); err != nil {
		return applyOut{}, err
	}
	if err := validateColdWallet(c); err != nil {
		return applyOut{}, err
	}
	if t.wallet(c.Wallet) != nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q exists", ErrConflict, c.Wallet)
	}
	if err := t.adminApproved("wallet register "+c.ID, c.ID, c.PayloadHash(), p.Approvals); err != nil {
		return applyOut{}, err
	}
	spec := c
	spec.PubKey, spec.Custodians = slices.Clone(c.PubKey), slices.Clone(c.Custodians)
	t.putWallet(&Wallet{ID: c.Wallet, Chain: c.Chain, Network: c.Network, Threshold: c.Threshold, Status: WalletActive,
		PubKey: slices.Clone(c.PubKey), Cold: &spec})
	t.recordChange(c.ID)
	return changed(c.Wallet)
}

// validateColdWallet is genesis.ColdWallet.Validate as a ledger refusal
// (ErrInvalid naming the change).
func validateColdWallet(c ColdWalletSpec) error {
	if err := c.Validate(); err != nil {
		return invalid("wallet register %s: %v", c.ID, err)
	}
	return nil
}
