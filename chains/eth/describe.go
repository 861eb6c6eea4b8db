package eth

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/custody-dev/custody/amount"
)

// ErrMismatch is returned (wrapped in *MismatchError or with a hash) when a
// transaction does not match what operators approved.
var ErrMismatch = errors.New("eth: transaction differs from approved payload")

// Description is a transaction in the terms an operator approves and a
// signer re-checks. Every field is compared by Compare.
type Description struct {
	// Type is 0 (legacy EIP-155) or 2 (EIP-1559).
	Type    uint8    `json:"type"`
	ChainID *big.Int `json:"chain_id"`
	Nonce   uint64   `json:"nonce"`
	// To is the beneficiary: the ETH recipient, or the token recipient
	// decoded from transfer(address,uint256) calldata.
	To common.Address `json:"to"`
	// Token is the ERC-20 contract (the transaction's own "to"), nil for ETH.
	Token *common.Address `json:"token,omitempty"`
	// Amount is in base units of the asset (wei or token units).
	Amount    *big.Int `json:"amount"`
	GasLimit  uint64   `json:"gas_limit"`
	GasPrice  *big.Int `json:"gas_price,omitempty"`                // type 0 only
	GasTipCap *big.Int `json:"max_priority_fee_per_gas,omitempty"` // type 2 only
	GasFeeCap *big.Int `json:"max_fee_per_gas,omitempty"`          // type 2 only
	// Data is the exact calldata (empty for ETH transfers).
	Data []byte `json:"data,omitempty"`
	// From is the recovered sender; set only for signed transactions.
	From *common.Address `json:"from,omitempty"`
}

// MaxFee is the most wei the transaction can spend on gas: gas limit times
// gas price (type 0) or max fee per gas (type 2).
func (d Description) MaxFee() *big.Int {
	price := d.GasPrice
	if d.Type == types.DynamicFeeTxType {
		price = d.GasFeeCap
	}
	if price == nil {
		return new(big.Int)
	}
	return new(big.Int).Mul(new(big.Int).SetUint64(d.GasLimit), price)
}

// Text renders d for a human, with amounts in units of asset when it matches
// the described token (or ETH), else in base units.
func (d Description) Text(asset Asset) string {
	amount := d.Amount.String() + " base units"
	if (asset.Token == nil && d.Token == nil) || (asset.Token != nil && d.Token != nil && *asset.Token == *d.Token) {
		amount = formatAmount(d.Amount, asset)
	}
	what := "ETH"
	if d.Token != nil {
		what = "token " + d.Token.Hex()
	}
	s := fmt.Sprintf("send %s (%s) to %s on chain %s, nonce %d, gas limit %d, max fee %s wei",
		amount, what, d.To.Hex(), d.ChainID, d.Nonce, d.GasLimit, d.MaxFee())
	if d.From != nil {
		s += ", from " + d.From.Hex()
	}
	return s
}

// formatAmount renders v in whole units of a, in the canonical spelling
// amount.ParseUnits reads. A value outside 0..2^256-1 (never produced by
// NewUnsigned or ParseUnsigned) is shown so that it cannot pass for one.
func formatAmount(v *big.Int, a Asset) string {
	x, err := amount.FromBig(v)
	if err != nil {
		return fmt.Sprintf("<invalid amount %v> %s", v, a.Symbol)
	}
	return x.Format(int(a.Decimals)) + " " + a.Symbol
}

func (d Description) clone() Description {
	c := d
	cp := func(v *big.Int) *big.Int {
		if v == nil {
			return nil
		}
		return new(big.Int).Set(v)
	}
	c.ChainID, c.Amount, c.GasPrice, c.GasTipCap, c.GasFeeCap = cp(d.ChainID), cp(d.Amount), cp(d.GasPrice), cp(d.GasTipCap), cp(d.GasFeeCap)
	c.Data = bytes.Clone(d.Data)
	if d.Token != nil {
		t := *d.Token
		c.Token = &t
	}
	if d.From != nil {
		f := *d.From
		c.From = &f
	}
	return c
}

