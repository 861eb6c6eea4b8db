package btc

import (
	"bytes"
	"errors"
	"fmt"
	"sort"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custody-dev/custody/amount"
)

// Errors callers branch on.
var (
	// ErrBadIntent means the withdrawal intent cannot become a transaction.
	ErrBadIntent = errors.New("btc: invalid intent")
	// ErrInsufficientFunds is matched by *InsufficientFundsError.
	ErrInsufficientFunds = errors.New("btc: insufficient funds")
	// ErrDust means the payment output itself would be below the dust limit.
	ErrDust = errors.New("btc: amount below dust limit")
)

// InsufficientFundsError says how much was needed (amount + fee at the
// requested rate when spending every given UTXO) and how much was there.
type InsufficientFundsError struct {
	Needed, Available int64
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("btc: insufficient funds: need %d sat, have %d sat", e.Needed, e.Available)
}

// Is makes errors.Is(err, ErrInsufficientFunds) true.
func (e *InsufficientFundsError) Is(target error) bool { return target == ErrInsufficientFunds }

const (
	// MaxFeeRate (sat/vB) guards against a unit mix-up (sat/kvB passed as
	// sat/vB) turning a withdrawal into a donation to miners.
	MaxFeeRate = 10_000
	// TxVersion is the version of built transactions.
	TxVersion = 2
	// Sequence signals opt-in replace-by-fee (BIP-125) so a stuck
	// withdrawal can be fee-bumped; it also enables nLockTime.
	Sequence = wire.MaxTxInSequenceNum - 2
	// maxInputs bounds selection so a transaction stays standard (<100 kvB).
	maxInputs = 1000
)

// UTXO is an unspent output of the wallet.
type UTXO struct {
	OutPoint      wire.OutPoint
	Value         int64 // satoshi
	PkScript      []byte
	Confirmations int64
}

// Intent is a withdrawal as the leader builds it.
type Intent struct {
	Net          *chaincfg.Params
	WalletPubKey []byte // 33-byte compressed key of the wallet
	To           string // destination address on Net
	Amount       int64  // satoshi, > 0
	FeeRate      int64  // sat/vB, 1..MaxFeeRate
	UTXOs        []UTXO // candidates, all paying the wallet's P2WPKH script
}

// ParseBTC converts what a person types in BTC ("0.5") to satoshi exactly:
// amount.ParseUnits with 8 decimals, so the grammar and the sentinel errors
// are the amount package's; more than 21e6 BTC is amount.ErrOverflow too.
func ParseBTC(s string) (int64, error) {
	v, err := amount.ParseUnits(s, 8)
	if err != nil {
		return 0, err
	}
	if v.Cmp(amount.FromUint64(btcutil.MaxSatoshi)) > 0 {
		return 0, fmt.Errorf("%w: %q is more than 21e6 BTC", amount.ErrOverflow, s)
	}
	return v.Big().Int64(), nil
}

// Size estimates, in weight units. A P2WPKH input is 41 non-witness bytes
// (36 outpoint, 1 empty scriptSig length, 4 sequence) and a witness of
// 1 (item count) + 1+72 (DER signature + sighash byte, worst case) +
// 1+33 (compressed key) = 108 bytes. The estimate is therefore an upper
// bound: real signatures are 71 or 72 bytes.
const (
	p2wpkhInputWeight = 41*4 + 108
	txOverheadWeight  = (4+4)*4 + 2 // version, locktime, segwit marker+flag
)

// EstimateVSize returns the virtual size of a transaction spending nIn
// P2WPKH inputs to outs, rounded up.
func EstimateVSize(nIn int, outs []*wire.TxOut) int64 {
	w := int64(txOverheadWeight)
	w += int64(wire.VarIntSerializeSize(uint64(nIn))+wire.VarIntSerializeSize(uint64(len(outs)))) * 4
	w += int64(nIn) * p2wpkhInputWeight
	for _, o := range outs {
		w += int64(o.SerializeSize()) * 4
	}
	return (w + 3) / 4
}

// DustLimit is the smallest non-dust value of an output by btcd's (and
// Bitcoin Core's) relay policy: three times the fee at 1 sat/vB of creating
// and later spending it. 294 sat for P2WPKH, 330 for P2WSH/P2TR, 546 for
// P2PKH, 540 for P2SH. It mirrors btcd's mempool.GetDustThreshold, which is
// not imported because that package pulls testify into the build.
func DustLimit(o *wire.TxOut) int64 {
	size := int64(o.SerializeSize()) + 41 // output + outpoint, sequence, script length
	if txscript.IsWitnessProgram(o.PkScript) {
		size += 107 / 4 // discounted signature and key in the witness
	} else {
		size += 107 // signature and key in scriptSig
	}
	return 3 * size
}

