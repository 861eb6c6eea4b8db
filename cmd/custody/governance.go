package main

// Governance from the operator CLI: each command builds the change, shows
// what it does (described from the change itself, on this machine), signs
// its payload hash with the operator's device and proposes it; the other
// approvers add theirs with `custody changes approve ID`. The node submits
// the real command once the approvals meet the quorum.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// changeFlags are what every proposing command takes.
type changeFlags struct {
	id, expiry string
	yes        bool
}

func addChangeFlags(cmd *cobra.Command) *changeFlags {
	f := &changeFlags{}
	cmd.Flags().StringVar(&f.id, "id", "", "the change ID (default: KIND-RANDOM); single-use forever")
	cmd.Flags().StringVar(&f.expiry, "expiry", "1h", "how long your approval, and so the proposal, stays valid")
	cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation")
	return f
}

// changeID is --id or kind-<8 random bytes in hex>.
func (f *changeFlags) changeID(kind string) string {
	if f.id != "" {
		return f.id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strings.ReplaceAll(kind, "_", "-") + "-" + hex.EncodeToString(b[:])
}

func clusterOf(c *apiClient) (string, error) {
	var who rest.IdentityView
	if err := c.do(context.Background(), "GET", rest.PathWhoami, nil, &who); err != nil {
		return "", err
	}
	return who.ClusterID, nil
}

// signChange signs approval of ch (its payload hash computed here, never
// taken from the node) with the profile's device. notAfter, when set, is
// the proposal's expiry: the ledger refuses an approval that outlives the
// proposal it joins, so the expiry is cut to it.
func signChange(c *apiClient, cluster string, ch ledger.ProposedChange, expiry string, notAfter *time.Time) (quorum.Approval, error) {
	exp, err := operatorParseExpiry(expiry, time.Now())
	if err != nil {
		return quorum.Approval{}, err
	}
	if notAfter != nil && exp.After(*notAfter) {
		exp = notAfter.UTC().Truncate(time.Second)
	}
	return c.sign(quorum.Statement{ClusterID: cluster, RequestID: ch.ID(), PayloadHash: ch.PayloadHash(), Decision: quorum.Approve, Expiry: exp})
}

// propose shows ch, signs it and proposes it.
func propose(cmd *cobra.Command, sf *serverFlags, f *changeFlags, ch ledger.ProposedChange) error {
	c, err := sf.client()
	if err != nil {
		return err
	}
	if err := confirm(cmd, f.yes, rest.DescribeChange(ch), fmt.Sprintf("Propose change %s and approve it?", ch.ID())); err != nil {
		return err
	}
	cluster, err := clusterOf(c)
	if err != nil {
		return err
	}
	a, err := signChange(c, cluster, ch, f.expiry, nil)
	if err != nil {
		return err
	}
	var v rest.ChangeView
	if err := c.do(context.Background(), "POST", rest.PathChanges, map[string]any{"change": ch, "approval": a}, &v); err != nil {
		return err
	}
	return reportChange(cmd, v)
}

func reportChange(cmd *cobra.Command, v rest.ChangeView) error {
	return report(cmd, v, func(w io.Writer) error {
		switch v.Status {
		case rest.ChangeApplied:
			fmt.Fprintf(w, "change %s applied (ledger index %d)\n", v.ID, v.AppliedIndex)
		default:
			fmt.Fprintf(w, "change %s %s: %d of %d approvals; other approvers run: custody changes approve %s\n",
				v.ID, v.Status, len(v.Approvals), v.Required, v.ID)
		}
		return nil
	})
}

func newAllowlistCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "allowlist",
		Short: "Withdrawal-address allowlist: add (quorum, cooling-off), remove, list",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	sf := addServerFlags(cmd)
	entry := func(kind policy.ChangeKind) *cobra.Command {
		var wallet, chain, network, address, label string
		var cf *changeFlags
		c := &cobra.Command{
			Use:   string(map[policy.ChangeKind]string{policy.ChangeAllowlistAdd: "add", policy.ChangeAllowlistRemove: "remove"}[kind]) + " --wallet W --address A [--label L]",
			Short: map[policy.ChangeKind]string{policy.ChangeAllowlistAdd: "Propose an allowlist entry (needs the rules' approvals, then cools off)", policy.ChangeAllowlistRemove: "Remove an allowlist entry (one admin or approver)"}[kind],
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if address == "" {
					return errors.New("allowlist: --address is required")
				}
				if wallet != "" && (chain == "" || network == "") {
					cl, err := sf.client()
					if err != nil {
						return err
					}
					var w rest.WalletView
					if err := cl.do(context.Background(), "GET", rest.PathWallets+"/"+url.PathEscape(wallet), nil, &w); err != nil {
						return err
					}
					chain, network = w.Chain, w.Network
				}
				if chain == "" || network == "" {
					return errors.New("allowlist: --chain and --network are required for an account-wide entry")
				}
				ch := policy.Change{ID: cf.changeID(string(kind)), Kind: kind, Wallet: wallet, Chain: chain, Network: network, Address: address, Label: label}
				return propose(cmd, sf, cf, ledger.ProposedChange{Policy: &ch})
			},
		}
		c.Flags().StringVar(&wallet, "wallet", "", "the wallet (default: the whole account)")
		c.Flags().StringVar(&chain, "chain", "", "chain (default: the wallet's)")
		c.Flags().StringVar(&network, "network", "", "network (default: the wallet's)")
		c.Flags().StringVar(&address, "address", "", "the destination, canonical (EIP-55 for Ethereum)")
		if kind == policy.ChangeAllowlistAdd {
			c.Flags().StringVar(&label, "label", "", "a label for people")
		}
		cf = addChangeFlags(c)
		return c
	}
	var wallet string
	list := &cobra.Command{
		Use:   "list [--wallet W]",
		Short: "List the allowlist",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Allowlist []rest.AllowlistView `json:"allowlist"`
			}
			if err := sf.get(rest.PathAllowlist, &out, "wallet", wallet); err != nil {
				return err
			}
			return report(cmd, out, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "WALLET\tCHAIN\tADDRESS\tLABEL\tACTIVE AT\tACTIVE")
				for _, e := range out.Allowlist {
					fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%v\n", orAccount(e.Wallet), e.Chain, e.Network, e.Address, e.Label, e.ActiveAt.Format(time.RFC3339), e.Active)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&wallet, "wallet", "", "only this wallet's entries")
	cmd.AddCommand(entry(policy.ChangeAllowlistAdd), entry(policy.ChangeAllowlistRemove), list)
	return cmd
}

