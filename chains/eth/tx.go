package eth

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rlp"

	"github.com/custody-dev/custody/amount"
)

// Errors callers branch on.
var (
	// ErrBadIntent means the withdrawal intent cannot become a transaction.
	ErrBadIntent = errors.New("eth: invalid intent")
	// ErrMalformedTx means raw transaction bytes do not parse as a
	// transaction this package produces (canonical, typed 0 or 2, EIP-155).
	ErrMalformedTx = errors.New("eth: malformed transaction")
	// ErrUnsupportedTx means the transaction parses but is not a plain ETH
	// transfer or an ERC-20 transfer(address,uint256) call; signers refuse
	// to describe (and therefore to sign) anything else.
	ErrUnsupportedTx = errors.New("eth: unsupported transaction")
	// ErrBadSignature means (r, s, recovery id) are out of range, high-S,
	// or do not recover to the wallet address.
	ErrBadSignature = errors.New("eth: invalid signature")
)

// PayloadDomain is the domain tag of PayloadHash. Versioned so that a future
// encoding can never collide with this one.
const PayloadDomain = "custody/eth/unsigned-tx/v1"

// TransferSelector is the 4-byte selector of ERC-20 transfer(address,uint256).
var TransferSelector = [4]byte{0xa9, 0x05, 0x9c, 0xbb}

// secp256k1N and its half bound signature values (EIP-2 low-S rule).
var (
	secp256k1N     = btcec.S256().N
	secp256k1HalfN = new(big.Int).Rsh(secp256k1N, 1)
)

// Asset names what is transferred. Token nil means native ETH.
type Asset struct {
	Symbol   string          `json:"symbol"`
	Decimals uint8           `json:"decimals"`
	Token    *common.Address `json:"token,omitempty"`
}

// ETH is the native asset (18 decimals).
var ETH = Asset{Symbol: "ETH", Decimals: 18}

// ERC20 describes a token contract.
func ERC20(symbol string, decimals uint8, token common.Address) Asset {
	return Asset{Symbol: symbol, Decimals: decimals, Token: &token}
}

// ParseAmount converts what a person types, in whole units of a ("1.5"),
// to base units, exactly: amount.ParseUnits with a's decimals, so the
// grammar and the sentinel errors are the amount package's.
func (a Asset) ParseAmount(s string) (*big.Int, error) {
	v, err := amount.ParseUnits(s, int(a.Decimals))
	if err != nil {
		return nil, err
	}
	return v.Big(), nil
}

// Fees are the gas price fields. Legacy selects an EIP-155 type-0
// transaction priced by GasPrice; otherwise an EIP-1559 type-2 transaction
// with GasTipCap (max priority fee) and GasFeeCap (max fee per gas).
type Fees struct {
	Legacy    bool     `json:"legacy"`
	GasPrice  *big.Int `json:"gas_price,omitempty"`
	GasTipCap *big.Int `json:"max_priority_fee_per_gas,omitempty"`
	GasFeeCap *big.Int `json:"max_fee_per_gas,omitempty"`
}

// Intent is a withdrawal as the leader builds it: everything a transaction
// needs, nothing chosen implicitly.
type Intent struct {
	ChainID  *big.Int
	Nonce    uint64
	To       common.Address // the beneficiary, also for tokens
	Asset    Asset
	Amount   *big.Int // base units, > 0
	GasLimit uint64   // 21000 for ETH; estimate for tokens
	Fees     Fees
}

// Unsigned is a validated unsigned transaction with its chain ID bound.
// Construct it with NewUnsigned or ParseUnsigned; it is immutable.
type Unsigned struct {
	tx      *types.Transaction
	chainID *big.Int
	desc    Description
	raw     []byte
}

func checkWord(name string, v *big.Int, positive bool) error {
	if v == nil {
		return fmt.Errorf("%w: %s missing", ErrBadIntent, name)
	}
	if v.Sign() < 0 || (positive && v.Sign() == 0) {
		return fmt.Errorf("%w: %s must be positive", ErrBadIntent, name)
	}
	if v.BitLen() > 256 {
		return fmt.Errorf("%w: %s overflows 256 bits", ErrBadIntent, name)
	}
	return nil
}

// TransferCalldata encodes transfer(to, amount) for an ERC-20 contract.
func TransferCalldata(to common.Address, amount *big.Int) []byte {
	data := make([]byte, 4+32+32)
	copy(data, TransferSelector[:])
	copy(data[4+12:], to[:])
	amount.FillBytes(data[36:])
	return data
}

