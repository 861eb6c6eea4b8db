package btc

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
)

// Errors the member adapter wraps for transactions it does not sign.
var (
	// ErrForeignOutput means an output pays an address that is neither the
	// one destination nor the wallet's own (change): a second payee.
	ErrForeignOutput = errors.New("btc: output to a foreign address")
	// ErrNotSignedOnline means the transaction is of a shape this signer
	// does not sign online: inputs that are not the wallet's P2WPKH, no
	// payee, several change outputs, dust, or a version, lock time or
	// sequence other than Build's.
	ErrNotSignedOnline = errors.New("btc: not signed online")
)

// Chain is Bitcoin as a committee member sees it ([chains.Chain]): the
// networks it signs for, by the ledger's network name. It signs P2WPKH
// spends of one wallet address that pay one destination and at most one
// change output back to the wallet, in the stored form Unsigned.Bytes
// (network magic, transaction without witnesses, then every spent output's
// value and script).
//
// The stored form is that canonical encoding rather than a PSBT: it commits
// to the network (a payload for one network never parses for another), it
// has exactly one byte spelling (a PSBT has many: key order, optional
// fields, base64 or binary), and PayloadHash is defined over it. PSBTs stay
// the cold ceremony's exchange format (psbt.go).
type Chain struct {
	networks map[string]*chaincfg.Params
}

var (
	_ chains.Chain        = (*Chain)(nil)
	_ chains.Unsigned     = (*checked)(nil)
	_ chains.SignedParser = (*checked)(nil)
	_ chains.Signed       = (*signedTx)(nil)
)

// NewChain returns the adapter for networks: the ledger's network name to
// one of Networks ({"devnet": "regtest"}). A payload for any other Bitcoin
// network is refused.
func NewChain(networks map[string]string) (*Chain, error) {
	m := make(map[string]*chaincfg.Params, len(networks))
	for name, netName := range networks {
		p, err := Network(netName)
		if err != nil {
			return nil, fmt.Errorf("btc: network %q: %w", name, err)
		}
		m[name] = p
	}
	return &Chain{networks: m}, nil
}

// Name implements chains.Chain.
func (*Chain) Name() string { return "btc" }

// Params returns the Bitcoin network parameters of the ledger's network
// name (ErrUnknownNetwork when the adapter has none): what the leader
// builds and parses addresses for.
func (c *Chain) Params(network string) (*chaincfg.Params, error) { return c.params(network) }

func (c *Chain) params(network string) (*chaincfg.Params, error) {
	p, ok := c.networks[network]
	if !ok {
		return nil, fmt.Errorf("%w: this signer has no btc network %q", ErrUnknownNetwork, network)
	}
	return p, nil
}

// Address implements chains.Chain: the wallet's P2WPKH address.
func (c *Chain) Address(network string, pubKey []byte) (string, error) {
	net, err := c.params(network)
	if err != nil {
		return "", err
	}
	a, err := WalletAddress(pubKey, net)
	if err != nil {
		return "", err
	}
	return a.EncodeAddress(), nil
}

// ParseUnsigned implements chains.Chain: payload must be the canonical
// Unsigned.Bytes of a transaction for network whose every input spends one
// P2WPKH address (the wallet's, checked against the key at Assemble), with
// exactly one output to another address (the destination) and at most one
// back to the spent address (change).
func (c *Chain) ParseUnsigned(network string, payload []byte) (chains.Unsigned, error) {
	want, err := c.params(network)
	if err != nil {
		return nil, err
	}
	net, tx, prev, err := decodeUnsigned(payload)
	if err != nil {
		return nil, err
	}
	if net.Net != want.Net {
		return nil, fmt.Errorf("%w: payload is for bitcoin %s, network %s is %s", ErrMismatch, networkName(net), network, networkName(want))
	}
	if len(prev) == 0 || !txscript.IsPayToWitnessPubKeyHash(prev[0].PkScript) {
		return nil, fmt.Errorf("%w: input 0 does not spend a P2WPKH output", ErrNotSignedOnline)
	}
	for i, p := range prev {
		if !txscript.IsPayToWitnessPubKeyHash(p.PkScript) {
			return nil, fmt.Errorf("%w: input %d spends %s, not a P2WPKH output", ErrNotSignedOnline, i, addressOf(p.PkScript, net))
		}
	}
	u, err := checkSpend(net, prev[0].PkScript, tx, prev)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(u.Bytes(), payload) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformedTx)
	}
	t, err := transferOf(u)
	if err != nil {
		return nil, err
	}
	return &checked{u: u, transfer: t}, nil
}