// IsDust reports whether an output is below DustLimit (unspendable outputs
// are always dust).
func IsDust(o *wire.TxOut) bool {
	return txscript.IsUnspendable(o.PkScript) || o.Value < DustLimit(o)
}

// Build selects coins and returns the unsigned transaction.
//
// Selection is largest-first over the given UTXOs (ties by outpoint), adding
// inputs until they cover amount + fee. The fee is FeeRate x EstimateVSize.
// If what is left after amount and the fee of a transaction with change is
// at least the dust limit of a P2WPKH output, it goes back to the wallet as
// the last output; otherwise there is no change output and the remainder is
// added to the fee (never more than the dust limit plus one change output's
// fee). The outputs are [payment] or [payment, change].
func Build(in Intent) (*Unsigned, error) {
	if in.Net == nil {
		return nil, fmt.Errorf("%w: no network", ErrBadIntent)
	}
	wallet, err := WalletAddress(in.WalletPubKey, in.Net)
	if err != nil {
		return nil, err
	}
	walletScript, _ := txscript.PayToAddrScript(wallet)
	to, err := ParseAddress(in.To, in.Net)
	if err != nil {
		return nil, err
	}
	toScript, err := txscript.PayToAddrScript(to)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	if in.Amount <= 0 || in.Amount > btcutil.MaxSatoshi {
		return nil, fmt.Errorf("%w: amount %d sat out of range", ErrBadIntent, in.Amount)
	}
	if in.FeeRate < 1 || in.FeeRate > MaxFeeRate {
		return nil, fmt.Errorf("%w: fee rate %d sat/vB outside 1..%d", ErrBadIntent, in.FeeRate, MaxFeeRate)
	}
	pay := wire.NewTxOut(in.Amount, toScript)
	if IsDust(pay) {
		return nil, fmt.Errorf("%w: %d sat to %s", ErrDust, in.Amount, in.To)
	}
	cands := make([]UTXO, 0, len(in.UTXOs))
	seen := map[wire.OutPoint]bool{}
	var available int64
	for _, u := range in.UTXOs {
		if seen[u.OutPoint] {
			return nil, fmt.Errorf("%w: UTXO %s listed twice", ErrBadIntent, u.OutPoint)
		}
		seen[u.OutPoint] = true
		if !bytes.Equal(u.PkScript, walletScript) {
			return nil, fmt.Errorf("%w: UTXO %s does not pay the wallet address %s", ErrBadIntent, u.OutPoint, wallet.EncodeAddress())
		}
		if u.Value <= 0 || u.Value > btcutil.MaxSatoshi {
			return nil, fmt.Errorf("%w: UTXO %s value %d out of range", ErrBadIntent, u.OutPoint, u.Value)
		}
		available += u.Value
		cands = append(cands, u)
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].Value != cands[j].Value {
			return cands[i].Value > cands[j].Value
		}
		if c := bytes.Compare(cands[i].OutPoint.Hash[:], cands[j].OutPoint.Hash[:]); c != 0 {
			return c < 0
		}
		return cands[i].OutPoint.Index < cands[j].OutPoint.Index
	})
	change := wire.NewTxOut(0, walletScript)
	var (
		sum  int64
		used []UTXO
	)
	for _, c := range cands {
		if len(used) == maxInputs {
			break
		}
		used = append(used, c)
		sum += c.Value
		feeNoChange := EstimateVSize(len(used), []*wire.TxOut{pay}) * in.FeeRate
		if sum < in.Amount+feeNoChange {
			continue
		}
		outs := []*wire.TxOut{pay}
		feeWithChange := EstimateVSize(len(used), []*wire.TxOut{pay, change}) * in.FeeRate
		if rest := sum - in.Amount - feeWithChange; rest > 0 {
			if c := wire.NewTxOut(rest, walletScript); !IsDust(c) {
				outs = append(outs, c)
			}
		}
		return newUnsigned(in.Net, in.WalletPubKey, used, outs)
	}
	needed := in.Amount + EstimateVSize(max(len(cands), 1), []*wire.TxOut{pay})*in.FeeRate
	return nil, &InsufficientFundsError{Needed: needed, Available: available}
}
