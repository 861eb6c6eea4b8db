package btc

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// ErrMismatch is matched by *MismatchError.
var ErrMismatch = errors.New("btc: transaction differs from approved payload")

// Description is a transaction in the terms an operator approves and a
// signer re-checks. Compare covers every field except VSize and Signed.
type Description struct {
	Network  string   `json:"network"`
	TxID     string   `json:"txid"`
	Version  int32    `json:"version"`
	LockTime uint32   `json:"locktime"`
	Inputs   []Input  `json:"inputs"`
	Outputs  []Output `json:"outputs"`
	// Fee is inputs minus outputs in satoshi, -1 when an input value is
	// unknown (a raw transaction described without its prevouts).
	Fee int64 `json:"fee"`
	// VSize is the estimated virtual size (upper bound) when unsigned, the
	// real one when signed.
	VSize  int64 `json:"vsize"`
	Signed bool  `json:"signed"`
}

// Input is one spent outpoint.
type Input struct {
	OutPoint string `json:"outpoint"` // txid:index
	Value    int64  `json:"value"`    // satoshi, -1 when unknown
	Address  string `json:"address"`  // "" when unknown
	Wallet   bool   `json:"wallet"`   // spends the wallet address
	Sequence uint32 `json:"sequence"`
}

// Output is one created output.
type Output struct {
	Address string `json:"address"` // or "script:<hex>" for non-standard scripts
	Value   int64  `json:"value"`   // satoshi
	Change  bool   `json:"change"`  // pays the wallet address back
}

// Description describes the unsigned transaction.
func (u *Unsigned) Description() Description {
	d := describeTx(u.tx, u.prevouts, u.walletScript, u.net)
	d.VSize = EstimateVSize(len(u.tx.TxIn), u.tx.TxOut)
	return d
}

func describeTx(tx *wire.MsgTx, prev []*wire.TxOut, walletScript []byte, net *chaincfg.Params) Description {
	d := Description{Network: networkName(net), TxID: tx.TxHash().String(), Version: tx.Version, LockTime: tx.LockTime, VSize: vsizeOf(tx)}
	var in, out int64
	known := true
	for i, txin := range tx.TxIn {
		x := Input{OutPoint: txin.PreviousOutPoint.String(), Value: -1, Sequence: txin.Sequence}
		if i < len(prev) && prev[i] != nil {
			x.Value = prev[i].Value
			x.Address = addressOf(prev[i].PkScript, net)
			x.Wallet = walletScript != nil && bytes.Equal(prev[i].PkScript, walletScript)
			in += prev[i].Value
		} else {
			known = false
		}
		d.Inputs = append(d.Inputs, x)
	}
	for _, o := range tx.TxOut {
		d.Outputs = append(d.Outputs, Output{Address: addressOf(o.PkScript, net), Value: o.Value, Change: walletScript != nil && bytes.Equal(o.PkScript, walletScript)})
		out += o.Value
	}
	d.Fee = -1
	if known {
		d.Fee = in - out
	}
	return d
}

// Text renders d for a human, amounts in BTC.
func (d Description) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bitcoin %s tx %s\n", d.Network, d.TxID)
	for _, in := range d.Inputs {
		v := "unknown amount"
		if in.Value >= 0 {
			v = btcutil.Amount(in.Value).String()
		}
		w := ""
		if in.Wallet {
			w = " (wallet)"
		}
		fmt.Fprintf(&b, "  in  %s %s %s%s\n", in.OutPoint, v, in.Address, w)
	}
	for _, o := range d.Outputs {
		c := ""
		if o.Change {
			c = " (change)"
		}
		fmt.Fprintf(&b, "  out %s %s%s\n", btcutil.Amount(o.Value), o.Address, c)
	}
	if d.Fee >= 0 {
		fmt.Fprintf(&b, "  fee %s (%d vB)\n", btcutil.Amount(d.Fee), d.VSize)
	} else {
		fmt.Fprintf(&b, "  fee unknown (%d vB)\n", d.VSize)
	}
	return b.String()
}

// maxRawTx bounds the parsers' input: a standard transaction is < 400 kWU.
const maxRawTx = 1 << 20

