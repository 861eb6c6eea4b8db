// Package watermark is a signer node's own, fsynced record of what it has
// signed or is about to sign, kept outside raft (SECURITY.md item 17, DESIGN.md
// invariant 3).
//
// The raft ledger decides what may be signed, but a node cannot fully trust
// it: a snapshot can be rolled back, a disk restored from backup, or a
// compromised leader can present a rewritten history. Before a node takes
// part in a signing session it reserves the intent here; the store refuses a
// different message for a request ID, an ETH (wallet, chain ID, nonce) or a
// BTC outpoint it already reserved, whatever the ledger now says.
//
// # Use
//
//	st, err := watermark.Open(dir)           // exclusive: one process per dir
//	t, err := st.Reserve(watermark.Intent{   // fsynced before it returns
//		RequestID:   id,
//		Digest:      sighash,                 // what the tss session will sign
//		PayloadHash: payloadHash,             // what the operators approved
//		Keys:        []watermark.Key{watermark.ETHNonceKey(wallet, chainID, nonce)},
//	})
//	// errors.Is(err, watermark.ErrConflict): stop, never sign.
//	// ... unseal the share, run the session, verify the signature ...
//	err = st.Complete(t, sha256.Sum256(sig))
//
// Reserving the same intent again (same request, digest, payload hash and
// keys) succeeds with Ticket.Retry set: after a crash the node runs a NEW
// session with fresh randomness (never resumed, SECURITY.md item 7) over the
// SAME message, and two signatures over one message authorise the same single
// transaction, so nothing new can be spent.
//
// # Guarantees
//
// Reserve and Complete return only after the record is written and the file
// fsynced; the log file and its directory are fsynced at creation. A Store is
// safe for concurrent use; writes are serialised under one mutex, so
// throughput is bounded by fsync latency. After any write or fsync error the
// Store refuses all further work (ErrFailed): the on-disk tail is unknown and
// only a fresh Open, which replays and repairs it, may continue.
//
// The format and crash behaviour are described in docs/watermark.md.
package watermark
