package btc

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// Errors callers branch on.
var (
	// ErrMalformedTx means bytes do not parse as a transaction or PSBT.
	ErrMalformedTx = errors.New("btc: malformed transaction")
	// ErrBadSignature means a signature is out of range, high-S, does not
	// verify against the input's digest, or a script check failed.
	ErrBadSignature = errors.New("btc: invalid signature")
)

// PayloadDomain is the domain tag of PayloadHash.
const PayloadDomain = "custody/btc/unsigned-tx/v1"

// Unsigned is a transaction spending only the wallet's P2WPKH outputs, with
// the value and script of every input (BIP-143 commits to the amounts).
// It is immutable once built or parsed.
type Unsigned struct {
	net          *chaincfg.Params
	pub          []byte
	walletScript []byte
	tx           *wire.MsgTx
	prevouts     []*wire.TxOut
	fetcher      *txscript.MultiPrevOutFetcher
}

func newUnsigned(net *chaincfg.Params, pub []byte, inputs []UTXO, outs []*wire.TxOut) (*Unsigned, error) {
	tx := wire.NewMsgTx(TxVersion)
	prev := make([]*wire.TxOut, len(inputs))
	for i, in := range inputs {
		op := in.OutPoint
		txin := wire.NewTxIn(&op, nil, nil)
		txin.Sequence = Sequence
		tx.AddTxIn(txin)
		prev[i] = wire.NewTxOut(in.Value, bytes.Clone(in.PkScript))
	}
	for _, o := range outs {
		tx.AddTxOut(wire.NewTxOut(o.Value, bytes.Clone(o.PkScript)))
	}
	return checkUnsigned(net, pub, tx, prev)
}

// checkUnsigned validates a transaction and its prevouts as something this
// package would have built: wallet-only P2WPKH inputs, no signatures, sane
// values, inputs covering outputs.
func checkUnsigned(net *chaincfg.Params, pub []byte, tx *wire.MsgTx, prev []*wire.TxOut) (*Unsigned, error) {
	wallet, err := WalletAddress(pub, net)
	if err != nil {
		return nil, err
	}
	walletScript, _ := txscript.PayToAddrScript(wallet)
	u, err := checkSpend(net, walletScript, tx, prev)
	if err != nil {
		return nil, err
	}
	u.pub = bytes.Clone(pub)
	return u, nil
}

// checkSpend is checkUnsigned for the wallet whose P2WPKH script is
// walletScript, when its key is not known yet (a member parsing a stored
// payload learns the key only at Assemble). The result has no key: only
// checkUnsigned's results may check or attach signatures.
func checkSpend(net *chaincfg.Params, walletScript []byte, tx *wire.MsgTx, prev []*wire.TxOut) (*Unsigned, error) {
	wallet := addressOf(walletScript, net)
	if len(tx.TxIn) == 0 || len(tx.TxOut) == 0 {
		return nil, fmt.Errorf("%w: no inputs or no outputs", ErrMalformedTx)
	}
	if len(prev) != len(tx.TxIn) {
		return nil, fmt.Errorf("%w: %d prevouts for %d inputs", ErrMalformedTx, len(prev), len(tx.TxIn))
	}
	fetch := txscript.NewMultiPrevOutFetcher(nil)
	var in, out int64
	seen := map[wire.OutPoint]bool{}
	for i, txin := range tx.TxIn {
		if len(txin.SignatureScript) != 0 || len(txin.Witness) != 0 {
			return nil, fmt.Errorf("%w: input %d is already signed", ErrMalformedTx, i)
		}
		if seen[txin.PreviousOutPoint] {
			return nil, fmt.Errorf("%w: input %d spends %s twice", ErrMalformedTx, i, txin.PreviousOutPoint)
		}
		seen[txin.PreviousOutPoint] = true
		p := prev[i]
		if p == nil || !bytes.Equal(p.PkScript, walletScript) {
			return nil, fmt.Errorf("%w: input %d does not spend the wallet address %s", ErrMalformedTx, i, wallet)
		}
		if p.Value <= 0 || p.Value > btcutil.MaxSatoshi {
			return nil, fmt.Errorf("%w: input %d value %d out of range", ErrMalformedTx, i, p.Value)
		}
		in += p.Value
		fetch.AddPrevOut(txin.PreviousOutPoint, p)
	}
	for i, o := range tx.TxOut {
		if o.Value <= 0 || o.Value > btcutil.MaxSatoshi {
			return nil, fmt.Errorf("%w: output %d value %d out of range", ErrMalformedTx, i, o.Value)
		}
		out += o.Value
	}
	if in > btcutil.MaxSatoshi || out > in {
		return nil, fmt.Errorf("%w: outputs (%d sat) exceed inputs (%d sat)", ErrMalformedTx, out, in)
	}
	return &Unsigned{net: net, walletScript: bytes.Clone(walletScript), tx: tx, prevouts: prev, fetcher: fetch}, nil
}

