package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Validate and dry-run withdrawal policy rules",
		Long: `Validate a policy rules file and dry-run decisions against it.

Rules are YAML, parsed strictly: unknown keys are errors that name their path
(e.g. wallets[1].limits.per_tx). A rules file is identified by its hash, the
SHA-256 of its canonical form; see docs/policy.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyTestCmd())
	return cmd
}

type policyCheckReport struct {
	RulesHash string            `json:"rules_hash"`
	Version   int               `json:"version"`
	Assets    map[string]int    `json:"assets"`
	Rules     []policyRuleBrief `json:"rules"`
}

type policyRuleBrief struct {
	Name    string   `json:"name"`
	Asset   string   `json:"asset"`
	Class   string   `json:"class"`
	Wallets []string `json:"wallets,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

func newPolicyCheckCmd() *cobra.Command {
	var rulesFile string
	cmd := &cobra.Command{
		Use:     "check --rules FILE",
		Short:   "Validate a rules file and print its hash",
		Example: `  custody policy check --rules policy/testdata/rules.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rules, err := policyLoadRules(rulesFile)
			if err != nil {
				return err
			}
			rep := policyCheckReport{RulesHash: rules.Hash(), Version: rules.Version, Assets: map[string]int{}}
			for id, a := range rules.Assets {
				rep.Assets[id] = a.Decimals
			}
			for _, r := range rules.Wallets {
				rep.Rules = append(rep.Rules, policyRuleBrief{Name: r.Name, Asset: r.Asset, Class: string(r.Class), Wallets: r.Wallets, Groups: r.Groups})
			}
			return report(cmd, rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "ok: %d rules, %d assets\nrules hash: %s\n", len(rep.Rules), len(rep.Assets), rep.RulesHash)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&rulesFile, "rules", "", "rules file (YAML)")
	_ = cmd.MarkFlagRequired("rules")
	return cmd
}

// policyStateFile is the dry-run state: what the ledger would hold, plus the
// time to evaluate at.
type policyStateFile struct {
	Now       time.Time               `json:"now"`
	Allowlist []policy.AllowlistEntry `json:"allowlist"`
	Locks     []policy.Lock           `json:"locks"`
	History   []policy.Spend          `json:"history"`
}

func newPolicyTestCmd() *cobra.Command {
	var rulesFile, stateFile, requestFile, registryFile, approvalsFile string
	cmd := &cobra.Command{
		Use:   "test --rules FILE --state FILE --request FILE",
		Short: "Dry-run the policy decision for a request",
		Long: `Evaluate a withdrawal request against rules and a state, and print the
decision: the matched rule, the route, the approvals required and, for a
denial, the reason. Nothing is signed or recorded.

The state file (JSON or YAML) holds "now" (RFC 3339), "allowlist", "locks" and
"history"; the request file holds id, wallet, asset, chain, network, to,
amount (base units, as a string), initiator and payload_hash. With
--registry and --approvals the approvals are verified and counted too.

The exit status is 0 when the request is allowed (or approved, with
approvals) and 1 with a one-line reason when it is denied.`,
		Example: `  custody policy test --rules rules.yaml --state state.yaml --request request.json -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rules, err := policyLoadRules(rulesFile)
			if err != nil {
				return err
			}
			var sf policyStateFile
			if err := decodeInputFile(stateFile, &sf); err != nil {
				return err
			}
			if sf.Now.IsZero() {
				return fmt.Errorf("policy: %s: \"now\" is required", stateFile)
			}
			st, err := policy.NewState(sf.Allowlist, sf.Locks, sf.History)
			if err != nil {
				return fmt.Errorf("%s: %w", stateFile, err)
			}
			var req policy.Request
			if err := decodeInputFile(requestFile, &req); err != nil {
				return err
			}
			var d policy.Decision
			switch {
			case registryFile == "" && approvalsFile == "":
				d = policy.Evaluate(rules, st, req, sf.Now)
			case registryFile != "" && approvalsFile != "":
				var reg quorum.Registry
				if err := decodeInputFile(registryFile, &reg); err != nil {
					return err
				}
				var approvals []quorum.Approval
				if err := decodeInputFile(approvalsFile, &approvals); err != nil {
					return err
				}
				d = policy.Authorize(rules, st, reg, req, approvals, sf.Now)
			default:
				return errors.New("policy: --registry and --approvals go together")
			}
			if err := report(cmd, d, func(w io.Writer) error { return policyPrintDecision(w, d) }); err != nil {
				return err
			}
			if d.Reason != "" {
				return fmt.Errorf("policy: request %s denied: %s: %s", d.RequestID, d.Reason, d.Detail)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rulesFile, "rules", "", "rules file (YAML)")
	cmd.Flags().StringVar(&stateFile, "state", "", "state file (JSON or YAML): now, allowlist, locks, history")
	cmd.Flags().StringVar(&requestFile, "request", "", "request file (JSON or YAML)")
	cmd.Flags().StringVar(&registryFile, "registry", "", "operator registry (JSON), to count approvals")
	cmd.Flags().StringVar(&approvalsFile, "approvals", "", "approvals (JSON list), to count approvals")
	for _, f := range []string{"rules", "state", "request"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func policyPrintDecision(w io.Writer, d policy.Decision) error {
	verdict := "ALLOWED"
	switch {
	case d.Approved:
		verdict = "APPROVED"
	case d.Reason == policy.ReasonInsufficientApprovals:
		verdict = "WAITING FOR APPROVALS"
	case d.Reason != "":
		verdict = "DENIED (" + string(d.Reason) + ")"
	case d.Allowed:
		verdict = fmt.Sprintf("ALLOWED, pending %d approvals", d.Required)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "decision:   %s\n", verdict)
	fmt.Fprintf(&b, "request:    %s\n", d.RequestID)
	if d.Rule != "" {
		fmt.Fprintf(&b, "rule:       %s (%s wallet)\n", d.Rule, d.Class)
	}
	if d.Route != "" {
		fmt.Fprintf(&b, "route:      %s\n", d.Route)
	}
	if d.Required > 0 {
		roles := make([]string, len(d.Roles))
		for i, r := range d.Roles {
			roles[i] = string(r)
		}
		fmt.Fprintf(&b, "approvals:  %d of %d (roles: %s)\n", d.Collected, d.Required, strings.Join(roles, ", "))
	}
	if d.Tally != nil {
		for _, ig := range d.Tally.Ignored {
			fmt.Fprintf(&b, "  ignored #%d device %s: %s\n", ig.Index, ig.DeviceID, ig.Reason)
		}
	}
	if d.Detail != "" {
		fmt.Fprintf(&b, "reason:     %s\n", d.Detail)
	}
	fmt.Fprintf(&b, "rules hash: %s\n", d.RulesHash)
	_, err := io.WriteString(w, b.String())
	return err
}

func policyLoadRules(path string) (*policy.Rules, error) {
	b, err := readInputFile(path)
	if err != nil {
		return nil, err
	}
	r, err := policy.ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}
