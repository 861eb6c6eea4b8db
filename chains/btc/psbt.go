package btc

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// maxPSBT bounds the PSBT parser's input.
const maxPSBT = 4 << 20

// PSBT returns a BIP-174 packet for u: the unsigned transaction, and per
// input the witness UTXO and SIGHASH_ALL. Serialize it with
// (*psbt.Packet).Serialize (binary) or B64Encode (base64) for other tools.
func (u *Unsigned) PSBT() (*psbt.Packet, error) {
	ops := make([]*wire.OutPoint, len(u.tx.TxIn))
	seq := make([]uint32, len(u.tx.TxIn))
	for i, in := range u.tx.TxIn {
		op := in.PreviousOutPoint
		ops[i], seq[i] = &op, in.Sequence
	}
	outs := make([]*wire.TxOut, len(u.tx.TxOut))
	for i, o := range u.tx.TxOut {
		outs[i] = wire.NewTxOut(o.Value, bytes.Clone(o.PkScript))
	}
	p, err := psbt.New(ops, outs, u.tx.Version, u.tx.LockTime, seq)
	if err != nil {
		return nil, fmt.Errorf("btc: psbt: %w", err)
	}
	for i, prev := range u.prevouts {
		p.Inputs[i].WitnessUtxo = wire.NewTxOut(prev.Value, bytes.Clone(prev.PkScript))
		p.Inputs[i].SighashType = txscript.SigHashAll
	}
	return p, nil
}

// EncodePSBT serialises a packet in binary BIP-174 form.
func EncodePSBT(p *psbt.Packet) ([]byte, error) {
	var b bytes.Buffer
	if err := p.Serialize(&b); err != nil {
		return nil, fmt.Errorf("btc: psbt: %w", err)
	}
	return b.Bytes(), nil
}

// ParsePSBT parses a BIP-174 packet given as binary (starting "psbt\xff")
// or base64. The psbt package may panic on hostile input; that becomes
// ErrMalformedTx.
func ParsePSBT(b []byte) (p *psbt.Packet, err error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || len(b) > maxPSBT {
		return nil, fmt.Errorf("%w: psbt of %d bytes", ErrMalformedTx, len(b))
	}
	if !bytes.HasPrefix(b, []byte("psbt\xff")) {
		dec, derr := base64.StdEncoding.DecodeString(string(b))
		if derr != nil {
			return nil, fmt.Errorf("%w: psbt is neither binary nor base64: %v", ErrMalformedTx, derr)
		}
		b = dec
	}
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("%w: psbt decoder panic: %v", ErrMalformedTx, r)
		}
	}()
	r := bytes.NewReader(b)
	p, err = psbt.NewFromRawBytes(r, false)
	if err != nil {
		return nil, fmt.Errorf("%w: psbt: %v", ErrMalformedTx, err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: psbt has %d trailing bytes", ErrMalformedTx, r.Len())
	}
	if err := p.SanityCheck(); err != nil {
		return nil, fmt.Errorf("%w: psbt: %v", ErrMalformedTx, err)
	}
	return p, nil
}

// UnsignedFromPSBT recovers the unsigned transaction of a packet for the
// wallet walletPub on net: every input must carry a witness UTXO paying the
// wallet's P2WPKH address. Partial signatures in the packet are ignored
// here (AddSignatures and Finalize check them).
func UnsignedFromPSBT(p *psbt.Packet, net *chaincfg.Params, walletPub []byte) (*Unsigned, error) {
	if p == nil || p.UnsignedTx == nil || len(p.Inputs) != len(p.UnsignedTx.TxIn) || len(p.Outputs) != len(p.UnsignedTx.TxOut) {
		return nil, fmt.Errorf("%w: psbt input/output maps do not match its transaction", ErrMalformedTx)
	}
	prev := make([]*wire.TxOut, len(p.Inputs))
	for i, in := range p.Inputs {
		if in.WitnessUtxo == nil {
			return nil, fmt.Errorf("%w: psbt input %d has no witness utxo", ErrMalformedTx, i)
		}
		if in.SighashType != 0 && in.SighashType != txscript.SigHashAll {
			return nil, fmt.Errorf("%w: psbt input %d asks for sighash type %v", ErrMalformedTx, i, in.SighashType)
		}
		prev[i] = wire.NewTxOut(in.WitnessUtxo.Value, bytes.Clone(in.WitnessUtxo.PkScript))
	}
	return checkUnsigned(net, walletPub, p.UnsignedTx.Copy(), prev)
}

// AddSignatures checks one signature per input against u's digests and
// the wallet key and records them as BIP-174 partial signatures in p, which
// must be u's packet.
func AddSignatures(p *psbt.Packet, u *Unsigned, sigs []Signature) error {
	if err := samePacket(p, u); err != nil {
		return err
	}
	wsigs, err := u.checkSigs(sigs)
	if err != nil {
		return err
	}
	up, err := psbt.NewUpdater(p)
	if err != nil {
		return fmt.Errorf("btc: psbt: %w", err)
	}
	for i, s := range wsigs {
		out, err := up.Sign(i, s, bytes.Clone(u.pub), nil, nil)
		if err != nil || out != psbt.SignSuccesful {
			return fmt.Errorf("%w: psbt input %d: outcome %d: %v", ErrBadSignature, i, out, err)
		}
	}
	return nil
}

// Finalize finalises every input of p (u's packet), extracts the network
// transaction and verifies every input with btcd's script engine.
func Finalize(p *psbt.Packet, u *Unsigned) (*Signed, error) {
	if err := samePacket(p, u); err != nil {
		return nil, err
	}
	if err := psbt.MaybeFinalizeAll(p); err != nil {
		return nil, fmt.Errorf("%w: psbt finalize: %v", ErrBadSignature, err)
	}
	tx, err := psbt.Extract(p)
	if err != nil {
		return nil, fmt.Errorf("%w: psbt extract: %v", ErrBadSignature, err)
	}
	if err := Verify(tx, u.prevouts); err != nil {
		return nil, err
	}
	return &Signed{tx: tx, unsigned: u}, nil
}

// samePacket refuses to mix a packet with a different unsigned transaction.
func samePacket(p *psbt.Packet, u *Unsigned) error {
	other, err := UnsignedFromPSBT(p, u.net, u.pub)
	if err != nil {
		return err
	}
	if other.PayloadHash() != u.PayloadHash() {
		return fmt.Errorf("%w: psbt is for a different transaction", ErrMismatch)
	}
	return nil
}