// Tx returns a copy of the unsigned transaction.
func (u *Unsigned) Tx() *wire.MsgTx { return u.tx.Copy() }

// Net returns the network.
func (u *Unsigned) Net() *chaincfg.Params { return u.net }

// Prevouts returns copies of the outputs the inputs spend, in input order.
func (u *Unsigned) Prevouts() []*wire.TxOut {
	out := make([]*wire.TxOut, len(u.prevouts))
	for i, p := range u.prevouts {
		out[i] = wire.NewTxOut(p.Value, bytes.Clone(p.PkScript))
	}
	return out
}

// Spent returns the outpoints the transaction spends, for the ledger to
// reserve before anything is signed.
func (u *Unsigned) Spent() []wire.OutPoint {
	out := make([]wire.OutPoint, len(u.tx.TxIn))
	for i, in := range u.tx.TxIn {
		out[i] = in.PreviousOutPoint
	}
	return out
}

// TxID is the transaction ID; for segwit spends it does not depend on the
// signatures, so it is known before signing.
func (u *Unsigned) TxID() chainhash.Hash { return u.tx.TxHash() }

// Bytes is the canonical unsigned serialisation that PayloadHash covers:
//
//	network magic (4 bytes, little-endian)
//	|| the transaction without witness (BIP-144 legacy serialisation)
//	|| for each input in order: value (8 bytes LE) || varint len || pkScript
//
// The prevout values are included because BIP-143 signatures commit to
// them and the fee is only known with them.
func (u *Unsigned) Bytes() []byte {
	var b bytes.Buffer
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], uint32(u.net.Net))
	b.Write(magic[:])
	_ = u.tx.SerializeNoWitness(&b)
	for _, p := range u.prevouts {
		_ = wire.WriteTxOut(&b, 0, 0, p)
	}
	return b.Bytes()
}

