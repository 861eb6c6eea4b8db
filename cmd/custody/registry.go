package main

// Wallets, operators and devices from the operator CLI: admin-quorum
// governance changes proposed and approved through the staging area
// (custody changes approve ID for the other admins).

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/quorum"
)

func newWalletCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wallet",
		Short: "Wallets: create and reshare (admin quorum), list, show",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	sf := addServerFlags(cmd)
	printWallets := func(cmd *cobra.Command, v any, ws []rest.WalletView) error {
		return report(cmd, v, func(w io.Writer) error {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCHAIN\tSTATUS\tADDRESS\tCOMMITTEE\tTHRESHOLD")
			for _, x := range ws {
				fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%d\n", x.ID, x.Chain, x.Network, x.Status, x.Address, strings.Join(x.Committee, ","), x.Threshold)
			}
			return tw.Flush()
		})
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the wallets with their addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Wallets []rest.WalletView `json:"wallets"`
			}
			if err := sf.get(rest.PathWallets, &out); err != nil {
				return err
			}
			return printWallets(cmd, out, out.Wallets)
		},
	}
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one wallet",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.ContainsAny(args[0], "/?#") {
				return fmt.Errorf("wallet id %q is not valid", args[0])
			}
			var w rest.WalletView
			if err := sf.get(rest.PathWallets+"/"+args[0], &w); err != nil {
				return err
			}
			return printWallets(cmd, w, []rest.WalletView{w})
		},
	}
	var wallet, chain, network, committee string
	var threshold int
	var cf *changeFlags
	create := &cobra.Command{
		Use:   "create --wallet W --chain eth|btc --network N --committee n1,n2,n3 --threshold T",
		Short: "Propose a new wallet (the admin quorum; then the committee's keygen)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, err := nodeList(committee)
			if err != nil {
				return err
			}
			spec := ledger.WalletSpec{ID: cf.changeID("wallet-create"), Wallet: wallet, Chain: chain, Network: network, Committee: nodes, Threshold: threshold}
			return propose(cmd, sf, cf, ledger.ProposedChange{WalletCreate: &spec})
		},
	}
	create.Flags().StringVar(&wallet, "wallet", "", "the new wallet's ID")
	create.Flags().StringVar(&chain, "chain", "eth", "eth or btc")
	create.Flags().StringVar(&network, "network", "", "the chain's network (as the nodes' configs name it)")
	create.Flags().StringVar(&committee, "committee", "", "the nodes holding its shares, comma-separated")
	create.Flags().IntVar(&threshold, "threshold", 1, "t: any t+1 of the committee sign")
	cf = addChangeFlags(create)
	var rwallet, rcommittee string
	var rthreshold int
	var rcf *changeFlags
	reshare := &cobra.Command{
		Use:   "reshare --wallet W --committee n1,n2,n3 --threshold T",
		Short: "Propose moving a wallet's key to another committee (the admin quorum; same key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, err := nodeList(rcommittee)
			if err != nil {
				return err
			}
			spec := ledger.ReshareSpec{ID: rcf.changeID("wallet-reshare"), Wallet: rwallet, NewCommittee: nodes, NewThreshold: rthreshold}
			return propose(cmd, sf, rcf, ledger.ProposedChange{WalletReshare: &spec})
		},
	}
	reshare.Flags().StringVar(&rwallet, "wallet", "", "the wallet")
	reshare.Flags().StringVar(&rcommittee, "committee", "", "the new committee, comma-separated")
	reshare.Flags().IntVar(&rthreshold, "threshold", 1, "the new t")
	rcf = addChangeFlags(reshare)
	var walletFile, transcriptFile string
	var gcf *changeFlags
	register := &cobra.Command{
		Use:   "register --wallet-file wallet.json --transcript transcript.json",
		Short: "Propose registering a cold wallet from its keygen ceremony's outputs (the admin quorum)",
		Long: `Propose the wallet.register change of a cold wallet whose key the custodians
generated offline (custody ceremony keygen): the public key, custodians and
threshold from wallet.json, and the SHA-256 of transcript.json, which must name
wallet.json's hash, wallet and key. Other admins approve with
custody changes approve ID.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := coldRegistration(walletFile, transcriptFile)
			if err != nil {
				return err
			}
			spec.ID = gcf.changeID("wallet-register")
			return propose(cmd, sf, gcf, ledger.ProposedChange{WalletRegister: &spec})
		},
	}
	register.Flags().StringVar(&walletFile, "wallet-file", "", "the ceremony's wallet.json")
	register.Flags().StringVar(&transcriptFile, "transcript", "", "the ceremony's transcript.json (its SHA-256 is registered)")
	gcf = addChangeFlags(register)
	cmd.AddCommand(create, list, show, reshare, register)
	return cmd
}

// registryCmd is one registry change proposed from flags.
func registryCmd(use, short string, flags func(*cobra.Command), build func(id string) (quorum.Change, error)) *cobra.Command {
	var cf *changeFlags
	var sf *serverFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ch, err := build(cf.id)
			if err != nil {
				return err
			}
			if ch.ID == "" {
				ch.ID = cf.changeID(string(ch.Kind))
			}
			return propose(cmd, sf, cf, ledger.ProposedChange{Registry: &ch})
		},
	}
	sf = addServerFlags(cmd)
	flags(cmd)
	cf = addChangeFlags(cmd)
	return cmd
}

// deviceFlags describe a device to enroll from `custody operator keygen`'s
// output.
type deviceFlags struct{ publicKey, kind, label string }

func (d *deviceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&d.publicKey, "public-key", "", "the device's public key, hex (custody operator keygen / show)")
	cmd.Flags().StringVar(&d.kind, "device-kind", string(quorum.DeviceEd25519), "ed25519 or ecdsa-p256")
	cmd.Flags().StringVar(&d.label, "label", "", "a label for people")
}

func (d *deviceFlags) device(operator string) (quorum.Device, error) {
	pub, err := hex.DecodeString(strings.TrimPrefix(d.publicKey, "0x"))
	if err != nil || len(pub) == 0 {
		return quorum.Device{}, errors.New("--public-key: want the device's public key in hex")
	}
	k := quorum.DeviceKind(d.kind)
	if err := quorum.ValidatePublicKey(k, pub); err != nil {
		return quorum.Device{}, err
	}
	return quorum.Device{ID: quorum.DeviceID(k, pub), OperatorID: operator, Kind: k, PublicKey: pub, Label: d.label, Status: quorum.DeviceActive}, nil
}

// operatorAdminCmds are `custody operator enroll|suspend|reactivate`.
func operatorAdminCmds() []*cobra.Command {
	var id, name, roles, kind string
	var dev deviceFlags
	enroll := registryCmd("enroll --operator ID --name NAME --roles R1,R2 --public-key HEX",
		"Propose enrolling an operator with a device (the admin quorum)",
		func(c *cobra.Command) {
			c.Flags().StringVar(&id, "operator", "", "the operator's ID (also their certificate's CN)")
			c.Flags().StringVar(&name, "name", "", "the operator's name")
			c.Flags().StringVar(&roles, "roles", "", "admin, approver, initiator, auditor; comma-separated")
			c.Flags().StringVar(&kind, "kind", string(quorum.KindHuman), "human or backend")
			dev.register(c)
		},
		func(cid string) (quorum.Change, error) {
			d, err := dev.device(id)
			if err != nil {
				return quorum.Change{}, err
			}
			var rs []quorum.Role
			for _, r := range strings.Split(roles, ",") {
				if r = strings.TrimSpace(r); r != "" {
					rs = append(rs, quorum.Role(r))
				}
			}
			op := quorum.Operator{ID: id, Name: name, Kind: quorum.OperatorKind(kind), Roles: rs, Status: quorum.StatusActive}
			return quorum.Change{ID: cid, Kind: quorum.ChangeEnrollOperator, Operator: &op, Devices: []quorum.Device{d}}, nil
		})
	status := func(kind quorum.ChangeKind, use, short string) *cobra.Command {
		var op string
		return registryCmd(use+" --operator ID", short,
			func(c *cobra.Command) { c.Flags().StringVar(&op, "operator", "", "the operator") },
			func(cid string) (quorum.Change, error) {
				return quorum.Change{ID: cid, Kind: kind, OperatorID: op}, nil
			})
	}
	return []*cobra.Command{enroll,
		status(quorum.ChangeSuspendOperator, "suspend", "Suspend an operator now (one admin): their approvals stop counting"),
		status(quorum.ChangeReactivateOperator, "reactivate", "Propose reactivating a suspended operator (the admin quorum)")}
}

func newDeviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "Operators' devices: add (the admin quorum), revoke (one admin, at once)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var op string
	var dev deviceFlags
	add := registryCmd("add --operator ID --public-key HEX", "Propose adding a device to an operator (the admin quorum)",
		func(c *cobra.Command) {
			c.Flags().StringVar(&op, "operator", "", "the operator")
			dev.register(c)
		},
		func(cid string) (quorum.Change, error) {
			d, err := dev.device(op)
			if err != nil {
				return quorum.Change{}, err
			}
			return quorum.Change{ID: cid, Kind: quorum.ChangeAddDevice, Devices: []quorum.Device{d}}, nil
		})
	var device string
	revoke := registryCmd("revoke --device ID", "Revoke a device now (one admin): its approvals stop counting",
		func(c *cobra.Command) { c.Flags().StringVar(&device, "device", "", "the device ID") },
		func(cid string) (quorum.Change, error) {
			return quorum.Change{ID: cid, Kind: quorum.ChangeRevokeDevice, DeviceID: device}, nil
		})
	cmd.AddCommand(add, revoke)
	return cmd
}
