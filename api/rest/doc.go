// Package rest is the HTTPS API of a custody node: the backend API (what the
// exchange's backend integrates with. HTTPS with mutual TLS, JSON bodies,
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
//     addresses.
//
// # Authorization
//
// The listener ([ServerTLS]) admits client certificates of the cluster CA
// with the role backend or operator; every request checks the peer again
// and each endpoint its role (backend here: an operator certificate is
// answered 403). The principal is the certificate's ID. A create carries
// the principal's own signed initiation (quorum.Initiate over
// policy.Withdrawal.IntentHash); the handler refuses one whose signing
// device is not the principal's, and the ledger verifies the signature.
//
// The package holds no business logic: it decodes strictly, checks the
// request against the node's replica of the ledger (wallet, asset,
// decimals, address, initiator) so that bad input changes nothing, and
// calls the node's [Service].
package rest