// NewUnsigned builds the unsigned transaction for in.
func NewUnsigned(in Intent) (*Unsigned, error) {
	if err := checkWord("chain id", in.ChainID, true); err != nil {
		return nil, err
	}
	if err := checkWord("amount", in.Amount, true); err != nil {
		return nil, err
	}
	if in.To == (common.Address{}) {
		return nil, fmt.Errorf("%w: destination is the zero address", ErrBadIntent)
	}
	if in.GasLimit < 21000 {
		return nil, fmt.Errorf("%w: gas limit %d below 21000", ErrBadIntent, in.GasLimit)
	}
	to, value, data := in.To, new(big.Int).Set(in.Amount), []byte(nil)
	if in.Asset.Token != nil {
		if *in.Asset.Token == (common.Address{}) {
			return nil, fmt.Errorf("%w: token contract is the zero address", ErrBadIntent)
		}
		to, value, data = *in.Asset.Token, new(big.Int), TransferCalldata(in.To, in.Amount)
	}
	var inner types.TxData
	if in.Fees.Legacy {
		if err := checkWord("gas price", in.Fees.GasPrice, true); err != nil {
			return nil, err
		}
		inner = &types.LegacyTx{Nonce: in.Nonce, GasPrice: new(big.Int).Set(in.Fees.GasPrice), Gas: in.GasLimit, To: &to, Value: value, Data: data}
	} else {
		if err := checkWord("max fee per gas", in.Fees.GasFeeCap, true); err != nil {
			return nil, err
		}
		if err := checkWord("max priority fee per gas", in.Fees.GasTipCap, false); err != nil {
			return nil, err
		}
		if in.Fees.GasTipCap.Cmp(in.Fees.GasFeeCap) > 0 {
			return nil, fmt.Errorf("%w: max priority fee above max fee", ErrBadIntent)
		}
		inner = &types.DynamicFeeTx{ChainID: new(big.Int).Set(in.ChainID), Nonce: in.Nonce, GasTipCap: new(big.Int).Set(in.Fees.GasTipCap), GasFeeCap: new(big.Int).Set(in.Fees.GasFeeCap), Gas: in.GasLimit, To: &to, Value: value, Data: data}
	}
	return newUnsigned(types.NewTx(inner), new(big.Int).Set(in.ChainID))
}

func newUnsigned(tx *types.Transaction, chainID *big.Int) (*Unsigned, error) {
	d, err := describe(tx, chainID)
	if err != nil {
		return nil, err
	}
	raw, err := preimage(tx, chainID)
	if err != nil {
		return nil, err
	}
	return &Unsigned{tx: tx, chainID: chainID, desc: d, raw: raw}, nil
}

// preimage is the exact byte string whose Keccak-256 is the signing hash.
func preimage(tx *types.Transaction, chainID *big.Int) ([]byte, error) {
	switch tx.Type() {
	case types.LegacyTxType:
		return rlp.EncodeToBytes([]any{tx.Nonce(), tx.GasPrice(), tx.Gas(), tx.To(), tx.Value(), tx.Data(), chainID, uint(0), uint(0)})
	case types.DynamicFeeTxType:
		body, err := rlp.EncodeToBytes([]any{chainID, tx.Nonce(), tx.GasTipCap(), tx.GasFeeCap(), tx.Gas(), tx.To(), tx.Value(), tx.Data(), types.AccessList{}})
		if err != nil {
			return nil, err
		}
		return append([]byte{types.DynamicFeeTxType}, body...), nil
	}
	return nil, fmt.Errorf("%w: type %d", ErrUnsupportedTx, tx.Type())
}

type legacyPreimage struct {
	Nonce    uint64
	GasPrice *big.Int
	Gas      uint64
	To       *common.Address `rlp:"nil"`
	Value    *big.Int
	Data     []byte
	ChainID  *big.Int
	Zero1    uint64
	Zero2    uint64
}

type dynamicPreimage struct {
	ChainID    *big.Int
	Nonce      uint64
	GasTipCap  *big.Int
	GasFeeCap  *big.Int
	Gas        uint64
	To         *common.Address `rlp:"nil"`
	Value      *big.Int
	Data       []byte
	AccessList types.AccessList
}

// maxRawTx bounds what the parsers look at; our transactions are < 300 bytes.
const maxRawTx = 128 << 10

