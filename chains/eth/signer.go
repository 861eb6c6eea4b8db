package eth

import (
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
)

// Chain is Ethereum as a committee member sees it ([chains.Chain]): the
// networks it signs for, by the ledger's network name and chain ID, and on
// each network the ERC-20 tokens it signs transfer(address,uint256) for.
// Native ETH transfers and registered-token transfers are signed online;
// any other calldata is refused with ErrNotSignedOnline.
type Chain struct {
	networks map[string]uint64
	// tokens: network -> token contract -> token.
	tokens map[string]map[common.Address]Token
	// symbols: network -> symbol -> token.
	symbols map[string]map[string]Token
}

var (
	_ chains.Chain    = (*Chain)(nil)
	_ chains.Unsigned = (*checked)(nil)
	_ chains.Signed   = (*signedTx)(nil)
)

// ErrNotSignedOnline is wrapped for a transaction this signer does not sign
// online: calldata other than an ERC-20 transfer(address,uint256) to a
// registered token contract, a token transfer that also sends ETH or is not
// EIP-1559, and every other transaction kind ParseUnsigned refuses as
// ErrUnsupportedTx (which the error then matches too).
var ErrNotSignedOnline = errors.New("eth: not signed online")

// ErrBadConfig means a Config is refused: a token registry naming an
// unknown network, a symbol or contract twice, or an invalid field.
var ErrBadConfig = errors.New("eth: invalid chain configuration")

// Token is one ERC-20 contract the signer signs transfers of, on one
// network. Symbol is the ledger's (and policy's) asset name for it.
type Token struct {
	Symbol   string
	Address  common.Address
	Decimals uint8
}

// Asset is t as a transaction-building asset (Intent.Asset).
func (t Token) Asset() Asset { return ERC20(t.Symbol, t.Decimals, t.Address) }

// maxTokenDecimals is policy's bound on an asset's decimals; a token the
// rules could not declare could never be withdrawn.
const maxTokenDecimals = 36

// Config is the adapter's configuration.
type Config struct {
	// Networks maps the ledger's network names to chain IDs
	// ({"devnet": 1337}); a transaction for any other chain ID is refused.
	Networks map[string]uint64
	// Tokens is the token registry of each network (by ledger network
	// name): within one network a symbol and a contract appear at most
	// once, and no token is called "ETH".
	Tokens map[string][]Token
}

// New returns the adapter for cfg, or ErrBadConfig naming the first
// problem.
func New(cfg Config) (*Chain, error) {
	c := &Chain{networks: make(map[string]uint64, len(cfg.Networks)),
		tokens: map[string]map[common.Address]Token{}, symbols: map[string]map[string]Token{}}
	for k, v := range cfg.Networks {
		if k == "" || v == 0 {
			return nil, fmt.Errorf("%w: networks: network %q with chain ID %d", ErrBadConfig, k, v)
		}
		c.networks[k] = v
	}
	for network, list := range cfg.Tokens {
		if _, ok := c.networks[network]; !ok {
			return nil, fmt.Errorf("%w: tokens.%s: not a configured network", ErrBadConfig, network)
		}
		byAddr, bySym := map[common.Address]Token{}, map[string]Token{}
		for i, t := range list {
			path := fmt.Sprintf("tokens.%s[%d]", network, i)
			if err := validSymbol(t.Symbol); err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrBadConfig, path, err)
			}
			if t.Address == (common.Address{}) {
				return nil, fmt.Errorf("%w: %s: %s has the zero address", ErrBadConfig, path, t.Symbol)
			}
			if t.Decimals > maxTokenDecimals {
				return nil, fmt.Errorf("%w: %s: %s has %d decimals, at most %d", ErrBadConfig, path, t.Symbol, t.Decimals, maxTokenDecimals)
			}
			key := strings.ToUpper(t.Symbol)
			if prev, dup := bySym[key]; dup {
				return nil, fmt.Errorf("%w: %s: symbol %s already names %s", ErrBadConfig, path, t.Symbol, prev.Address.Hex())
			}
			if prev, dup := byAddr[t.Address]; dup {
				return nil, fmt.Errorf("%w: %s: contract %s is already %s", ErrBadConfig, path, t.Address.Hex(), prev.Symbol)
			}
			byAddr[t.Address], bySym[key] = t, t
		}
		c.tokens[network] = byAddr
		c.symbols[network] = map[string]Token{}
		for _, t := range byAddr {
			c.symbols[network][t.Symbol] = t
		}
	}
	return c, nil
}

// validSymbol: 1..64 letters, digits and : . _ - (policy's asset IDs), and
// not the native asset's name in any case.
func validSymbol(s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("symbol %q must be 1..64 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("symbol %q: only letters, digits and : . _ - are allowed", s)
		}
	}
	if strings.EqualFold(s, ETH.Symbol) {
		return fmt.Errorf("symbol %q is the native asset", s)
	}
	return nil
}

// NewChain returns the adapter for networks (ledger network name to chain
// ID, e.g. {"devnet": 1337}) with no tokens: New(Config{Networks: networks})
// for configurations known to be valid (it panics on an invalid one).
func NewChain(networks map[string]uint64) *Chain {
	c, err := New(Config{Networks: networks})
	if err != nil {
		panic(err)
	}
	return c
}

// Token returns the token registered as symbol on network.
func (c *Chain) Token(network, symbol string) (Token, bool) {
	t, ok := c.symbols[network][symbol]
	return t, ok
}

// Name implements chains.Chain.
func (*Chain) Name() string { return "eth" }