// PayloadHash is the hash operators approve:
//
//	SHA-256( PayloadDomain || 0x00 || Bytes() )
func (u *Unsigned) PayloadHash() [32]byte {
	h := sha256.New()
	h.Write([]byte(PayloadDomain))
	h.Write([]byte{0})
	h.Write(u.Bytes())
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// SigHashes returns the BIP-143 SIGHASH_ALL digest of every input, in input
// order: what the wallet key signs, once per input.
func (u *Unsigned) SigHashes() ([][32]byte, error) {
	hashes := txscript.NewTxSigHashes(u.tx, u.fetcher)
	out := make([][32]byte, len(u.tx.TxIn))
	for i, p := range u.prevouts {
		d, err := txscript.CalcWitnessSigHash(p.PkScript, hashes, txscript.SigHashAll, u.tx, i, p.Value)
		if err != nil {
			return nil, fmt.Errorf("btc: sighash of input %d: %w", i, err)
		}
		copy(out[i][:], d)
	}
	return out, nil
}

// Signature is an ECDSA signature (r, s) over one input's digest, as the
// threshold signer produces it. S must already be low (<= n/2).
type Signature struct {
	R, S *big.Int
}

var halfN = new(big.Int).Rsh(btcec.S256().N, 1)

// der checks ranges and low-S and returns the DER encoding.
func (s Signature) der() ([]byte, *ecdsa.Signature, error) {
	n := btcec.S256().N
	if s.R == nil || s.S == nil || s.R.Sign() <= 0 || s.S.Sign() <= 0 || s.R.Cmp(n) >= 0 || s.S.Cmp(n) >= 0 {
		return nil, nil, fmt.Errorf("%w: r or s out of range", ErrBadSignature)
	}
	if s.S.Cmp(halfN) > 0 {
		return nil, nil, fmt.Errorf("%w: high S", ErrBadSignature)
	}
	var r, ss btcec.ModNScalar
	r.SetByteSlice(s.R.Bytes())
	ss.SetByteSlice(s.S.Bytes())
	sig := ecdsa.NewSignature(&r, &ss)
	return sig.Serialize(), sig, nil
}

// checkSigs verifies each signature against its input digest with the
// wallet key and returns the witness signatures (DER || SIGHASH_ALL).
func (u *Unsigned) checkSigs(sigs []Signature) ([][]byte, error) {
	if len(sigs) != len(u.tx.TxIn) {
		return nil, fmt.Errorf("%w: %d signatures for %d inputs", ErrBadSignature, len(sigs), len(u.tx.TxIn))
	}
	digests, err := u.SigHashes()
	if err != nil {
		return nil, err
	}
	pub, err := btcec.ParsePubKey(u.pub)
	if err != nil {
		// Only an Unsigned bound to its wallet key (checkUnsigned) signs.
		return nil, fmt.Errorf("%w: the transaction is not bound to a wallet key: %v", ErrBadSignature, err)
	}
	out := make([][]byte, len(sigs))
	for i, s := range sigs {
		der, sig, err := s.der()
		if err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
		if !sig.Verify(digests[i][:], pub) {
			return nil, fmt.Errorf("%w: input %d: does not verify against the wallet key", ErrBadSignature, i)
		}
		out[i] = append(der, byte(txscript.SigHashAll))
	}
	return out, nil
}

// Assemble builds the witnesses from one signature per input and verifies
// every input with btcd's script engine before returning.
func (u *Unsigned) Assemble(sigs []Signature) (*Signed, error) {
	wsigs, err := u.checkSigs(sigs)
	if err != nil {
		return nil, err
	}
	tx := u.tx.Copy()
	for i := range tx.TxIn {
		tx.TxIn[i].Witness = wire.TxWitness{wsigs[i], bytes.Clone(u.pub)}
	}
	if err := Verify(tx, u.prevouts); err != nil {
		return nil, err
	}
	return &Signed{tx: tx, unsigned: u}, nil
}

// Verify runs every input of tx through btcd's script engine with
// StandardVerifyFlags against the outputs it spends (prevouts, in input
// order).
func Verify(tx *wire.MsgTx, prevouts []*wire.TxOut) error {
	if len(prevouts) != len(tx.TxIn) {
		return fmt.Errorf("%w: %d prevouts for %d inputs", ErrBadSignature, len(prevouts), len(tx.TxIn))
	}
	fetch := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range tx.TxIn {
		fetch.AddPrevOut(in.PreviousOutPoint, prevouts[i])
	}
	hashes := txscript.NewTxSigHashes(tx, fetch)
	for i, p := range prevouts {
		vm, err := txscript.NewEngine(p.PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, p.Value, fetch)
		if err != nil {
			return fmt.Errorf("%w: input %d: %v", ErrBadSignature, i, err)
		}
		if err := vm.Execute(); err != nil {
			return fmt.Errorf("%w: input %d: %v", ErrBadSignature, i, err)
		}
	}
	return nil
}

// Signed is a fully signed transaction whose every input was verified.
type Signed struct {
	tx       *wire.MsgTx
	unsigned *Unsigned
}

// Tx returns a copy of the signed transaction.
func (s *Signed) Tx() *wire.MsgTx { return s.tx.Copy() }

// TxID returns the transaction ID.
func (s *Signed) TxID() chainhash.Hash { return s.tx.TxHash() }

// Bytes returns the network serialisation (with witnesses), for broadcast.
func (s *Signed) Bytes() []byte {
	var b bytes.Buffer
	_ = s.tx.Serialize(&b)
	return b.Bytes()
}

// Unsigned returns what was signed.
func (s *Signed) Unsigned() *Unsigned { return s.unsigned }

// Description describes the signed transaction (with its real vsize).
func (s *Signed) Description() Description {
	d := s.unsigned.Description()
	d.VSize = vsizeOf(s.tx)
	d.Signed = true
	return d
}

func vsizeOf(tx *wire.MsgTx) int64 {
	w := int64(tx.SerializeSizeStripped())*3 + int64(tx.SerializeSize())
	return (w + 3) / 4
}

// VerifySigned parses a raw signed transaction (for example one coming back
// from a cold ceremony) and checks that it is exactly u with witnesses: the
// same transaction without witnesses, and every input passing the script
// engine against u's prevouts.
func (u *Unsigned) VerifySigned(raw []byte) (*Signed, error) {
	tx, err := ParseRawTx(raw)
	if err != nil {
		return nil, err
	}
	var a, b bytes.Buffer
	_ = tx.SerializeNoWitness(&a)
	_ = u.tx.SerializeNoWitness(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		return nil, fmt.Errorf("%w: signed transaction %s is not the approved %s", ErrMismatch, tx.TxHash(), u.TxID())
	}
	if err := Verify(tx, u.prevouts); err != nil {
		return nil, err
	}
	return &Signed{tx: tx, unsigned: u}, nil
}

// ParseUnsigned parses the canonical unsigned bytes (Unsigned.Bytes) of a
// transaction of the wallet walletPub, so a signer can re-derive the
// payload hash and digests from what the ledger stored. Only the canonical
// encoding is accepted: re-encoding must give the input.
func ParseUnsigned(b []byte, walletPub []byte) (*Unsigned, error) {
	net, tx, prev, err := decodeUnsigned(b)
	if err != nil {
		return nil, err
	}
	u, err := checkUnsigned(net, walletPub, tx, prev)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(u.Bytes(), b) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformedTx)
	}
	return u, nil
}

