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

// printRequest renders a request for a person.
func printRequest(w io.Writer, r rest.RequestView) error {
	v := r.Withdrawal
	fmt.Fprintf(w, "request %s: %s\n", v.ID, v.Status)
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
	return nil
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

// answer signs dec over the request's payload hash with the profile's
// device, locally, and posts it.
func answer(cmd *cobra.Command, sf *serverFlags, id string, dec quorum.Decision, yes bool, expiry, reason string) error {
	c, err := sf.client()
	if err != nil {
		return err
	}
	r, err := getRequest(c, id)
	if err != nil {
		return err
	}
	if dec == quorum.Approve {
		if err := confirm(cmd, yes, r.Description, fmt.Sprintf("Approve request %s (payload %s)?", id, r.Withdrawal.PayloadHash)); err != nil {
			return err
		}
	}
	h, err := quorum.ParseHash(r.Withdrawal.PayloadHash)
	if err != nil {
		return fmt.Errorf("request %s: payload hash: %w", id, err)
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
		Long: `Fetch the request, show what it sends where (chain, from, to, amount with
its decimals and symbol, max fee, policy rule, approvals so far) and ask for
confirmation; then sign the approval statement over its payload hash with your
device, on this machine, and submit it. --yes skips the question.`,
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
		Args:  cobra.ExactArgs(1),
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
