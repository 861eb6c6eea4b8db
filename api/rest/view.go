package rest

import (
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
)

// Render is the withdrawal req as GET /v1/withdrawals lists it (without
// the approval times GET /v1/withdrawals/{id} reads from the audit log),
// from st, the state req was read from. Call it inside the state read
// (ledger.Store.ReadLocal).
func Render(st *ledger.State, req *ledger.Request) WithdrawalView { return *render(st, req, false) }

// HistoryStatus is the API status (APIStatus) a request had at one entry
// of its status history: the entry's ledger status under the decision's
// route and reason at that moment.
func HistoryStatus(c ledger.StatusChange) string {
	return APIStatus(&ledger.Request{Status: c.Status, Decision: policy.Decision{Route: c.Route, Reason: c.Reason}})
}