// transferOf reads what u does, refusing shapes Build does not make.
func transferOf(u *Unsigned) (chains.Transfer, error) {
	tx, net := u.tx, u.net
	if tx.Version != TxVersion || tx.LockTime != 0 {
		return chains.Transfer{}, fmt.Errorf("%w: version %d lock time %d (want %d and 0)", ErrNotSignedOnline, tx.Version, tx.LockTime, TxVersion)
	}
	t := chains.Transfer{Asset: "BTC", Outpoints: make([]string, len(tx.TxIn))}
	var in, out int64
	for i, txin := range tx.TxIn {
		if txin.Sequence != Sequence {
			return chains.Transfer{}, fmt.Errorf("%w: input %d sequence %#x (want %#x)", ErrNotSignedOnline, i, txin.Sequence, uint32(Sequence))
		}
		t.Outpoints[i] = txin.PreviousOutPoint.String()
		in += u.prevouts[i].Value
	}
	var dest *wire.TxOut
	changes := 0
	for i, o := range tx.TxOut {
		out += o.Value
		if IsDust(o) {
			return chains.Transfer{}, fmt.Errorf("%w: output %d of %d sat to %s is dust", ErrNotSignedOnline, i, o.Value, addressOf(o.PkScript, net))
		}
		if bytes.Equal(o.PkScript, u.walletScript) {
			if changes++; changes > 1 {
				return chains.Transfer{}, fmt.Errorf("%w: output %d is a second change output", ErrNotSignedOnline, i)
			}
			continue
		}
		if dest != nil {
			return chains.Transfer{}, fmt.Errorf("%w: output %d pays %s besides the destination %s; only change to the wallet %s may accompany it",
				ErrForeignOutput, i, addressOf(o.PkScript, net), addressOf(dest.PkScript, net), addressOf(u.walletScript, net))
		}
		dest = o
	}
	if dest == nil {
		return chains.Transfer{}, fmt.Errorf("%w: no output pays anyone but the wallet", ErrNotSignedOnline)
	}
	to, err := destination(dest.PkScript, net)
	if err != nil {
		return chains.Transfer{}, err
	}
	t.To = to
	t.Amount = amount.FromUint64(uint64(dest.Value))
	// checkSpend bounded both sums by MaxSatoshi and out by in.
	t.MaxFee = amount.FromUint64(uint64(in - out))
	t.VSize = EstimateVSize(len(tx.TxIn), tx.TxOut)
	return t, nil
}

// destination renders a payee script as its canonical address, refusing
// scripts that are not one of ParseAddress's types.
func destination(script []byte, net *chaincfg.Params) (string, error) {
	s := addressOf(script, net)
	a, err := ParseAddress(s, net)
	if err != nil {
		return "", fmt.Errorf("%w: destination %s: %w", ErrNotSignedOnline, s, err)
	}
	again, err := txscript.PayToAddrScript(a)
	if err != nil || !bytes.Equal(again, script) {
		return "", fmt.Errorf("%w: destination script %x has no canonical address", ErrNotSignedOnline, script)
	}
	return a.EncodeAddress(), nil
}

// ParseSigned implements chains.Chain: a network transaction (with
// witnesses) for network. Its Verify cannot succeed: the signatures commit
// to the spent amounts, which a signed transaction does not carry; verify a
// stored result with the unsigned transaction's ParseSigned
// ([chains.SignedParser]) instead.
func (c *Chain) ParseSigned(network string, raw []byte) (chains.Signed, error) {
	if _, err := c.params(network); err != nil {
		return nil, err
	}
	tx, err := parseSignedTx(raw)
	if err != nil {
		return nil, err
	}
	return &signedTx{tx: tx}, nil
}

// parseSignedTx parses a network transaction that must carry a witness on
// every input and be canonically encoded.
func parseSignedTx(raw []byte) (*wire.MsgTx, error) {
	tx, err := ParseRawTx(raw)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	_ = tx.Serialize(&b)
	if !bytes.Equal(b.Bytes(), raw) {
		return nil, fmt.Errorf("%w: non-canonical signed encoding", ErrMalformedTx)
	}
	for i, in := range tx.TxIn {
		if len(in.Witness) != 2 || len(in.SignatureScript) != 0 {
			return nil, fmt.Errorf("%w: input %d is not a signed P2WPKH spend", ErrMalformedTx, i)
		}
	}
	return tx, nil
}

// checked is an unsigned transaction parsed for one network; it knows the
// wallet's script, not yet its key.
type checked struct {
	u        *Unsigned
	transfer chains.Transfer
}

func (c *checked) PayloadHash() [32]byte { return c.u.PayloadHash() }

func (c *checked) Transfer() chains.Transfer {
	t := c.transfer
	t.Outpoints = append([]string(nil), t.Outpoints...)
	return t
}

// Digests are the BIP-143 SIGHASH_ALL digests, one per input in order.
func (c *checked) Digests() [][32]byte {
	d, err := c.u.SigHashes()
	if err != nil {
		// checkSpend admitted only P2WPKH prevouts, for which the sighash
		// cannot fail; an empty list makes every caller refuse.
		return nil
	}
	return d
}

