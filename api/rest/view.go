package rest

import (
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
)

// Render is the withdrawal req as GET /v1/withdrawals/{id} shows it
// (approval times included), from st, the state req was read from. Call it
// inside the state read (ledger.Store.ReadLocal); the view shares no
// memory with the state that the state could change.
func Render(st *ledger.State, req *ledger.Request) WithdrawalView { return *render(st, req, true) }

// HistoryStatus is the API status (APIStatus) a request had at one entry
// of its status history: the entry's ledger status under the decision's
// route and reason at that moment.
func HistoryStatus(c ledger.StatusChange) string {
	return APIStatus(&ledger.Request{Status: c.Status, Decision: policy.Decision{Route: c.Route, Reason: c.Reason}})
}
