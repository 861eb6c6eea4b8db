package eth

import (
	"errors"
	"fmt"
	"math/big"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
)

// Chain is Ethereum as a committee member sees it ([chains.Chain]): the
// networks it signs for, by the ledger's network name and chain ID. Only
// native ETH transfers are signed online for now; ERC-20 comes with the node
// daemon.
type Chain struct {
	networks map[string]uint64
}

var (
	_ chains.Chain    = (*Chain)(nil)
	_ chains.Unsigned = (*checked)(nil)
	_ chains.Signed   = (*signedTx)(nil)
)

// ErrNotSignedOnline is wrapped for a transaction this signer does not sign
// online yet (token transfers, contract calls).
var ErrNotSignedOnline = errors.New("eth: not signed online")

// NewChain returns the adapter for networks (ledger network name to chain
// ID, e.g. {"devnet": 1337}); a transaction for any other chain ID is
// refused.
func NewChain(networks map[string]uint64) *Chain {
	m := make(map[string]uint64, len(networks))
	for k, v := range networks {
		m[k] = v
	}
	return &Chain{networks: m}
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
	if err != nil {
		return nil, err
	}
	d := u.Description()
	if d.ChainID == nil || !d.ChainID.IsUint64() || d.ChainID.Uint64() != id {
		return nil, fmt.Errorf("%w: tx chain ID %v, network %s is %d", ErrMismatch, d.ChainID, network, id)
	}
	if d.Token != nil || len(d.Data) != 0 {
		return nil, fmt.Errorf("%w: only native ETH transfers are signed online yet", ErrNotSignedOnline)
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
	return &checked{u: u, chainID: id, transfer: chains.Transfer{To: d.To.Hex(), Asset: "ETH", Amount: amt, MaxFee: fee, Nonce: &nonce}}, nil
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
	return c.u.Description().Text(Asset{Symbol: "ETH", Decimals: 18})
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
