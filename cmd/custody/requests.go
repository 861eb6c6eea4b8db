package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/quorum"
)

func newRequestsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "requests",
		Short: "Review withdrawal requests (operator API)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	sf := addServerFlags(cmd)
	cmd.AddCommand(newRequestsListCmd(sf), newRequestsShowCmd(sf))
	return cmd
}

type requestsList struct {
	Requests   []rest.RequestView `json:"requests"`
	NextCursor string             `json:"next_cursor,omitempty"`
}

func newRequestsListCmd(sf *serverFlags) *cobra.Command {
	var status, wallet, cursor string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--status S] [--wallet W] [--limit N] [--all]",
		Short: "List requests, oldest first",
		Example: `  custody requests list --status pending_approval
  custody requests list --all -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out requestsList
			for {
				var page requestsList
				lim := ""
				if limit > 0 {
					lim = strconv.Itoa(limit)
				}
				if err := sf.get(rest.PathRequests, &page, "status", status, "wallet", wallet, "cursor", cursor, "limit", lim); err != nil {
					return err
				}
				out.Requests = append(out.Requests, page.Requests...)
				out.NextCursor = page.NextCursor
				if !all || page.NextCursor == "" {
					break
				}
				cursor = page.NextCursor
			}
			if out.Requests == nil {
				out.Requests = []rest.RequestView{}
			}
			return report(cmd, out, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tAMOUNT\tFROM\tTO\tAPPROVALS")
				for _, r := range out.Requests {
					v := r.Withdrawal
					fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%d/%d\n", v.ID, v.Status, v.Amount, v.Asset, v.Wallet, v.To, v.Approvals.Collected, v.Approvals.Required)
				}
				if out.NextCursor != "" {
					fmt.Fprintf(tw, "(more: --cursor %s, or --all)\n", out.NextCursor)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only this status (pending_approval, approved, signed, rejected, ...)")
	cmd.Flags().StringVar(&wallet, "wallet", "", "only this wallet")
	cmd.Flags().StringVar(&cursor, "cursor", "", "continue after a previous page")
	cmd.Flags().IntVar(&limit, "limit", 0, "requests per page (1..100; default 50)")
	cmd.Flags().BoolVar(&all, "all", false, "follow every page")
	return cmd
}

// printRequest renders a request for a person: the node's view, then
// what this CLI derives from the unsigned transaction itself (or why it
// cannot).
func printRequest(w io.Writer, r rest.RequestView) error {
	v := r.Withdrawal
	fmt.Fprintf(w, "request %s: %s (as the node shows it)\n", v.ID, v.Status)
	fmt.Fprintf(w, "  %s\n", r.Description)
	fmt.Fprintf(w, "  amount       %s %s (%s base units, %d decimals)\n", v.Amount, v.Asset, v.AmountBase, r.Decimals)
	fmt.Fprintf(w, "  from         %s %s\n", v.Wallet, r.From)
	fmt.Fprintf(w, "  to           %s\n", v.To)
	fmt.Fprintf(w, "  chain        %s/%s\n", v.Chain, v.Network)
	fmt.Fprintf(w, "  max fee      %s %s\n", v.FeeCap.Amount, v.FeeCap.Asset)
	fmt.Fprintf(w, "  policy       rule %s, route %s, allowed %v %s\n", v.Policy.Rule, v.Policy.Route, v.Policy.Allowed, v.Policy.Reason)
	fmt.Fprintf(w, "  approvals    %d of %d (roles %s)\n", v.Approvals.Collected, v.Approvals.Required, strings.Join(v.Approvals.Roles, ", "))
	for _, a := range v.Approvals.By {
		at := ""
		if a.At != nil {
			at = " at " + a.At.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "    %s %s (device %s)%s\n", a.Operator, a.Decision, a.Device, at)
	}
	if r.RejectReason != "" {
		fmt.Fprintf(w, "  reason       %s (unsigned: the rejecting operator's words as the node relayed them)\n", r.RejectReason)
	}
	fmt.Fprintf(w, "  initiator    %s\n  payload hash %s\n  expires      %s\n", v.Initiator, v.PayloadHash, v.ExpiresAt.Format(time.RFC3339))
	rv, err := rest.ReviewRequest(r)
	if err != nil {
		_, err = fmt.Fprintf(w, "CHECK FAILED: %v: approve refuses this request\n", err)
		return err
	}
	_, err = io.WriteString(w, rv.Text())
	return err
}

// reviewText is what `custody approve` shows before it asks: what it
// derived from the transaction, then the node's own words, labelled.
func reviewText(r rest.RequestView, rv *rest.Review) string {
	v := r.Withdrawal
	return fmt.Sprintf("request %s of wallet %s, %s\n%sthe node's description (its words, not derived from the transaction):\n  %s",
		v.ID, v.Wallet, v.Status, rv.Text(), r.Description)
}

func getRequest(c *apiClient, id string) (rest.RequestView, error) {
	var r rest.RequestView
	if id == "" || strings.ContainsAny(id, "/?#") {
		return r, fmt.Errorf("request id %q is not valid", id)
	}
	err := c.do(context.Background(), "GET", rest.PathRequests+"/"+id, nil, &r)
	return r, err
}

func newRequestsShowCmd(sf *serverFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one request: what it sends where, the policy decision, the approvals so far",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			r, err := getRequest(c, args[0])
			if err != nil {
				return err
			}
			return report(cmd, r, func(w io.Writer) error { return printRequest(w, r) })
		},
	}
}

// answer signs dec with the profile's device, locally, and posts it. An
// approval signs only what this CLI derived itself: the request's
// unsigned transaction is parsed here with the chain adapters members
// sign with, and the approval refused (nothing signed) when it does not
// hash to the node's payload hash or does not do what the node's
// withdrawal fields say (rest.ReviewRequest); the operator is shown the
// derived transaction and the node's description labelled as the node's;
// the hash signed is the one computed here. A rejection is signed even
// when that check fails (a warning names why): it can only cancel the
// request, and a node that lies is a reason to reject.
func answer(cmd *cobra.Command, sf *serverFlags, id string, dec quorum.Decision, yes bool, expiry, reason string) error {
	c, err := sf.client()
	if err != nil {
		return err
	}
	r, err := getRequest(c, id)
	if err != nil {
		return err
	}
	var h quorum.Hash
	rv, rerr := rest.ReviewRequest(r)
	switch {
	case rerr == nil:
		h = rv.PayloadHash
	case dec == quorum.Approve:
		return fmt.Errorf("request %s: refusing to approve: %w (nothing signed; ask another node)", id, rerr)
	default:
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: request %s: %v; rejecting it anyway over the node's payload hash (a rejection can only cancel)\n", id, rerr)
		if h, err = quorum.ParseHash(r.Withdrawal.PayloadHash); err != nil {
			return fmt.Errorf("request %s: payload hash: %w", id, err)
		}
	}
	if dec == quorum.Approve {
		if err := confirm(cmd, yes, reviewText(r, rv), fmt.Sprintf("Approve request %s (payload hash %s, computed here)?", id, h)); err != nil {
			return err
		}
	}
	exp, err := operatorParseExpiry(expiry, time.Now())
	if err != nil {
		return err
	}
	a, err := c.sign(quorum.Statement{ClusterID: r.ClusterID, RequestID: id, PayloadHash: h, Decision: dec, Expiry: exp})
	if err != nil {
		return err
	}
	var out rest.RequestView
	if err := c.do(context.Background(), "POST", rest.PathRequests+"/"+id+"/approvals", map[string]any{"approval": a, "reason": reason}, &out); err != nil {
		return err
	}
	return report(cmd, out, func(w io.Writer) error {
		v := out.Withdrawal
		_, err := fmt.Fprintf(w, "%s recorded for %s: status %s, approvals %d of %d\n", dec, id, v.Status, v.Approvals.Collected, v.Approvals.Required)
		return err
	})
}

func newApproveCmd() *cobra.Command {
	var yes bool
	var expiry *string
	var sf *serverFlags
	cmd := &cobra.Command{
		Use:   "approve ID [--yes]",
		Short: "Approve a withdrawal request with your device (after reading its description)",
		Long: `Fetch the request with its unsigned transaction and check it here, with the