func (c *Chain) chainID(network string) (uint64, error) {
	id, ok := c.networks[network]
	if !ok {
		return 0, fmt.Errorf("%w: unknown eth network %q", ErrMismatch, network)
	}
	return id, nil
}

// Address implements chains.Chain: the EIP-55 address of the key.
func (c *Chain) Address(network string, pubKey []byte) (string, error) {
	if _, err := c.chainID(network); err != nil {
		return "", err
	}
	a, err := AddressFromPublicKey(pubKey)
	if err != nil {
		return "", err
	}
	return a.Hex(), nil
}

// ParseUnsigned implements chains.Chain. The transaction's chain ID must be
// network's.
func (c *Chain) ParseUnsigned(network string, payload []byte) (chains.Unsigned, error) {
	id, err := c.chainID(network)
	if err != nil {
		return nil, err
	}
	u, err := ParseUnsigned(payload)
	if errors.Is(err, ErrUnsupportedTx) {
		return nil, fmt.Errorf("%w: %w", ErrNotSignedOnline, err)
	}
	if err != nil {
		return nil, err
	}
	d := u.Description()
	if d.ChainID == nil || !d.ChainID.IsUint64() || d.ChainID.Uint64() != id {
		return nil, fmt.Errorf("%w: tx chain ID %v, network %s is %d", ErrMismatch, d.ChainID, network, id)
	}
	asset := ETH
	switch {
	case d.Token != nil:
		// ParseUnsigned decoded strict transfer(address,uint256) calldata
		// (68 bytes, clean address word) and refused an ETH value with it.
		t, ok := c.tokens[network][*d.Token]
		if !ok {
			return nil, fmt.Errorf("%w: calldata for contract %s, not a registered token on %s", ErrNotSignedOnline, d.Token.Hex(), network)
		}
		if d.Type != types.DynamicFeeTxType {
			return nil, fmt.Errorf("%w: %s transfer in a type %d transaction; tokens are signed in EIP-1559 transactions only", ErrNotSignedOnline, t.Symbol, d.Type)
		}
		asset = t.Asset()
	case len(d.Data) != 0:
		return nil, fmt.Errorf("%w: calldata that is not a token transfer", ErrNotSignedOnline)
	}
	amt, err := amount.FromBig(d.Amount)
	if err != nil {
		return nil, fmt.Errorf("%w: tx amount: %w", ErrMismatch, err)
	}
	fee, err := amount.FromBig(d.MaxFee())
	if err != nil {
		return nil, fmt.Errorf("%w: tx maximum fee: %w", ErrMismatch, err)
	}
	nonce := d.Nonce
	return &checked{u: u, chainID: id, asset: asset,
		transfer: chains.Transfer{To: d.To.Hex(), Asset: asset.Symbol, Amount: amt, MaxFee: fee, Nonce: &nonce}}, nil
}

// ParseSigned implements chains.Chain.
func (c *Chain) ParseSigned(network string, raw []byte) (chains.Signed, error) {
	id, err := c.chainID(network)
	if err != nil {
		return nil, err
	}
	s, err := ParseSigned(raw)
	if err != nil {
		return nil, err
	}
	if d := s.Description(); d.ChainID == nil || !d.ChainID.IsUint64() || d.ChainID.Uint64() != id {
		return nil, fmt.Errorf("%w: signed tx chain ID %v, network %s is %d", ErrMismatch, d.ChainID, network, id)
	}
	return &signedTx{s}, nil
}

// checked is an unsigned transaction parsed for one network.
type checked struct {
	u        *Unsigned
	chainID  uint64
	asset    Asset // ETH, or the registered token
	transfer chains.Transfer
}

func (c *checked) PayloadHash() [32]byte { return c.u.PayloadHash() }

func (c *checked) Transfer() chains.Transfer {
	t := c.transfer
	n := *t.Nonce
	t.Nonce = &n
	return t
}

func (c *checked) Digests() [][32]byte { return [][32]byte{c.u.SigningHash()} }

// SpendKeys: the wallet's nonce on this chain ID.
func (c *checked) SpendKeys(wallet string) []chains.SpendKey {
	return []chains.SpendKey{{Kind: chains.KindETHNonce, Scope: fmt.Sprintf("%s/%d", wallet, c.chainID), ID: fmt.Sprint(*c.transfer.Nonce)}}
}

func (c *checked) Describe() string {
	return c.u.Description().Text(c.asset)
}

func (c *checked) Assemble(pubKey []byte, sigs []chains.Signature) (chains.Signed, error) {
	if len(sigs) != 1 {
		return nil, fmt.Errorf("%w: %d signatures for one digest", ErrBadSignature, len(sigs))
	}
	wallet, err := AddressFromPublicKey(pubKey)
	if err != nil {
		return nil, err
	}
	r, s := new(big.Int).SetBytes(sigs[0].R[:]), new(big.Int).SetBytes(sigs[0].S[:])
	st, err := c.u.Assemble(r, s, sigs[0].V, wallet)
	if err != nil {
		return nil, err
	}
	return &signedTx{st}, nil
}

// signedTx adapts *Signed to chains.Signed.
type signedTx struct{ s *Signed }

func (t *signedTx) Bytes() []byte { return t.s.Bytes() }
func (t *signedTx) Hash() string  { return t.s.Hash().Hex() }

func (t *signedTx) Verify(payloadHash [32]byte, pubKey []byte) error {
	wallet, err := AddressFromPublicKey(pubKey)
	if err != nil {
		return err
	}
	return t.s.Verify(payloadHash, wallet)
}