// describe interprets an unsigned transaction; anything that is not a plain
// ETH transfer or an ERC-20 transfer is ErrUnsupportedTx.
func describe(tx *types.Transaction, chainID *big.Int) (Description, error) {
	if tx.To() == nil {
		return Description{}, fmt.Errorf("%w: contract creation", ErrUnsupportedTx)
	}
	d := Description{
		Type:     tx.Type(),
		ChainID:  new(big.Int).Set(chainID),
		Nonce:    tx.Nonce(),
		To:       *tx.To(),
		Amount:   new(big.Int).Set(tx.Value()),
		GasLimit: tx.Gas(),
		Data:     bytes.Clone(tx.Data()),
	}
	switch tx.Type() {
	case types.LegacyTxType:
		d.GasPrice = new(big.Int).Set(tx.GasPrice())
	case types.DynamicFeeTxType:
		d.GasTipCap = new(big.Int).Set(tx.GasTipCap())
		d.GasFeeCap = new(big.Int).Set(tx.GasFeeCap())
	default:
		return Description{}, fmt.Errorf("%w: type %d", ErrUnsupportedTx, tx.Type())
	}
	if len(d.Data) == 0 {
		return d, nil
	}
	to, amount, err := DecodeTransfer(d.Data)
	if err != nil {
		return Description{}, err
	}
	if tx.Value().Sign() != 0 {
		return Description{}, fmt.Errorf("%w: token transfer that also sends ETH", ErrUnsupportedTx)
	}
	token := *tx.To()
	d.Token, d.To, d.Amount = &token, to, amount
	return d, nil
}

// DecodeTransfer decodes ERC-20 transfer(address,uint256) calldata, strictly:
// exactly 68 bytes, the transfer selector, a clean 20-byte address word.
func DecodeTransfer(data []byte) (common.Address, *big.Int, error) {
	if len(data) != 68 || !bytes.Equal(data[:4], TransferSelector[:]) {
		return common.Address{}, nil, fmt.Errorf("%w: calldata is not ERC-20 transfer(address,uint256)", ErrUnsupportedTx)
	}
	for _, b := range data[4:16] {
		if b != 0 {
			return common.Address{}, nil, fmt.Errorf("%w: dirty address word in transfer calldata", ErrUnsupportedTx)
		}
	}
	return common.BytesToAddress(data[16:36]), new(big.Int).SetBytes(data[36:68]), nil
}

// MismatchError names the first field in which a parsed transaction differs
// from the approved description. It matches ErrMismatch with errors.Is.
type MismatchError struct {
	Field    string
	Approved string
	Got      string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("eth: transaction differs from approved payload in %s: approved %s, got %s", e.Field, e.Approved, e.Got)
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Compare checks that got describes the same transaction as approved and
// returns a *MismatchError naming the first differing field, in this order:
// chain_id, type, nonce, token, to, amount, gas_limit, gas_price,
// max_priority_fee_per_gas, max_fee_per_gas, data, from. From is compared
// only when approved.From is set (an approved unsigned payload has none).
func Compare(approved, got Description) error {
	str := func(v *big.Int) string {
		if v == nil {
			return "none"
		}
		return v.String()
	}
	addr := func(a *common.Address) string {
		if a == nil {
			return "none"
		}
		return a.Hex()
	}
	bigEq := func(a, b *big.Int) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return a.Cmp(b) == 0
	}
	addrEq := func(a, b *common.Address) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return *a == *b
	}
	switch {
	case !bigEq(approved.ChainID, got.ChainID):
		return &MismatchError{"chain_id", str(approved.ChainID), str(got.ChainID)}
	case approved.Type != got.Type:
		return &MismatchError{"type", fmt.Sprint(approved.Type), fmt.Sprint(got.Type)}
	case approved.Nonce != got.Nonce:
		return &MismatchError{"nonce", fmt.Sprint(approved.Nonce), fmt.Sprint(got.Nonce)}
	case !addrEq(approved.Token, got.Token):
		return &MismatchError{"token", addr(approved.Token), addr(got.Token)}
	case approved.To != got.To:
		return &MismatchError{"to", approved.To.Hex(), got.To.Hex()}
	case !bigEq(approved.Amount, got.Amount):
		return &MismatchError{"amount", str(approved.Amount), str(got.Amount)}
	case approved.GasLimit != got.GasLimit:
		return &MismatchError{"gas_limit", fmt.Sprint(approved.GasLimit), fmt.Sprint(got.GasLimit)}
	case !bigEq(approved.GasPrice, got.GasPrice):
		return &MismatchError{"gas_price", str(approved.GasPrice), str(got.GasPrice)}
	case !bigEq(approved.GasTipCap, got.GasTipCap):
		return &MismatchError{"max_priority_fee_per_gas", str(approved.GasTipCap), str(got.GasTipCap)}
	case !bigEq(approved.GasFeeCap, got.GasFeeCap):
		return &MismatchError{"max_fee_per_gas", str(approved.GasFeeCap), str(got.GasFeeCap)}
	case !bytes.Equal(approved.Data, got.Data):
		return &MismatchError{"data", fmt.Sprintf("0x%x", approved.Data), fmt.Sprintf("0x%x", got.Data)}
	case approved.From != nil && !addrEq(approved.From, got.From):
		return &MismatchError{"from", addr(approved.From), addr(got.From)}
	}
	return nil
}
