package rest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/quorum"
)

// ErrReview is wrapped by ReviewRequest when a node's request view does
// not hold together: its payload does not parse, does not hash to the
// payload hash the node names, or does something other than the
// withdrawal fields the node shows.
var ErrReview = errors.New("the node's request does not match its own payload")

// Review is what an operator's tool derives from a request's unsigned
// transaction itself (ReviewRequest): what it shows before asking, and
// the payload hash an approval signs. Fields the node supplies (the
// wallet's key, a token's symbol and decimals, the network's name) say
// so.
type Review struct {
	// PayloadHash is the chain adapter's hash of the payload, computed
	// here: what an answer signs.
	PayloadHash quorum.Hash
	// Chain is "eth" or "btc".
	Chain string
	// ChainID is an Ethereum transaction's own chain ID (0 for Bitcoin).
	ChainID uint64
	// BTCNetwork is the Bitcoin network the payload is for (its network
	// magic, checked against the node's btc_params).
	BTCNetwork string
	// Transfer is what the transaction does, as the adapter a member
	// signs with reads it (chains.Unsigned.Transfer).
	Transfer chains.Transfer
	// Token is an ERC-20 transfer's contract (EIP-55); "" for ETH and BTC.
	// Its symbol (Transfer.Asset) and decimals are the node's.
	Token string
	// Decimals of Transfer.Asset: the chain's own for ETH and BTC, the
	// node's rules' for a token.
	Decimals int
	// GasLimit and MaxFeePerGas (wei) of an Ethereum transaction (the gas
	// price of a legacy one); Transfer.MaxFee is their product.
	GasLimit     uint64
	MaxFeePerGas string
	// From is the wallet's address derived here from the key the node
	// sent (WalletPubKey); "" without one. For Bitcoin with a key, every
	// input is checked to spend it.
	From string
	// Inputs and Outputs of a Bitcoin transaction, parsed with the
	// wallet's key (nil without one: Detail then lists them).
	Inputs  []btc.Input
	Outputs []btc.Output
	// Detail is the adapter's own description of a Bitcoin transaction
	// parsed without the wallet's key (change: outputs paying the script
	// every input spends).
	Detail string
}

// ReviewRequest parses v's unsigned payload with the chain adapters (an
// Ethereum adapter for the payload's own chain ID; a Bitcoin adapter for
// the node's btc_params), computes its payload hash, and refuses
// (ErrReview) when that is not the node's payload hash, when what the
// transaction does is not the node's withdrawal fields (to, asset,
// amount, max fee, nonce or outpoints: chains.CheckTransfer, the
// comparison every member makes), or when the node's wallet address is
// not the one its wallet key gives. A token transfer's contract is shown
// as the payload names it; the symbol and decimals are the node's (each
// member checks the contract against its own token registry).
func ReviewRequest(v RequestView) (*Review, error) {
	w := v.Withdrawal
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrReview}, args...)...)
	}
	if len(v.Payload) == 0 {
		return nil, bad("the node sent no unsigned transaction for request %q", w.ID)
	}
	nodeHash, err := quorum.ParseHash(w.PayloadHash)
	if err != nil {
		return nil, bad("payload hash: %v", err)
	}
	var pub []byte
	if v.WalletPubKey != "" {
		if pub, err = hex.DecodeString(v.WalletPubKey); err != nil || len(pub) != 33 {
			return nil, bad("wallet_pubkey %q is not a 33-byte compressed key in hex", v.WalletPubKey)
		}
	}
	r := &Review{Chain: w.Chain}
	var u chains.Unsigned
	switch w.Chain {
	case "eth":
		u, err = r.parseETH(v, pub)
	case "btc":
		u, err = r.parseBTC(v, pub)
	default:
		return nil, bad("chain %q: this tool parses eth and btc transactions", w.Chain)
	}
	if err != nil {
		return nil, bad("%v", err)
	}
	r.PayloadHash, r.Transfer = u.PayloadHash(), u.Transfer()
	if r.PayloadHash != nodeHash {
		return nil, bad("the node names payload hash %s, the transaction it sent hashes to %s", nodeHash, r.PayloadHash)
	}
	want := chains.Transfer{To: w.To, Asset: w.Asset, Nonce: w.Nonce, Outpoints: v.Outpoints}
	if want.Amount, err = amount.ParseBase(w.AmountBase); err != nil {
		return nil, bad("amount_base: %v", err)
	}
	if want.MaxFee, err = amount.ParseBase(w.FeeCap.AmountBase); err != nil {
		return nil, bad("fee_cap.amount_base: %v", err)
	}
	if err := chains.CheckTransfer(want, r.Transfer); err != nil {
		return nil, bad("%v", err)
	}
	if got := want.Amount.Format(v.Decimals); w.Amount != got {
		return nil, bad("the node shows amount %s, its base amount %s with %d decimals is %s", w.Amount, w.AmountBase, v.Decimals, got)
	}
	if r.From != "" && v.From != "" && r.From != v.From {
		return nil, bad("the node shows the wallet's address %s, its key %s gives %s", v.From, v.WalletPubKey, r.From)
	}
	return r, nil
}