// decodeUnsigned splits canonical unsigned bytes into their network, the
// transaction without witnesses and the prevouts, without judging them.
func decodeUnsigned(b []byte) (net *chaincfg.Params, tx *wire.MsgTx, prev []*wire.TxOut, err error) {
	if len(b) < 4 || len(b) > maxRawTx {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes", ErrMalformedTx, len(b))
	}
	magic := wire.BitcoinNet(binary.LittleEndian.Uint32(b[:4]))
	for _, p := range Networks {
		if p.Net == magic {
			net = p
		}
	}
	if net == nil {
		return nil, nil, nil, fmt.Errorf("%w: unknown network magic %08x", ErrMalformedTx, uint32(magic))
	}
	defer func() {
		if p := recover(); p != nil {
			net, tx, prev, err = nil, nil, nil, fmt.Errorf("%w: decoder panic: %v", ErrMalformedTx, p)
		}
	}()
	r := bytes.NewReader(b[4:])
	tx = new(wire.MsgTx)
	if err := tx.DeserializeNoWitness(r); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrMalformedTx, err)
	}
	prev = make([]*wire.TxOut, len(tx.TxIn))
	for i := range prev {
		prev[i] = new(wire.TxOut)
		if err := wire.ReadTxOut(r, 0, 0, prev[i]); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: prevout %d: %v", ErrMalformedTx, i, err)
		}
	}
	if r.Len() != 0 {
		return nil, nil, nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformedTx, r.Len())
	}
	return net, tx, prev, nil
}