// ParseUnsigned parses the unsigned encoding produced by Unsigned.Bytes. It
// accepts only the canonical encoding (re-encoding gives the same bytes), so
// one transaction has exactly one payload hash.
func ParseUnsigned(b []byte) (*Unsigned, error) {
	if len(b) == 0 || len(b) > maxRawTx {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformedTx, len(b))
	}
	var (
		tx      *types.Transaction
		chainID *big.Int
	)
	switch {
	case b[0] == types.DynamicFeeTxType:
		var p dynamicPreimage
		if err := rlp.DecodeBytes(b[1:], &p); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedTx, err)
		}
		if len(p.AccessList) != 0 {
			return nil, fmt.Errorf("%w: access list not supported", ErrUnsupportedTx)
		}
		for _, v := range []*big.Int{p.ChainID, p.GasTipCap, p.GasFeeCap, p.Value} {
			if v.BitLen() > 256 {
				return nil, fmt.Errorf("%w: integer overflows 256 bits", ErrMalformedTx)
			}
		}
		chainID = p.ChainID
		tx = types.NewTx(&types.DynamicFeeTx{ChainID: p.ChainID, Nonce: p.Nonce, GasTipCap: p.GasTipCap, GasFeeCap: p.GasFeeCap, Gas: p.Gas, To: p.To, Value: p.Value, Data: p.Data})
	case b[0] >= 0xc0:
		var p legacyPreimage
		if err := rlp.DecodeBytes(b, &p); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedTx, err)
		}
		if p.Zero1 != 0 || p.Zero2 != 0 {
			return nil, fmt.Errorf("%w: EIP-155 trailer must be chainId, 0, 0", ErrMalformedTx)
		}
		for _, v := range []*big.Int{p.ChainID, p.GasPrice, p.Value} {
			if v.BitLen() > 256 {
				return nil, fmt.Errorf("%w: integer overflows 256 bits", ErrMalformedTx)
			}
		}
		chainID = p.ChainID
		tx = types.NewTx(&types.LegacyTx{Nonce: p.Nonce, GasPrice: p.GasPrice, Gas: p.Gas, To: p.To, Value: p.Value, Data: p.Data})
	default:
		return nil, fmt.Errorf("%w: unknown leading byte 0x%02x", ErrMalformedTx, b[0])
	}
	if chainID.Sign() == 0 {
		return nil, fmt.Errorf("%w: chain id 0 (replayable on every chain)", ErrUnsupportedTx)
	}
	u, err := newUnsigned(tx, chainID)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(u.raw, b) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformedTx)
	}
	return u, nil
}

// Bytes returns the canonical unsigned encoding (the signing preimage).
func (u *Unsigned) Bytes() []byte { return bytes.Clone(u.raw) }

// Description returns what the transaction does.
func (u *Unsigned) Description() Description { return u.desc.clone() }

// Signer returns go-ethereum's signer for this transaction's chain ID.
func (u *Unsigned) Signer() types.Signer { return types.LatestSignerForChainID(u.chainID) }

// SigningHash is the 32-byte digest the wallet key signs: Keccak-256 of
// Bytes(), equal to go-ethereum's Signer.Hash for the chain ID.
func (u *Unsigned) SigningHash() [32]byte { return u.Signer().Hash(u.tx) }

// PayloadHash is the hash operators approve:
//
//	SHA-256( PayloadDomain || 0x00 || Bytes() )
//
// The domain tag separates it from every other hash in the system, and
// Bytes() binds chain ID, nonce, fees, destination, value and calldata.
func (u *Unsigned) PayloadHash() [32]byte { return PayloadHash(u.raw) }

// PayloadHash computes the approved-payload hash over canonical unsigned
// bytes (see Unsigned.PayloadHash). It does not validate raw.
func PayloadHash(raw []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(PayloadDomain))
	h.Write([]byte{0})
	h.Write(raw)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// CheckSignatureValues enforces 0 < r < n, 0 < s <= n/2 (low-S, EIP-2) and
// a recovery id of 0 or 1.
func CheckSignatureValues(r, s *big.Int, recID byte) error {
	if r == nil || s == nil || r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(secp256k1N) >= 0 || s.Cmp(secp256k1N) >= 0 {
		return fmt.Errorf("%w: r or s out of range", ErrBadSignature)
	}
	if s.Cmp(secp256k1HalfN) > 0 {
		return fmt.Errorf("%w: high S (normalise to n-s and flip the recovery id)", ErrBadSignature)
	}
	if recID > 1 {
		return fmt.Errorf("%w: recovery id %d, want 0 or 1", ErrBadSignature, recID)
	}
	return nil
}

// Assemble attaches the signature (r, s, recovery id 0/1, as a threshold
// signer produces it) and verifies that it recovers to wallet. The result is
// ready to broadcast.
func (u *Unsigned) Assemble(r, s *big.Int, recID byte, wallet common.Address) (*Signed, error) {
	if err := CheckSignatureValues(r, s, recID); err != nil {
		return nil, err
	}
	sig := make([]byte, 65)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:64])
	sig[64] = recID
	tx, err := u.tx.WithSignature(u.Signer(), sig)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	st, err := newSigned(tx)
	if err != nil {
		return nil, err
	}
	if st.from != wallet {
		return nil, fmt.Errorf("%w: recovers to %s, wallet is %s", ErrBadSignature, st.from.Hex(), wallet.Hex())
	}
	return st, nil
}

