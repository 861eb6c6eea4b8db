// Package transport is the network implementation of [tss.Transport]: tss
// envelopes between signer nodes over mutually authenticated TLS 1.3.
//
// # Identity
//
// A node is who its certificate says it is. Node certificates are the same
// ones the raft layer uses ([pki.CA.IssueNode]): issued by the cluster CA,
// role node, valid for both server and client authentication, with the node
// ID as the Subject CommonName; the check is [pki.VerifyPeer], the one raft
// uses. One node certificate therefore serves raft and tss.
//
// Both ends of every connection verify the other's chain against the cluster
// CA only (never system roots) and accept the peer only if its node ID is in
// the static peer map of [Config]. The dialer additionally requires the
// server's node ID to be exactly the node it meant to reach, so an address
// taken over by another cluster member is refused. Hostnames play no part.
//
// # Authentication of received envelopes
//
// [tss.Delivery].From is the node ID of the authenticated connection the bytes
// arrived on, never anything inside the bytes. The engine compares it with
// Envelope.From and drops mismatches (SECURITY.md item 1).
//
// # Wire format
//
// Each TCP connection carries frames in one direction only (the dialer
// writes, the acceptor reads). After the TLS handshake the acceptor writes the
// four bytes "CTT1" once it has authorised the dialer's node ID, and nothing
// else ever; the dialer sends nothing before it has them (TLS 1.3 lets a
// client finish its handshake before the server has judged its certificate,
// so this is how a refused dialer finds out). Then each frame is a
// big-endian u32 length followed by that many bytes of one marshalled
// [tss.Envelope]. A length of zero or above
// [MaxFrame] is a framing error: the connection is closed and the event
// logged, and nothing is allocated for the announced length beyond what has
// actually arrived. Bytes that frame correctly but do not unmarshal are
// delivered as a nil Env attributed to the sender, so the engine counts them
// against that peer; the connection stays open.
//
// # Delivery
//
// Frames on one connection are delivered in order. Each peer has a bounded
// outbound queue; Send blocks until the envelope is queued or its context
// ends. A lost connection is redialled with exponential backoff; a batch
// whose write failed is retried once on the new connection, so a receiver can
// see a duplicate (the tss engine drops identical duplicates). Frames the
// kernel had accepted before a peer died can be lost: tss sessions are never
// resumed, so the caller starts a new session after an abort.
package transport

import (
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// Referenced by the package documentation.
var (
	_ tss.Transport = (*Transport)(nil)
	_               = pki.VerifyPeer
)