// ParseRawTx parses a network-serialised transaction (with or without
// witnesses), refusing trailing bytes and inputs over maxRawTx.
func ParseRawTx(b []byte) (tx *wire.MsgTx, err error) {
	if len(b) == 0 || len(b) > maxRawTx {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformedTx, len(b))
	}
	defer func() {
		if p := recover(); p != nil {
			tx, err = nil, fmt.Errorf("%w: decoder panic: %v", ErrMalformedTx, p)
		}
	}()
	r := bytes.NewReader(b)
	tx = new(wire.MsgTx)
	if err := tx.Deserialize(r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedTx, err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformedTx, r.Len())
	}
	if len(tx.TxIn) == 0 || len(tx.TxOut) == 0 {
		return nil, fmt.Errorf("%w: no inputs or no outputs", ErrMalformedTx)
	}
	return tx, nil
}

// DescribeRawTx describes a raw transaction. prevouts, when known, gives the
// spent outputs (missing ones leave that input's value unknown and the fee
// -1); walletPub, when set, marks wallet inputs and change outputs.
func DescribeRawTx(raw []byte, net *chaincfg.Params, walletPub []byte, prevouts map[wire.OutPoint]*wire.TxOut) (Description, error) {
	tx, err := ParseRawTx(raw)
	if err != nil {
		return Description{}, err
	}
	var walletScript []byte
	if walletPub != nil {
		a, err := WalletAddress(walletPub, net)
		if err != nil {
			return Description{}, err
		}
		walletScript, _ = txscript.PayToAddrScript(a)
	}
	prev := make([]*wire.TxOut, len(tx.TxIn))
	for i, in := range tx.TxIn {
		prev[i] = prevouts[in.PreviousOutPoint]
	}
	d := describeTx(tx, prev, walletScript, net)
	d.Signed = tx.HasWitness()
	return d, nil
}

// MismatchError names the first field in which a transaction differs from
// the approved description, e.g. "outputs[1].address".
type MismatchError struct {
	Field    string
	Approved string
	Got      string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("btc: transaction differs from approved payload in %s: approved %s, got %s", e.Field, e.Approved, e.Got)
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Compare checks that got describes the same transaction as approved, in
// this order: network, version, locktime, number of inputs and outputs, each
// input (outpoint, value, address, wallet, sequence),
// each output (address, value, change), fee, txid. It returns a *MismatchError
// naming the first difference. TxID alone would suffice for the
// transaction itself; the rest makes the error say what changed and
// covers the prevout values that the txid does not commit to.
func Compare(approved, got Description) error {
	mm := func(f string, a, b any) error {
		return &MismatchError{Field: f, Approved: fmt.Sprint(a), Got: fmt.Sprint(b)}
	}
	switch {
	case approved.Network != got.Network:
		return mm("network", approved.Network, got.Network)
	case approved.Version != got.Version:
		return mm("version", approved.Version, got.Version)
	case approved.LockTime != got.LockTime:
		return mm("locktime", approved.LockTime, got.LockTime)
	case len(approved.Inputs) != len(got.Inputs):
		return mm("inputs", len(approved.Inputs), len(got.Inputs))
	case len(approved.Outputs) != len(got.Outputs):
		return mm("outputs", len(approved.Outputs), len(got.Outputs))
	}
	for i, a := range approved.Inputs {
		g := got.Inputs[i]
		f := fmt.Sprintf("inputs[%d].", i)
		switch {
		case a.OutPoint != g.OutPoint:
			return mm(f+"outpoint", a.OutPoint, g.OutPoint)
		case a.Value != g.Value:
			return mm(f+"value", a.Value, g.Value)
		case a.Address != g.Address:
			return mm(f+"address", a.Address, g.Address)
		case a.Wallet != g.Wallet:
			return mm(f+"wallet", a.Wallet, g.Wallet)
		case a.Sequence != g.Sequence:
			return mm(f+"sequence", a.Sequence, g.Sequence)
		}
	}
	for i, a := range approved.Outputs {
		g := got.Outputs[i]
		f := fmt.Sprintf("outputs[%d].", i)
		switch {
		case a.Address != g.Address:
			return mm(f+"address", a.Address, g.Address)
		case a.Value != g.Value:
			return mm(f+"value", a.Value, g.Value)
		case a.Change != g.Change:
			return mm(f+"change", a.Change, g.Change)
		}
	}
	if approved.Fee != got.Fee {
		return mm("fee", approved.Fee, got.Fee)
	}
	if approved.TxID != got.TxID {
		return mm("txid", approved.TxID, got.TxID)
	}
	return nil
}
