package member

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/watermark"
)

// A claim whose transaction is signed under several digests (a Bitcoin
// spend of several inputs: one BIP-143 digest per input) gets one tss
// signing session per digest, run one after the other in digest order.
// tss-lib signs one message per session, and a session ID is never reused,
// so every member derives the same per-digest session IDs from the claim's
// one ledger-fixed session ID with InputSession. The members' tss engines
// hold envelopes of a session not started there yet (a peer that finished
// the previous digest first), so the sessions line up without a barrier.

// inputSessionDomain separates derived session IDs from anything else
// hashed with a claim's session ID.
const inputSessionDomain = "custody/member/input-session/v1\x00"

// InputSession is the tss session ID under which digest i of a claim with
// session ID claim is signed. Digest 0 is signed under the claim's own
// session ID (so a one-digest claim, every ETH transaction and a one-input
// Bitcoin spend, runs exactly the session the ledger names); digest i ≥ 1
// under SHA-256("custody/member/input-session/v1" 0x00 ‖ claim ‖ i as 4
// bytes big-endian). A fresh claim (or re-claim) session ID therefore gives
// fresh IDs for every digest, and two digests of one claim never share one.
func InputSession(claim tss.SessionID, i int) tss.SessionID {
	if i == 0 {
		return claim
	}
	h := sha256.New()
	h.Write([]byte(inputSessionDomain))
	h.Write(claim[:])
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(i))
	h.Write(n[:])
	var out tss.SessionID
	h.Sum(out[:0])
	return out
}

// ClaimDigest is the one 32-byte value that stands for everything a claim
// signs: Claim.Digest and the watermark's Intent.Digest. For one digest it
// is that digest; for several (a Bitcoin spend of several inputs)
// watermark.DigestOf of them in input order, so the reservation covers
// every input's message at once. It is the zero value for none.
func ClaimDigest(digests [][32]byte) [32]byte {
	switch len(digests) {
	case 0:
		return [32]byte{}
	case 1:
		return digests[0]
	}
	return watermark.DigestOf(digests...)
}