func orAccount(wallet string) string {
	if wallet == "" {
		return "(account)"
	}
	return wallet
}

// newLockCmd is lock (kind lock) or unlock.
func newLockCmd(kind policy.ChangeKind) *cobra.Command {
	var wallet, reason string
	var cf *changeFlags
	var sf *serverFlags
	short := "Lock a wallet or the whole account now (any one operator)"
	if kind == policy.ChangeUnlock {
		short = "Propose lifting a lock (the admin quorum, then the rules' unlock delay)"
	}
	cmd := &cobra.Command{
		Use:   string(kind) + " [--wallet W]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ch := policy.Change{ID: cf.changeID(string(kind)), Kind: kind, Wallet: wallet, Reason: reason}
			return propose(cmd, sf, cf, ledger.ProposedChange{Policy: &ch})
		},
	}
	sf = addServerFlags(cmd)
	cmd.Flags().StringVar(&wallet, "wallet", "", "the wallet (default: the whole account)")
	if kind == policy.ChangeLock {
		cmd.Flags().StringVar(&reason, "reason", "", "why")
		cmd.AddCommand(newLocksListCmd(sf))
	}
	cf = addChangeFlags(cmd)
	return cmd
}

func newLocksListCmd(sf *serverFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the locks (lifted ones included)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Locks []rest.LockView `json:"locks"`
			}
			if err := sf.get(rest.PathLocks, &out); err != nil {
				return err
			}
			return report(cmd, out, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "WALLET\tLOCKED BY\tLOCKED AT\tUNLOCK AT\tACTIVE\tREASON")
				for _, l := range out.Locks {
					unlock := "-"
					if !l.UnlockAt.IsZero() {
						unlock = l.UnlockAt.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", orAccount(l.Wallet), l.LockedBy, l.LockedAt.Format(time.RFC3339), unlock, l.Active, l.Reason)
				}
				return tw.Flush()
			})
		},
	}
}

func newChangesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "changes",
		Short: "Governance changes collecting approvals: list, show, approve",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	sf := addServerFlags(cmd)
	var status string
	list := &cobra.Command{
		Use:   "list [--status collecting|ready|expired]",
		Short: "List the open proposals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Changes []rest.ChangeView `json:"changes"`
			}
			if err := sf.get(rest.PathChanges, &out, "status", status); err != nil {
				return err
			}
			return report(cmd, out, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tAPPROVALS\tBY\tDESCRIPTION")
				for _, v := range out.Changes {
					fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", v.ID, v.Status, len(v.Approvals), v.Required, approvers(v), v.Description)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&status, "status", "", "only this status")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one change: what it does, who approved, what it needs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			v, err := getChange(c, args[0])
			if err != nil {
				return err
			}
			return report(cmd, v, func(w io.Writer) error {
				fmt.Fprintf(w, "change %s: %s\n", v.ID, v.Status)
				if v.Change != nil {
					fmt.Fprintf(w, "  %s\n  kind         %s\n  payload hash %s\n", rest.DescribeChange(*v.Change), v.Kind, v.Change.PayloadHash())
				}
				if v.Status != rest.ChangeApplied {
					fmt.Fprintf(w, "  approvals    %d of %d (roles %s): %s\n  expires      %s\n", len(v.Approvals), v.Required, strings.Join(v.Roles, ", "), approvers(v), v.ExpiresAt.Format(time.RFC3339))
				} else {
					fmt.Fprintf(w, "  applied at ledger index %d\n", v.AppliedIndex)
				}
				return nil
			})
		},
	}
	var expiry *string
	var yes bool
	approve := &cobra.Command{
		Use:   "approve ID [--yes]",
		Short: "Add your approval to a proposed change (after reading what it does)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			v, err := getChange(c, args[0])
			if err != nil {
				return err
			}
			if v.Change == nil || v.ID != args[0] || v.Change.ID() != v.ID {
				return fmt.Errorf("change %s is %s: nothing to approve", args[0], v.Status)
			}
			// What is shown and signed is derived here from the change
			// itself, not from the node's description or hash.
			if err := confirm(cmd, yes, rest.DescribeChange(*v.Change), fmt.Sprintf("Approve change %s (%d of %d so far: %s)?", v.ID, len(v.Approvals), v.Required, approvers(v))); err != nil {
				return err
			}
			a, err := signChange(c, v.ClusterID, *v.Change, *expiry, v.ExpiresAt)
			if err != nil {
				return err
			}
			var out rest.ChangeView
			if err := c.do(context.Background(), "POST", rest.PathChanges+"/"+v.ID+"/approvals", map[string]any{"approval": a}, &out); err != nil {
				return err
			}
			return reportChange(cmd, out)
		},
	}
	approve.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	expiry = addExpiryFlag(approve)
	cmd.AddCommand(list, show, approve)
	return cmd
}

func approvers(v rest.ChangeView) string {
	var by []string
	for _, a := range v.Approvals {
		by = append(by, a.Operator)
	}
	if len(by) == 0 {
		return "-"
	}
	return strings.Join(by, ", ")
}

func getChange(c *apiClient, id string) (rest.ChangeView, error) {
	var v rest.ChangeView
	if id == "" || strings.ContainsAny(id, "/?#") {
		return v, fmt.Errorf("change id %q is not valid", id)
	}
	err := c.do(context.Background(), "GET", rest.PathChanges+"/"+id, nil, &v)
	return v, err
}

// nodeList parses --committee n1,n2,...
func nodeList(s string) ([]pki.NodeID, error) {
	var out []pki.NodeID
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, pki.NodeID(p))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--committee: name the nodes, comma-separated")
	}
	return out, nil
}
