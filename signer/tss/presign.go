package tss

import (
	"context"
	"errors"
	"fmt"
	"math/big"

	tsslib "github.com/bnb-chain/tss-lib/v2/tss"
)

// SignLateBound runs one signing session like Sign, but signs the integer m
// the caller owns instead of p.Digest (which is ignored). tss-lib keeps the
// *big.Int it is given and reads it only in round 1 (m < N), round 5, round
// 7 and finalize, so the caller may start with a placeholder and write the
// real digest into m while it holds every round-4 message back (the
// presignature pool, package signer/presign, #7). The caller must make the
// write happen before any round-4 message reaches this party or leaves it.
//
// The returned signature is verified against the wallet key for the value
// m holds when the session ends.
func (e *Engine) SignLateBound(ctx context.Context, share *Share, p SignParams, m *big.Int) (*Signature, error) {
	if m == nil || m.Sign() < 0 || m.Cmp(tsslib.S256().Params().N) >= 0 {
		return nil, fmt.Errorf("%w: message integer out of range", ErrBadParams)
	}
	return e.sign(ctx, share, p, m)
}

// ErrWithdrawn is the cancel cause (context.WithCancelCause) with which a
// node ends its own session on purpose, for example a presignature
// destroyed unused. The session aborts blaming nobody and tells its peers,
// instead of reporting a deadline that would charge the parties it waits on.
var ErrWithdrawn = errors.New("tss: session withdrawn by this node")
