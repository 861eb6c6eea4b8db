package ledger

import (
	"fmt"
	"slices"
)

// WalletSet records a wallet created by a key ceremony (system command from
// the node runtime after keygen).
type WalletSet struct {
	Wallet
}

// Type implements Command.
func (WalletSet) Type() string { return CmdWalletSet }

func (p WalletSet) apply(t *txn) (applyOut, error) {
	w := p.Wallet
	if w.ID == "" || w.Chain == "" || w.Network == "" || len(w.Committee) == 0 || w.Threshold < 1 || w.Threshold > len(w.Committee) {
		return applyOut{}, invalid("wallet needs id, chain, network, committee and 1 <= threshold <= committee size")
	}
	if old := t.wallet(w.ID); old != nil {
		if old.Chain == w.Chain && old.Network == w.Network && old.Threshold == w.Threshold && slices.Equal(old.Committee, w.Committee) {
			return applyOut{}, nil
		}
		// A wallet is a key: its committee changes only by a reshare, which
		// is a different command.
		return applyOut{}, fmt.Errorf("%w: wallet %q exists with a different description", ErrConflict, w.ID)
	}
	t.putWallet(&w)
	return changed(w.ID)
}
