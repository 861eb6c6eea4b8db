package ledger

import (
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// ColdExport marks an approved cold request as exported in a bundle.
type ColdExport struct {
	RequestID  string `json:"request_id"`
	BundleHash string `json:"bundle_hash"`
}

// Type implements Command.
func (ColdExport) Type() string { return CmdColdExport }

func (p ColdExport) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if r.Status != StatusApproved || r.Decision.Route != policy.RouteCold {
		return applyOut{}, fmt.Errorf("%w: %q is %s/%s, export needs approved/cold", ErrWrongStatus, r.ID, r.Status, r.Decision.Route)
	}
	if p.BundleHash == "" {
		return applyOut{}, invalid("export needs the bundle hash")
	}
	d, err := t.recheck(r)
	if err != nil {
		return applyOut{}, err
	}
	r.Decision = d
	r.Status, r.BundleHash, r.UpdatedIdx = StatusExported, p.BundleHash, t.index
	t.recordSpend(r)
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// ColdImport records the offline-signed transaction.
type ColdImport struct {
	RequestID string `json:"request_id"`
	Signed    []byte `json:"signed"`
	TxHash    string `json:"tx_hash,omitempty"`
}

// Type implements Command.
func (ColdImport) Type() string { return CmdColdImport }

func (p ColdImport) apply(t *txn) (applyOut, error) {
	r := t.request(p.RequestID)
	if r == nil {
		return applyOut{}, fmt.Errorf("%w: request %q", ErrNotFound, p.RequestID)
	}
	if r.Status != StatusExported {
		return applyOut{}, fmt.Errorf("%w: %q is %s", ErrWrongStatus, r.ID, r.Status)
	}
	if len(p.Signed) == 0 {
		return applyOut{}, invalid("import needs the signed transaction")
	}
	r.Result = &Result{Signed: slices.Clone(p.Signed), TxHash: p.TxHash, Index: t.index, At: t.now}
	r.Status, r.UpdatedIdx = StatusImported, t.index
	t.putRequest(r)
	return applyOut{changed: true, subject: r.ID, req: r}, nil
}

// GovernanceRecord is one governance command in State.Governance: its
// type, the ledger time it was applied at and its payload as logged.
type GovernanceRecord struct {
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	Payload []byte    `json:"payload"`
}

// governanceTypes are the commands State.Governance records: those that
// decide a withdrawal (who may approve, the rules, allowlist and locks,
// the cold wallets).
var governanceTypes = map[string]bool{CmdRegistryChange: true, CmdPolicyChange: true, CmdRulesSet: true, CmdWalletRegister: true}

func (s *State) appendGovernance(typ string, at time.Time, payload []byte) {
	prev := s.GovernanceHead
	if prev == "" {
		prev = s.GenesisHash
	}
	s.Governance = append(s.Governance, GovernanceRecord{Type: typ, Time: at, Payload: slices.Clone(payload)})
	s.GovernanceHead = genesis.GovernanceHash(prev, typ, at, payload)
}

// ColdWalletSpec is a cold wallet as the admins register it
// (wallet.register): the keygen ceremony's public key and the hash of its
// transcript (`custody ceremony keygen`, docs/cold.md). ID is the
// single-use change ID. Approvals sign a quorum.Statement with RequestID =
// ID and PayloadHash = PayloadHash(). The offline signer's cold.WalletSpec
// has the same fields and hash.
type ColdWalletSpec struct {
	ID      string `json:"id"`
	Wallet  string `json:"wallet"`
	Chain   string `json:"chain"`
	Network string `json:"network"`
	// ChainID is an Ethereum wallet's EIP-155 chain ID (0 for Bitcoin).
	ChainID uint64 `json:"chain_id,omitempty"`
	// BTCParams names a Bitcoin wallet's network parameters.
	BTCParams string `json:"btc_params,omitempty"`
	// PubKey is the 33-byte compressed secp256k1 key.
	PubKey []byte `json:"pubkey"`
	// Threshold t: any t+1 of Custodians sign.
	Threshold  int      `json:"threshold"`
	Custodians []string `json:"custodians"`
	// Transcript is the hex SHA-256 of the ceremony's transcript.
	Transcript string `json:"transcript"`
}

// PayloadHash is SHA-256 of "custody/wallet-register/v1" 0x00 and the
// spec's JSON (fields in declaration order).
func (c ColdWalletSpec) PayloadHash() quorum.Hash {
	return quorum.DomainHash("custody/wallet-register/v1", c)
}

// WalletRegister records a cold wallet, keyed offline by its custodians,
// after the registry's admin quorum approved its spec: active at once with
// the ceremony's key and no node committee (nodes never sign for it; its
// requests route cold). Single-use change ID, approvals within the
// ceiling; an existing wallet ID is a conflict.
type WalletRegister struct {
	Change    ColdWalletSpec    `json:"change"`
	Approvals []quorum.Approval `json:"approvals"`
}

// Type implements Command.
func (WalletRegister) Type() string { return CmdWalletRegister }

func (p WalletRegister) apply(t *txn) (applyOut, error) {
	c := p.Change
	if err := t.governance(c.ID, p.Approvals); err != nil {
		return applyOut{}, err
	}
	if err := c.validate(); err != nil {
		return applyOut{}, err
	}
	if t.wallet(c.Wallet) != nil {
		return applyOut{}, fmt.Errorf("%w: wallet %q exists", ErrConflict, c.Wallet)
	}
	if err := t.adminApproved("wallet register "+c.ID, c.ID, c.PayloadHash(), p.Approvals); err != nil {
		return applyOut{}, err
	}
	spec := c
	spec.PubKey, spec.Custodians = slices.Clone(c.PubKey), slices.Clone(c.Custodians)
	t.putWallet(&Wallet{ID: c.Wallet, Chain: c.Chain, Network: c.Network, Threshold: c.Threshold, Status: WalletActive,
		PubKey: slices.Clone(c.PubKey), Cold: &spec})
	t.recordChange(c.ID)
	return changed(c.Wallet)
}

func (c ColdWalletSpec) validate() error {
	switch {
	case c.Wallet == "" || c.Network == "":
		return invalid("wallet register %s: needs a wallet ID and a network", c.ID)
	case !slices.Contains(walletChains, c.Chain):
		return invalid("wallet register %s: chain %q is not one of %v", c.ID, c.Chain, walletChains)
	case c.Chain == "eth" && (c.ChainID == 0 || c.BTCParams != ""), c.Chain == "btc" && (c.ChainID != 0 || c.BTCParams == ""):
		return invalid("wallet register %s: an eth wallet names a chain ID, a btc wallet its btc_params", c.ID)
	case len(c.PubKey) != 33 || (c.PubKey[0] != 2 && c.PubKey[0] != 3):
		return invalid("wallet register %s: the key is not 33-byte compressed secp256k1", c.ID)
	case c.Threshold < 1 || c.Threshold >= len(c.Custodians):
		return invalid("wallet register %s: threshold %d of %d custodians (need 1 <= t < n)", c.ID, c.Threshold, len(c.Custodians))
	case len(c.Transcript) != 64:
		return invalid("wallet register %s: the transcript hash is not 64 hex digits", c.ID)
	}
	for i, n := range c.Custodians {
		if n == "" || slices.Contains(c.Custodians[:i], n) {
			return invalid("wallet register %s: custodian %q empty or listed twice", c.ID, n)
		}
	}
	return nil
}