// Signed is a signed, sender-verified transaction.
type Signed struct {
	tx       *types.Transaction
	from     common.Address
	unsigned *Unsigned
	raw      []byte
}

func newSigned(tx *types.Transaction) (*Signed, error) {
	var chainID *big.Int
	switch tx.Type() {
	case types.LegacyTxType:
		if !tx.Protected() {
			return nil, fmt.Errorf("%w: legacy transaction without EIP-155 chain id", ErrUnsupportedTx)
		}
		chainID = tx.ChainId()
	case types.DynamicFeeTxType:
		chainID = tx.ChainId()
		if len(tx.AccessList()) != 0 {
			return nil, fmt.Errorf("%w: access list not supported", ErrUnsupportedTx)
		}
	default:
		return nil, fmt.Errorf("%w: type %d", ErrUnsupportedTx, tx.Type())
	}
	if chainID == nil || chainID.Sign() == 0 {
		return nil, fmt.Errorf("%w: chain id 0", ErrUnsupportedTx)
	}
	_, r, s := tx.RawSignatureValues()
	if err := CheckSignatureValues(r, s, 0); err != nil {
		return nil, err
	}
	u, err := newUnsigned(types.NewTx(stripSig(tx)), new(big.Int).Set(chainID))
	if err != nil {
		return nil, err
	}
	from, err := types.Sender(types.LatestSignerForChainID(chainID), tx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedTx, err)
	}
	u.desc.From = &from
	return &Signed{tx: tx, from: from, unsigned: u, raw: raw}, nil
}

func stripSig(tx *types.Transaction) types.TxData {
	to := tx.To()
	if tx.Type() == types.LegacyTxType {
		return &types.LegacyTx{Nonce: tx.Nonce(), GasPrice: tx.GasPrice(), Gas: tx.Gas(), To: to, Value: tx.Value(), Data: tx.Data()}
	}
	return &types.DynamicFeeTx{ChainID: tx.ChainId(), Nonce: tx.Nonce(), GasTipCap: tx.GasTipCap(), GasFeeCap: tx.GasFeeCap(), Gas: tx.Gas(), To: to, Value: tx.Value(), Data: tx.Data()}
}

// ParseSigned parses a signed transaction in go-ethereum's binary encoding
// (as broadcast), recovers its sender and describes it. Only canonical
// encodings of type 0 (EIP-155) and type 2 with low-S are accepted.
func ParseSigned(b []byte) (st *Signed, err error) {
	if len(b) == 0 || len(b) > maxRawTx {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformedTx, len(b))
	}
	defer func() {
		// go-ethereum's decoders are not documented as panic-free on
		// hostile input; a panic here must become an error, not a crash.
		if p := recover(); p != nil {
			st, err = nil, fmt.Errorf("%w: decoder panic: %v", ErrMalformedTx, p)
		}
	}()
	tx := new(types.Transaction)
	if err := tx.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedTx, err)
	}
	st, err = newSigned(tx)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(st.raw, b) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformedTx)
	}
	return st, nil
}

// Bytes returns the broadcastable encoding.
func (s *Signed) Bytes() []byte { return bytes.Clone(s.raw) }

// Hash returns the transaction hash (its on-chain ID).
func (s *Signed) Hash() common.Hash { return s.tx.Hash() }

// From returns the recovered sender.
func (s *Signed) From() common.Address { return s.from }

// Unsigned returns the transaction without its signature, so a verifier
// can recompute the payload hash and signing hash of what was signed.
func (s *Signed) Unsigned() *Unsigned { return s.unsigned }

// Description returns what the transaction does, with From set.
func (s *Signed) Description() Description { return s.unsigned.desc.clone() }

// Transaction returns a copy of the go-ethereum transaction.
func (s *Signed) Transaction() *types.Transaction {
	c := new(types.Transaction)
	_ = c.UnmarshalBinary(s.raw)
	return c
}

// Verify checks a signed transaction against the payload operators
// approved: it re-derives the payload hash of the signed transaction's
// unsigned part and requires it to equal approved, and requires the
// recovered sender to be wallet.
func (s *Signed) Verify(approved [32]byte, wallet common.Address) error {
	if s.from != wallet {
		return fmt.Errorf("%w: sender %s is not the wallet %s", ErrBadSignature, s.from.Hex(), wallet.Hex())
	}
	if got := s.unsigned.PayloadHash(); got != approved {
		return fmt.Errorf("%w: payload hash %x differs from approved %x", ErrMismatch, got, approved)
	}
	return nil
}
