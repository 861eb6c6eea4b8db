// Package rest is the HTTPS API of a custody node: the backend API (what the
// exchange's backend integrates with) and the operator API (what treasury
// operators and the custody CLI use). HTTPS with mutual TLS, JSON bodies,
// versioned paths (/v1/...), described by api/openapi.yaml and in
// docs/api.md.
//
// # Endpoints
//
//   - POST /v1/withdrawals: create a withdrawal (idempotent by its id);
//     writes go to the leader (Service.CreateWithdrawal).
//   - GET /v1/withdrawals/{id}, GET /v1/withdrawals: one withdrawal, or a
//     page of them (status and wallet filters, opaque cursor), from this
//     node's replica.
//   - GET /v1/wallets, GET /v1/wallets/{id}: the wallets and their
//     addresses (backend and operators).
//   - Operators: GET /v1/requests[/{id}] (with the human description),
//     POST /v1/requests/{id}/approvals (an approval or rejection signed
//     on the operator's device), GET and POST /v1/changes,
//     POST /v1/changes/{id}/approvals (governance changes collecting
//     approvals in the ledger's staging area; the node submits the real
//     command once they meet the quorum), GET /v1/allowlist, /v1/locks,
//     /v1/audit, /v1/audit/heads; GET /v1/whoami for both roles.
//
// # Authorization
//
// The listener ([ServerTLS]) admits client certificates of the cluster CA,
// valid by the node's clock, with the role backend or operator. Every
// request, on an open keep-alive connection too, checks the certificate
// again at the node's clock, requires its principal (the certificate's ID)
// to be an active registry entry of the certificate's kind in this node's
// replica (a principal suspended by a signed change is refused at its
// next request), spends one token of the principal's rate limit
// ([RateLimit]; 429 when empty), and checks the endpoint's roles
// ([Routes]: the endpoint × role table of docs/api.md, as data). The
// chain's verification is kept per TLS connection ([ConnContext]) while
// the node's clock is within the chain's validity; the other checks run
// on every request (conn.go says why that is sound). A create
// carries the principal's own signed initiation (quorum.Initiate over
// policy.Withdrawal.IntentHash, the note included); the handler refuses
// one whose signing device is not the principal's, and the ledger verifies
// the signature.
// Operators' answers are checked on the replica (cluster, subject, payload
// hash, expiry, the principal's own device, its signature, whether it
// counts) before they are submitted (Config.Operators: the daemon's
// Node.Submit); the server never signs.
//
// The package holds no business logic: it decodes strictly, checks the
// request against the node's replica of the ledger (wallet, asset,
// decimals, address, initiator) so that bad input changes nothing, and
// calls the node's [Service].
package rest
