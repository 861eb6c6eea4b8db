package tss

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"math/big"

	"github.com/bnb-chain/tss-lib/v2/common"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/signing"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"
	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/custody-dev/custody/pki"
)

// Signature is a verified, low-S secp256k1 ECDSA signature.
type Signature struct {
	R, S [32]byte
	// V is the recovery id, 0 or 1 (add 27 for legacy Ethereum v).
	V byte
	// PubKey is the wallet key the signature verified against (33-byte compressed).
	PubKey []byte
}

// Bytes65 returns R || S || V, the layout go-ethereum's crypto.Ecrecover takes.
func (s *Signature) Bytes65() []byte {
	out := make([]byte, 0, 65)
	out = append(out, s.R[:]...)
	out = append(out, s.S[:]...)
	return append(out, s.V)
}

// SignParams describes one signing session.
type SignParams struct {
	// Session is the fresh 256-bit ID fixed for this signature (ledger claim).
	Session SessionID
	// Signers are the t+1 (or more) members taking part, self included.
	Signers []pki.NodeID
	// Digest is the 32-byte message hash to sign.
	Digest [32]byte
	// Hook, if set, sees every outgoing envelope (presignature pool, #7).
	Hook OutboundHook
}

var secpHalfN = new(big.Int).Rsh(btcec.S256().N, 1)

// Sign runs one signing session with the given share. Signing state is held
// in memory only: a session ID is never reused and a failed or interrupted
// session is never resumed (SECURITY.md item 7). Sign returns, whatever the
// outcome, only once tss-lib stopped using the share: the caller may Wipe it.
func (e *Engine) Sign(ctx context.Context, share *Share, p SignParams) (*Signature, error) {
	return e.sign(ctx, share, p, new(big.Int).SetBytes(p.Digest[:]))
}

// sign runs a signing session of the integer m (Sign, and SignLateBound of
// the presignature pool, which writes m late). The signature is verified for
// the value m holds when the session ends.
func (e *Engine) sign(ctx context.Context, share *Share, p SignParams, m *big.Int) (*Signature, error) {
	if share == nil || share.Retired() {
		return nil, ErrShareRetired
	}
	if err := checkCommittee(p.Signers, e.cfg.Self, true); err != nil {
		return nil, err
	}
	if len(p.Signers) < share.Threshold+1 {
		return nil, fmt.Errorf("%w: %d signers for threshold %d", ErrBadParams, len(p.Signers), share.Threshold)
	}
	if err := e.cfg.Budget.Check(p.Signers); err != nil {
		return nil, err
	}
	if err := e.checkUnused(p.Session); err != nil {
		return nil, err
	}
	keys := map[pki.NodeID][]byte{}
	for _, mb := range share.Members {
		keys[mb.Node] = mb.Key
	}
	var members []Party
	for _, n := range p.Signers {
		k, ok := keys[n]
		if !ok {
			return nil, fmt.Errorf("%w: signer %s is not a member of wallet %s", ErrBadParams, n, share.Wallet)
		}
		members = append(members, Party{Node: n, Key: k})
	}
	sorted, self, byNode := sortedPIDs(members, e.cfg.Self)

	s := newSession(e, p.Session, share.Wallet, protoSign)
	s.hook = p.Hook
	s.threshold = func(string) int { return share.Threshold }
	for n, pid := range byNode {
		s.addMember(partyRef{n, RoleMain}, pid)
	}
	params := tsslib.NewParameters(tsslib.S256(), tsslib.NewPeerContext(sorted), self, len(sorted), share.Threshold)
	end := make(chan *common.SignatureData, 1)
	share.mu.Lock()
	data := share.Data
	share.mu.Unlock()
	if data.Xi == nil {
		return nil, ErrShareRetired
	}
	s.check = newSignCheck(&data, s.members).check
	party := signing.NewLocalParty(m, params, data, s.out, end, 32)
	s.addLocal(RoleMain, party)
	forward(s, RoleMain, end)

	res, _, err := s.run(ctx)
	if err != nil {
		return nil, err
	}
	sd := res[RoleMain].(*common.SignatureData)
	var digest [32]byte
	m.FillBytes(digest[:])
	sig, err := finishSignature(share.PubKey, digest, sd.R, sd.S)
	if err != nil {
		ae := s.abort(ErrProtocol, err.Error())
		e.fail(s, ae)
		return nil, ae
	}
	return sig, nil
}

// finishSignature verifies (r, s) against the wallet key, normalises S to the
// low half, and finds the recovery id by recovering the key.
func finishSignature(pubkey []byte, digest [32]byte, rb, sb []byte) (*Signature, error) {
	pk, err := btcec.ParsePubKey(pubkey)
	if err != nil {
		return nil, fmt.Errorf("wallet key: %w", err)
	}
	r, sv := new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb)
	n := btcec.S256().N
	if r.Sign() == 0 || sv.Sign() == 0 || r.Cmp(n) >= 0 || sv.Cmp(n) >= 0 {
		return nil, fmt.Errorf("signature out of range")
	}
	if sv.Cmp(secpHalfN) > 0 {
		sv.Sub(n, sv)
	}
	if !ecdsa.Verify(pk.ToECDSA(), digest[:], r, sv) {
		return nil, fmt.Errorf("signature does not verify against the wallet key")
	}
	sig := &Signature{PubKey: append([]byte(nil), pubkey...)}
	r.FillBytes(sig.R[:])
	sv.FillBytes(sig.S[:])
	for v := byte(0); v < 2; v++ {
		compact := make([]byte, 0, 65)
		compact = append(compact, 27+4+v)
		compact = append(compact, sig.R[:]...)
		compact = append(compact, sig.S[:]...)
		got, _, err := becdsa.RecoverCompact(compact, digest[:])
		if err == nil && got.IsEqual(pk) {
			sig.V = v
			return sig, nil
		}
	}
	return nil, fmt.Errorf("no recovery id recovers the wallet key")
}