// parseETH parses an Ethereum payload with an adapter configured for the
// payload's own chain ID (shown, not assumed) and, for a token transfer,
// its contract registered under the node's asset name.
func (r *Review) parseETH(v RequestView, pub []byte) (chains.Unsigned, error) {
	w := v.Withdrawal
	raw, err := eth.ParseUnsigned(v.Payload)
	if err != nil {
		return nil, err
	}
	d := raw.Description()
	if !d.ChainID.IsUint64() {
		return nil, fmt.Errorf("chain ID %s out of range", d.ChainID)
	}
	r.ChainID, r.GasLimit, r.Decimals = d.ChainID.Uint64(), d.GasLimit, int(eth.ETH.Decimals)
	r.MaxFeePerGas = fmt.Sprint(d.GasFeeCap)
	if d.GasPrice != nil {
		r.MaxFeePerGas = d.GasPrice.String()
	}
	cfg := eth.Config{Networks: map[string]uint64{w.Network: r.ChainID}}
	if d.Token != nil && w.Asset != eth.ETH.Symbol {
		if v.Decimals < 0 || v.Decimals > 255 {
			return nil, fmt.Errorf("asset %s: %d decimals", w.Asset, v.Decimals)
		}
		cfg.Tokens = map[string][]eth.Token{w.Network: {{Symbol: w.Asset, Address: *d.Token, Decimals: uint8(v.Decimals)}}}
		r.Token, r.Decimals = d.Token.Hex(), v.Decimals
	}
	adapter, err := eth.New(cfg)
	if err != nil {
		return nil, err
	}
	if len(pub) > 0 {
		if r.From, err = adapter.Address(w.Network, pub); err != nil {
			return nil, err
		}
	}
	return adapter.ParseUnsigned(w.Network, v.Payload)
}

// parseBTC parses a Bitcoin payload for the node's btc_params (a payload
// for another network is refused) and, with the wallet's key, checks that
// every input spends it and lists inputs and outputs with change marked.
func (r *Review) parseBTC(v RequestView, pub []byte) (chains.Unsigned, error) {
	w := v.Withdrawal
	if v.BTCParams == "" {
		return nil, errors.New("the node names no bitcoin network parameters (btc_params)")
	}
	adapter, err := btc.NewChain(map[string]string{w.Network: v.BTCParams})
	if err != nil {
		return nil, err
	}
	u, err := adapter.ParseUnsigned(w.Network, v.Payload)
	if err != nil {
		return nil, err
	}
	r.BTCNetwork, r.Decimals = v.BTCParams, 8
	if len(pub) == 0 {
		r.Detail = u.Describe()
		return u, nil
	}
	if r.From, err = adapter.Address(w.Network, pub); err != nil {
		return nil, err
	}
	bu, err := btc.ParseUnsigned(v.Payload, pub)
	if err != nil {
		return nil, fmt.Errorf("the inputs are not the wallet key's (%s): %w", r.From, err)
	}
	d := bu.Description()
	r.Inputs, r.Outputs = d.Inputs, d.Outputs
	return u, nil
}

// Text renders r for the operator, one fact a line, each derived from the
// transaction (the node's words are labelled).
func (r *Review) Text() string {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "  %-12s %s\n", label, fmt.Sprintf(format, args...))
	}
	t := r.Transfer
	b.WriteString("derived here from the unsigned transaction:\n")
	switch r.Chain {
	case "eth":
		line("chain", "ethereum, chain ID %d (the transaction's own)", r.ChainID)
	case "btc":
		line("chain", "bitcoin %s (the transaction's network)", r.BTCNetwork)
	}
	if r.From != "" {
		what := "the wallet key the node sent"
		if r.Chain == "btc" {
			what += "; every input spends it"
		}
		line("from", "%s (%s)", r.From, what)
	}
	line("to", "%s", t.To)
	switch {
	case r.Token != "":
		line("asset", "token contract %s (named %s, %d decimals, by the node)", r.Token, t.Asset, r.Decimals)
	default:
		line("asset", "%s", t.Asset)
	}
	line("amount", "%s %s (%s base units)", t.Amount.Format(r.Decimals), t.Asset, t.Amount)
	switch r.Chain {
	case "eth":
		line("max fee", "%s ETH (%s wei: gas limit %d x %s wei per gas)", t.MaxFee.Format(int(eth.ETH.Decimals)), t.MaxFee, r.GasLimit, r.MaxFeePerGas)
		if t.Nonce != nil {
			line("nonce", "%d", *t.Nonce)
		}
	case "btc":
		line("fee", "%s BTC (%s sat; about %d vB)", t.MaxFee.Format(8), t.MaxFee, t.VSize)
		sat := func(v int64) string { return amount.FromUint64(uint64(v)).Format(8) }
		for i, in := range r.Inputs {
			line(fmt.Sprintf("input %d", i), "%s %s BTC", in.OutPoint, sat(in.Value))
		}
		for i, o := range r.Outputs {
			what := "the destination"
			if o.Change {
				what = "change, back to the wallet's own key"
			}
			line(fmt.Sprintf("output %d", i), "%s %s BTC (%s)", o.Address, sat(o.Value), what)
		}
		if r.Detail != "" {
			b.WriteString("  (no wallet key from the node: change is what pays the script every input spends)\n")
			for _, l := range strings.Split(strings.TrimRight(r.Detail, "\n"), "\n") {
				fmt.Fprintf(&b, "    %s\n", strings.TrimSpace(l))
			}
		}
	}
	line("payload hash", "%s (computed here: what you sign)", r.PayloadHash)
	return b.String()
}

// reviewKey is what the operator view names for parsing a wallet's
// payloads: its key (hex; the ledger's, or a cold wallet's registered
// key) and, for Bitcoin, its network parameters (a cold wallet's
// registered ones, else the network's name when it is one of
// btc.Networks, as the daemon configures its adapter).
func reviewKey(w *ledger.Wallet) (pub, params string) {
	key := w.PubKey
	if len(key) == 0 && w.Cold != nil {
		key = w.Cold.PubKey
	}
	if len(key) > 0 {
		pub = hex.EncodeToString(key)
	}
	if w.Chain == "btc" {
		switch {
		case w.Cold != nil && w.Cold.BTCParams != "":
			params = w.Cold.BTCParams
		default:
			if _, err := btc.Network(w.Network); err == nil {
				params = w.Network
			}
		}
	}
	return pub, params
}
