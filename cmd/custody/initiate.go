package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// initiateBody is POST /v1/withdrawals's body with the backend's signed
// initiation.
type initiateBody struct {
	ID         string          `json:"id"`
	Wallet     string          `json:"wallet"`
	Asset      string          `json:"asset"`
	To         string          `json:"to"`
	Amount     string          `json:"amount"`
	Note       string          `json:"note,omitempty"`
	ExpiresAt  *time.Time      `json:"expires_at,omitempty"`
	Initiation quorum.Approval `json:"initiation"`
}

// knownDecimals are the native assets' decimals; a token needs --decimals.
var knownDecimals = map[string]int{"ETH": 18, "BTC": 8}

func newInitiateCmd() *cobra.Command {
	var (
		b                 initiateBody
		decimals          int
		keyFile, cluster  string
		expiresAt, expiry string
	)
	cmd := &cobra.Command{
		Use:   "initiate --cluster C --id ID --wallet W --asset A --to ADDR --amount X --key FILE",
		Short: "Sign a withdrawal's initiation as the backend and print the create body",
		Long: `Sign the initiation of a withdrawal with the backend principal's device key
and print the body of POST /v1/withdrawals, ready for curl -d @FILE (see the
curl walk-through in docs/api.md). The device signs the withdrawal's intent
(policy.Withdrawal.IntentHash: id, wallet, asset, destination, amount in
base units, note) with the decision "initiate"; the ledger verifies it and
records the signer as the initiator, whose approval never counts.

An exchange's backend does the same in its own code; this command is for
trying the API by hand and for scripts. The amount is in whole units of the
asset ("1.5"); its base units need the asset's decimals: known for ETH and
BTC, --decimals for a token. A sealed key file is opened with the passphrase
in $` + operatorPassphraseEnv + `.`,
		Example: `  custody initiate --cluster custody-devnet --id wd-0001 --wallet eth-hot-1 --asset ETH \
      --to 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed --amount 0.5 \
      --key devnet/cluster/backend/exchange/device.key > create.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cluster == "" || b.ID == "" || b.Wallet == "" || b.Asset == "" || b.To == "" || b.Amount == "" || keyFile == "" {
				return errors.New("initiate: --cluster, --id, --wallet, --asset, --to, --amount and --key are required")
			}
			if !cmd.Flags().Changed("decimals") {
				d, ok := knownDecimals[b.Asset]
				if !ok {
					return fmt.Errorf("initiate: --decimals is required for asset %q (the rules' decimals of the asset)", b.Asset)
				}
				decimals = d
			}
			base, err := amount.ParseUnits(b.Amount, decimals)
			if err != nil {
				return fmt.Errorf("initiate: --amount: %w", err)
			}
			if b.Note != "" {
				if err := policy.ValidNote(b.Note); err != nil {
					return fmt.Errorf("initiate: --note: %w", err)
				}
			}
			if expiresAt != "" {
				t, err := time.Parse(time.RFC3339, expiresAt)
				if err != nil {
					return fmt.Errorf("initiate: --expires-at: want RFC 3339: %w", err)
				}
				b.ExpiresAt = &t
			}
			valid, err := time.ParseDuration(expiry)
			if err != nil || valid <= 0 {
				return fmt.Errorf("initiate: --expiry %q: want a positive duration", expiry)
			}
			kf, err := operatorReadKeyFile(keyFile)
			if err != nil {
				return err
			}
			priv, err := kf.Open([]byte(os.Getenv(operatorPassphraseEnv)))
			if err != nil {
				return err
			}
			w := policy.Withdrawal{Wallet: b.Wallet, Asset: b.Asset, To: b.To, Amount: base, Note: b.Note}
			st := quorum.Statement{ClusterID: cluster, RequestID: b.ID, PayloadHash: w.IntentHash(b.ID), Decision: quorum.Initiate,
				Expiry: time.Now().Add(valid).UTC().Truncate(time.Second)}
			if b.Initiation, err = quorum.Sign(st, kf.DeviceID, priv, nil); err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(b)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "the cluster ID (bound into the signature)")
	f.StringVar(&b.ID, "id", "", "the withdrawal's id: the idempotency key")
	f.StringVar(&b.Wallet, "wallet", "", "the wallet to pay from")
	f.StringVar(&b.Asset, "asset", "", "the asset symbol (ETH, BTC, a token's)")
	f.StringVar(&b.To, "to", "", "the destination, canonical (EIP-55 for Ethereum)")
	f.StringVar(&b.Amount, "amount", "", `the amount in whole units ("1.5")`)
	f.StringVar(&b.Note, "note", "", "a note operators see (signed with the intent)")
	f.StringVar(&expiresAt, "expires-at", "", "until when approvals may come (RFC 3339; default: the node's 24 h)")
	f.IntVar(&decimals, "decimals", 0, "the asset's decimals (known for ETH and BTC)")
	f.StringVar(&keyFile, "key", "", "the backend principal's device key file")
	f.StringVar(&expiry, "expiry", "1h", "how long the signed initiation stays valid")
	return cmd
}
