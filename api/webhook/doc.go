// Package webhook delivers a withdrawal's status changes to its backend
// principal's HTTPS endpoint: the leader's outbox, derived from the ledger.
//
// # Events
//
// Every API-visible status change of a withdrawal (docs/api.md) is an
// [Event]. The events are not stored anywhere of their own: the ledger's
// FSM records each request's status history (ledger.StatusChange), and
// [Changes] derives the events from it — consecutive entries with the same
// API status are one event. Every replica derives the same events with the
// same IDs ([EventID]) and per-withdrawal sequence numbers (1, 2, 3, ...),
// so a new leader, or a node after a restart, finds the outbox where the
// old one left it.
//
// # Delivery
//
// Only the leader delivers ([Dispatcher.Run] idles on followers). Events of
// one withdrawal go in order: event n+1 is sent only after the receiver
// answered event n with a 2xx, or after event n was given up (retried with
// exponential backoff and full jitter ([Backoff]) until [Config.MaxAttempts]
// attempts or [Config.MaxAge]). The leader records progress in the ledger
// in batches (ledger.WebhookDelivered, signed with its node key); a new
// leader resumes after the last recorded event and re-delivers what its
// predecessor delivered but had not recorded yet: at least once, and the
// receiver de-duplicates by event ID. Withdrawals are delivered
// independently, each endpoint with at most [Config.Concurrency] requests
// in flight, each bounded by [Config.Timeout]: a slow receiver delays only
// its own withdrawals.
//
// # Signature
//
// Each attempt carries the header
//
//	Custody-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>
//
// as Stripe's webhooks do ([Sign], [Verify]). A webhook is informational:
// every node holds the secret, so a receiver that must be certain reads the
// withdrawal with GET /v1/withdrawals/{id} (docs/trust.md).
package webhook