chain adapters the signer nodes use: the transaction must hash to the node's
payload hash and do exactly what the node's withdrawal fields say (destination,
asset, amount, maximum fee, nonce or spent outputs). A request that fails is
refused with one line and nothing is signed.

Then show what was derived from the transaction itself: the chain ID (Ethereum,
the transaction's own) or Bitcoin network, the wallet address from its key, the
destination, the amount in base units and with decimals (a token's contract
from the transaction, its symbol and decimals as the node's rules name them),
the maximum fee, the nonce or every input and output (change marked as going
back to the wallet's own key), and the payload hash computed here; below it the
node's description (policy rule, approvals so far, note), labelled as the
node's words. Ask for confirmation, then sign the approval statement over the
payload hash computed here with your device, on this machine, and submit it.
--yes skips the question (and the display).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return answer(cmd, sf, args[0], quorum.Approve, yes, *expiry, "")
		},
	}
	sf = addServerFlags(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	expiry = addExpiryFlag(cmd)
	return cmd
}

func newRejectCmd() *cobra.Command {
	var reason string
	var expiry *string
	var sf *serverFlags
	cmd := &cobra.Command{
		Use:   "reject ID --reason TEXT",
		Short: "Reject a withdrawal request with your device (one rejection cancels it)",
		Long: `Sign a rejection of the request with your device, on this machine, and submit
it; one rejection cancels the request until its point of no return.

The request's unsigned transaction is checked as approve checks it and the
payload hash computed here is signed. When the check fails (the node's payload
hash or withdrawal fields are not its transaction's, or the transaction does
not parse), the rejection is still signed, over the node's payload hash, after
a warning on stderr: a rejection can only cancel, never let anything be signed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return errors.New("reject: --reason is required")
			}
			return answer(cmd, sf, args[0], quorum.Reject, true, *expiry, reason)
		},
	}
	sf = addServerFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded with the rejection, at most 256 bytes)")
	expiry = addExpiryFlag(cmd)
	return cmd
}
