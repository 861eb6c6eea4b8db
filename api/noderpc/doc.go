// Package noderpc is the node-to-node RPC of a custody cluster: HTTPS with
// mutual TLS between node certificates, JSON bodies, versioned paths
// (/node/v1/...). It holds no business logic: each handler checks who asks,
// decodes strictly and calls the node's ledger or member.
//
// # Endpoints
//
//   - POST [PathSubmit]: a follower forwards a ledger command (type, JSON
//     payload, actor) to the leader, which runs ledger.Store.Submit and
//     answers the outcome. A node may submit as itself ("node:ID") or on
//     behalf of an operator or the backend (whose signatures are inside
//     the command), never as another node.
//   - GET [PathReadIndex]: the leader's ledger.Store.ReadIndex.
//   - POST [PathSign]: the leader's orchestrator asks a committee member to
//     sign a claim (member.Member.SignClaimed); only the node the member's
//     own ledger knows as leader may ask.
//   - GET [PathStatus]: the node's [Status].
//
// # Authorization
//
// The server's TLS is pki.Identity.NodeTLS with the node gate's Authorize:
// only nodes of the node set, with the key the set pins, complete the
// handshake. Each request is checked again (node role, the gate), so a
// node removed from the set is refused on an old connection too. The
// client accepts only the node it dialled, through the same gate.
//
// # Errors
//
// Every error is {"error":{"code","message"}} with a stable code (see
// [Codes] and docs/noderpc.md). The [Client] maps codes back to the
// ledger's and the member's sentinels, so callers branch with errors.Is
// and errors.As as they would in process.
//
// # Request IDs
//
// The client sends the backend API request ID its context carries
// (package requestid) as X-Request-ID; the server puts a well-formed one
// into the handler's context, so the leader's log lines of a forwarded
// create name the same request as the follower's.
//
// # Client
//
// [Client.Submit] and [Client.ReadIndex] follow the leader; [Client.Forward]
// fits ledger.Config.Forward, [Client.ReadIndex] member.ReadIndexFunc and
// [Client.Member] withdraw.Member.
package noderpc
