// Package ledgertest is the test harness of real ledger clusters: raft nodes
// on 127.0.0.1 over mutual TLS with certificates from a throw-away cluster
// CA, real bbolt stores in temporary directories, a fault-injecting raft
// transport for partitions, and operators with deterministic Ed25519 device
// keys. The ledger's own tests and every package that needs a running
// ledger (the member, the leader's orchestration) use it, so there is one
// cluster setup to maintain. It is for tests only.
package ledgertest
