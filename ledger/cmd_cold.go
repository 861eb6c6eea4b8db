package ledger

import (
	"fmt"
	"slices"

	"github.com/custody-dev/custody/policy"
)

// ColdExport marks an approved cold request as exported in a bundle.
type ColdExport struct {
	RequestID  string `json:"request_id"`
	BundleHash string `json:"bundle_hash"`
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
	if p.BundleHash == "" {
		return applyOut{}, invalid("export needs the bundle hash")
	}
	d, err := t.recheck(r)
	if err != nil {
		return applyOut{}, err
	}
	r.Decision = d
	r.Status, r.BundleHash, r.UpdatedIdx = StatusExported, p.BundleHash, t.index
	t.recordSpend(r)
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// ColdImport records the offline-signed transaction.
type ColdImport struct {
	RequestID string `json:"request_id"`
	Signed    []byte `json:"signed"`
	TxHash    string `json:"tx_hash,omitempty"`
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
	if len(p.Signed) == 0 {
		return applyOut{}, invalid("import needs the signed transaction")
	}
	r.Result = &Result{Signed: slices.Clone(p.Signed), TxHash: p.TxHash, Index: t.index, At: t.now}
	r.Status, r.UpdatedIdx = StatusImported, t.index
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}
