package rest

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
)

// WalletView is a wallet as the API shows it.
type WalletView struct {
	ID      string `json:"id"`
	Chain   string `json:"chain"`
	Network string `json:"network"`
	// Status is keygen, active or resharing.
	Status string `json:"status"`
	// Address is derived from the wallet's key (ETH: EIP-55; BTC: P2WPKH
	// on the network); absent while the wallet has no key.
	Address   string   `json:"address,omitempty"`
	Committee []string `json:"committee"`
	Threshold int      `json:"threshold"`
	// Balances are what this node's chain adapter read at the address
	// (each asset it knows on the wallet's chain); absent when it knows
	// none or could not read them in time, never 0 for unknown.
	Balances []BalanceView `json:"balances,omitempty"`
}

// DefaultBalanceTimeout bounds the balance reads of one wallets request.
const DefaultBalanceTimeout = 3 * time.Second

// Balance is one asset's balance at a wallet's address as a chain adapter
// read it.
type Balance struct {
	Asset    string
	Decimals int
	Amount   amount.Amount
	// At is when it was read (the node's clock).
	At time.Time
}

// BalanceView is a balance as the API shows it.
type BalanceView struct {
	Asset string `json:"asset"`
	// Amount is in whole units of the asset; AmountBase in base units.
	Amount     string    `json:"amount"`
	AmountBase string    `json:"amount_base"`
	At         time.Time `json:"at"`
}

type walletsResponse struct {
	Wallets []WalletView `json:"wallets"`
}

// walletView renders w; key is the wallet's key (the ledger's, or for a
// legacy wallet the node's own share's).
func walletView(w *ledger.Wallet, key []byte) WalletView {
	v := WalletView{ID: w.ID, Chain: w.Chain, Network: w.Network, Status: string(w.Status), Threshold: w.Threshold, Committee: []string{}}
	if v.Status == "" {
		v.Status = string(ledger.WalletActive) // a legacy wallet.set wallet is active
	}
	for _, id := range w.Committee {
		v.Committee = append(v.Committee, string(id))
	}
	if len(key) > 0 {
		switch w.Chain {
		case "eth":
			if a, err := eth.AddressFromPublicKey(key); err == nil {
				v.Address = a.Hex()
			}
		case "btc":
			if net, err := btc.Network(w.Network); err == nil {
				if a, err := btc.WalletAddress(key, net); err == nil {
					v.Address = a.EncodeAddress()
				}
			}
		}
	}
	return v
}

// readWallets reads the wallets (all, or the one id) from this node's
// replica with their keys.
func (s *server) readWallets(r *http.Request, id string) ([]WalletView, error) {
	var ws []*ledger.Wallet
	if err := s.cfg.Service.Read(r.Context(), 0, func(st *ledger.State) error {
		for wid, w := range st.Wallets {
			if id == "" || wid == id {
				ws = append(ws, w.Clone())
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	slices.SortFunc(ws, func(a, b *ledger.Wallet) int { return strings.Compare(a.ID, b.ID) })
	// Balances come from the chain: one deadline bounds them all, and a
	// balance not read by then is left out.
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.BalanceTimeout)
	defer cancel()
	out := []WalletView{}
	for _, w := range ws {
		key := w.PubKey
		if len(key) == 0 && w.Status == "" {
			key = s.cfg.Service.WalletKey(r.Context(), w.ID)
		}
		v := walletView(w, key)
		if v.Address != "" && ctx.Err() == nil {
			for _, b := range s.cfg.Service.Balances(ctx, w, v.Address) {
				v.Balances = append(v.Balances, BalanceView{Asset: b.Asset, Amount: b.Amount.Format(b.Decimals),
					AmountBase: b.Amount.String(), At: b.At.UTC()})
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *server) wallets(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	if len(r.URL.Query()) > 0 {
		return 0, nil, apiErr(http.StatusBadRequest, CodeInvalid, "", "api: GET %s takes no query parameters", PathWallets)
	}
	ws, err := s.readWallets(r, "")
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, walletsResponse{Wallets: ws}, nil
}

func (s *server) wallet(_ http.ResponseWriter, r *http.Request, _ pki.Peer, _ []byte) (int, any, error) {
	id := r.PathValue("id")
	ws, err := s.readWallets(r, id)
	if err != nil {
		return 0, nil, err
	}
	if len(ws) == 0 {
		return 0, nil, apiErr(http.StatusNotFound, CodeNotFound, "", "api: no wallet %q", id)
	}
	return http.StatusOK, ws[0], nil
}