// SpendKeys: every spent outpoint of wallet, as watermark.BTCOutpointKey
// spells it.
func (c *checked) SpendKeys(wallet string) []chains.SpendKey {
	out := make([]chains.SpendKey, len(c.transfer.Outpoints))
	for i, op := range c.transfer.Outpoints {
		out[i] = chains.SpendKey{Kind: chains.KindBTCOutpoint, Scope: wallet, ID: op}
	}
	return out
}

func (c *checked) Describe() string { return c.u.Description().Text() }

// bind returns c's transaction bound to the wallet key pubKey: its P2WPKH
// script must be the one every input spends.
func (c *checked) bind(pubKey []byte) (*Unsigned, error) {
	u, err := checkUnsigned(c.u.net, pubKey, c.u.tx.Copy(), c.u.Prevouts())
	if err != nil {
		return nil, fmt.Errorf("%w: the inputs are not the key's: %w", ErrMismatch, err)
	}
	return u, nil
}

// Assemble implements chains.Unsigned: one signature per input (low-S, each
// verifying against its input's digest and pubKey), witnesses
// [DER||SIGHASH_ALL, pubKey], every input run through btcd's script engine.
func (c *checked) Assemble(pubKey []byte, sigs []chains.Signature) (chains.Signed, error) {
	u, err := c.bind(pubKey)
	if err != nil {
		return nil, err
	}
	bs := make([]Signature, len(sigs))
	for i, s := range sigs {
		bs[i] = Signature{R: new(big.Int).SetBytes(s.R[:]), S: new(big.Int).SetBytes(s.S[:])}
	}
	st, err := u.Assemble(bs)
	if err != nil {
		return nil, err
	}
	return &signedTx{tx: st.tx, unsigned: c.u}, nil
}

// ParseSigned implements chains.SignedParser: raw must be this very
// transaction with witnesses; Verify then runs the script engine with the
// spent amounts of the payload.
func (c *checked) ParseSigned(raw []byte) (chains.Signed, error) {
	tx, err := parseSignedTx(raw)
	if err != nil {
		return nil, err
	}
	return &signedTx{tx: tx, unsigned: c.u}, nil
}

// signedTx is a signed transaction, with the unsigned one it claims to be
// when known.
type signedTx struct {
	tx       *wire.MsgTx
	unsigned *Unsigned
}

func (t *signedTx) Bytes() []byte {
	var b bytes.Buffer
	_ = t.tx.Serialize(&b)
	return b.Bytes()
}

// Hash is the txid (byte-reversed hex, as explorers show it).
func (t *signedTx) Hash() string { return t.tx.TxHash().String() }

// ErrNoPrevouts is returned by Verify of a signed transaction parsed
// without its unsigned payload.
var ErrNoPrevouts = errors.New("btc: signed transaction cannot be verified without the amounts it spends")

// Verify implements chains.Signed: the transaction without witnesses and
// the spent outputs are those of the unsigned transaction whose payload
// hash is payloadHash, every input spends the P2WPKH of pubKey, and every
// input passes btcd's script engine against its prevout script and amount.
func (t *signedTx) Verify(payloadHash [32]byte, pubKey []byte) error {
	if t.unsigned == nil {
		return ErrNoPrevouts
	}
	u := t.unsigned
	if u.PayloadHash() != payloadHash {
		return fmt.Errorf("%w: signed for payload %x, approved %x", ErrMismatch, u.PayloadHash(), payloadHash)
	}
	if _, err := (&checked{u: u}).bind(pubKey); err != nil {
		return err
	}
	var a, b bytes.Buffer
	_ = t.tx.SerializeNoWitness(&a)
	_ = u.tx.SerializeNoWitness(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		return fmt.Errorf("%w: signed transaction %s is not the approved %s", ErrMismatch, t.tx.TxHash(), u.TxID())
	}
	for i, in := range t.tx.TxIn {
		if !bytes.Equal(in.Witness[1], pubKey) {
			return fmt.Errorf("%w: input %d is signed by another key", ErrBadSignature, i)
		}
		if err := lowS(in.Witness[0]); err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
	}
	return Verify(t.tx, u.prevouts)
}

// lowS checks a witness signature (DER || sighash type) is strict DER,
// SIGHASH_ALL and low-S, whatever the script flags in force.
func lowS(wsig []byte) error {
	if len(wsig) < 2 || wsig[len(wsig)-1] != byte(txscript.SigHashAll) {
		return fmt.Errorf("%w: not a SIGHASH_ALL signature", ErrBadSignature)
	}
	der := wsig[:len(wsig)-1]
	sig, err := ecdsa.ParseDERSignature(der)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	// Serialize writes minimal DER with S normalised low: any other
	// spelling, high S included, differs from it.
	if !bytes.Equal(sig.Serialize(), der) {
		return fmt.Errorf("%w: high S or non-minimal DER", ErrBadSignature)
	}
	return nil
}
