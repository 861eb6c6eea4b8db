// Package pki is the cluster's public-key infrastructure: the cluster CA,
// the certificates it issues to nodes, backend principals and operators
// (each with its role), the TLS configurations built from them, and the one
// check of a peer's certificate that raft, the tss transport and the APIs
// all use.
//
// # Identity
//
// A certificate's Subject CommonName is the principal's ID (for a node, its
// [NodeID]: raft server ID, tss party and API identity at once) and its
// Subject OrganizationalUnit is its [Role]. Node certificates are valid for
// server and client authentication; backend and operator certificates for
// client authentication only. Peers are verified against the cluster CA
// only, never the system roots, and hostnames are deliberately not part of
// the check: raft and the transport dial addresses, and a node is who its
// CA-issued certificate says it is, wherever it listens.
package pki
