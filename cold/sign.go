package cold

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// ErrCustodians: the custodians present cannot sign (too few, one twice,
// not a custodian of the wallet, a share of another token).
var ErrCustodians = errors.New("cold: custodians refused")

// Present is one custodian at the signing: their sealed share file and how
// to reach their token (the module; the serial comes from the file).
type Present struct {
	Share *SealedShare
}

// Sign signs a verified bundle with the shares of the custodians present
// (at least t+1 distinct custodians of the wallet, each share in its own
// token), asking pins for each custodian's PIN. It runs one tss signing
// session per digest among them over an in-memory transport, assembles
// the transaction, verifies it (every Bitcoin input with txscript), and
// returns the bundle with Signed set. now stamps SignedAt.
func Sign(ctx context.Context, c *Checked, module string, present []*SealedShare, pins PINSource, now time.Time) (*Bundle, error) {
	w := c.Wallet
	if len(present) < w.Threshold+1 {
		return nil, fmt.Errorf("%w: %d custodians present, wallet %q needs %d of %v", ErrCustodians, len(present), w.Wallet, w.Threshold+1, w.Custodians)
	}
	names, serials := map[string]bool{}, map[string]bool{}
	for _, s := range present {
		switch {
		case s.Wallet != w.Wallet:
			return nil, fmt.Errorf("%w: the share of %s is for wallet %q, not %q", ErrCustodians, s.Custodian, s.Wallet, w.Wallet)
		case !slices.Contains(w.Custodians, s.Custodian):
			return nil, fmt.Errorf("%w: %s is not a registered custodian of %q (%v)", ErrCustodians, s.Custodian, w.Wallet, w.Custodians)
		case names[s.Custodian]:
			return nil, fmt.Errorf("%w: custodian %s is present twice", ErrCustodians, s.Custodian)
		case serials[s.TokenSerial]:
			return nil, fmt.Errorf("%w: token %s is presented twice: one share per token", ErrCustodians, s.TokenSerial)
		}
		names[s.Custodian], serials[s.TokenSerial] = true, true
	}
	// Open every token and unseal every share before any signing: a wrong
	// PIN stops the ceremony with nothing signed.
	var tokens []*hsm.Token
	var shares []*tss.Share
	defer func() {
		for _, sh := range shares {
			sh.Wipe()
		}
		for _, t := range tokens {
			_ = t.Close()
		}
	}()
	var signers []pki.NodeID
	for _, s := range present {
		tok, err := openToken(module, Custodian{Name: s.Custodian, TokenSerial: s.TokenSerial}, pins)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, tok)
		sh, err := s.open(tok, w.PubKey)
		if err != nil {
			return nil, err
		}
		shares = append(shares, sh)
		signers = append(signers, pki.NodeID(s.Custodian))
	}
	digests := c.Unsigned.Digests()
	sigs := make([]chains.Signature, len(digests))
	for i, d := range digests {
		sig, err := signOne(ctx, shares, signers, d)
		if err != nil {
			return nil, fmt.Errorf("cold: digest %d of %d: %w", i+1, len(digests), err)
		}
		sigs[i] = sig
	}
	signed, err := c.Unsigned.Assemble(w.PubKey, sigs)
	if err != nil {
		return nil, fmt.Errorf("cold: assemble: %w", err)
	}
	if err := signed.Verify(c.Bundle.Request.PayloadHash, w.PubKey); err != nil {
		return nil, fmt.Errorf("cold: the signed transaction does not verify: %w", err)
	}
	out := *c.Bundle
	out.Signed = &Signed{Tx: signed.Bytes(), TxHash: signed.Hash(), SignedAt: now.UTC()}
	for _, s := range present {
		out.Signed.Custodians = append(out.Signed.Custodians, s.Custodian)
	}
	slices.Sort(out.Signed.Custodians)
	if w.Chain == "btc" {
		p, err := signedPSBT(c, sigs)
		if err != nil {
			return nil, err
		}
		out.Signed.PSBT = p
	}
	return &out, nil
}

// signOne runs one signing session of digest among the shares' holders.
func signOne(ctx context.Context, shares []*tss.Share, signers []pki.NodeID, digest [32]byte) (chains.Signature, error) {
	net := tss.NewMemNetwork()
	session := tss.NewSessionID()
	type result struct {
		sig *tss.Signature
		err error
	}
	res := make(chan result, len(shares))
	for _, sh := range shares {
		go func() {
			e, err := tss.NewEngine(tss.Config{Self: sh.Self, Transport: net.Endpoint(sh.Self)})
			if err != nil {
				res <- result{err: err}
				return
			}
			defer e.Close()
			sig, err := e.Sign(ctx, sh, tss.SignParams{Session: session, Signers: slices.Clone(signers), Digest: digest})
			res <- result{sig, err}
		}()
	}
	var out *tss.Signature
	var firstErr error
	for range shares {
		r := <-res
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		if r.sig != nil && out == nil {
			out = r.sig
		}
	}
	if firstErr != nil {
		return chains.Signature{}, firstErr
	}
	return chains.Signature{R: out.R, S: out.S, V: out.V}, nil
}

// signedPSBT is the bundle's PSBT with one partial signature per input
// (btc.AddSignatures checks each against its digest and the wallet key);
// it finalizes and extracts to the signed transaction.
func signedPSBT(c *Checked, sigs []chains.Signature) ([]byte, error) {
	p, err := btc.ParsePSBT(c.Bundle.PSBT)
	if err != nil {
		return nil, err
	}
	params, err := btc.Network(c.Wallet.BTCParams)
	if err != nil {
		return nil, err
	}
	u, err := btc.UnsignedFromPSBT(p, params, c.Wallet.PubKey)
	if err != nil {
		return nil, err
	}
	bs := make([]btc.Signature, len(sigs))
	for i, s := range sigs {
		bs[i] = btc.Signature{R: new(big.Int).SetBytes(s.R[:]), S: new(big.Int).SetBytes(s.S[:])}
	}
	if err := btc.AddSignatures(p, u, bs); err != nil {
		return nil, fmt.Errorf("cold: psbt: %w", err)
	}
	return btc.EncodePSBT(p)
}
