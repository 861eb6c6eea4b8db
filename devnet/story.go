package devnet

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// Step is one line of the story: what happened, and for a signed
// withdrawal everything needed to verify its signatures independently.
type Step struct {
	Step    string `json:"step"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
	// Withdrawal fields (empty for other steps).
	Chain         string    `json:"chain,omitempty"`
	Network       string    `json:"network,omitempty"`
	RequestID     string    `json:"request_id,omitempty"`
	Status        string    `json:"status,omitempty"`
	WalletAddress string    `json:"wallet_address,omitempty"`
	To            string    `json:"to,omitempty"`
	Amount        string    `json:"amount,omitempty"` // base units, decimal
	Asset         string    `json:"asset,omitempty"`
	RawTx         string    `json:"raw_tx,omitempty"`
	TxHash        string    `json:"tx_hash,omitempty"`
	Confirmed     *bool     `json:"confirmed,omitempty"`
	Prevouts      []Prevout `json:"prevouts,omitempty"`
}

// Prevout is the output a Bitcoin input spends.
type Prevout struct {
	Script string `json:"script"` // scriptPubKey, hex
	Amount int64  `json:"amount"` // satoshis
}

// Story walks the withdrawal story against a started devnet. Each step is
// passed to emit as it completes.
type Story struct {
	n       *Net
	backend *Client
	emit    func(Step)
	wallets map[string]Wallet
	seq     int
	// dests are allowlisted destinations by chain; stranger is not.
	dests    map[string]string
	stranger map[string]string
}

// RunStory provisions the wallets (distributed keygen), funds and
// allowlists, then walks the story: a denied withdrawal, signed and
// confirmed ETH, ERC-20 and BTC withdrawals after the second approval, a
// cold-routed one, a lock and its unlock, a rejection. It returns the steps
// in order; a step that does not come out as the story says is an error.
func (n *Net) RunStory(ctx context.Context, emit func(Step)) ([]Step, error) {
	var steps []Step
	bc, err := n.ClientFor("backend", Backend)
	if err != nil {
		return nil, err
	}
	defer bc.Close()
	s := &Story{n: n, backend: bc, wallets: map[string]Wallet{}, dests: map[string]string{}, stranger: map[string]string{},
		emit: func(st Step) {
			steps = append(steps, st)
			if emit != nil {
				emit(st)
			}
		}}
	for _, f := range []func(context.Context) error{s.setup, s.denied, s.signed, s.cold, s.lock, s.rejected} {
		if err := f(ctx); err != nil {
			return steps, err
		}
	}
	return steps, nil
}

func (s *Story) step(name, outcome, detail string) {
	s.emit(Step{Step: name, Outcome: outcome, Detail: detail})
}

// setup: pre-params, wallets by keygen, funding, allowlist with its
// cooling-off.
func (s *Story) setup(ctx context.Context) error {
	n := s.n
	if err := n.WaitReady(ctx); err != nil {
		return err
	}
	s.step("cluster", "ready", fmt.Sprintf("%d nodes, leader %s, tss pre-params ready", len(n.Nodes), n.leaderHint()))
	for i, op := range Operators {
		if err := n.Login(ctx, op, i); err != nil {
			return err
		}
		s.step("custody login", "profile written", fmt.Sprintf("%s against %s's API (%s)", op, n.Nodes[i%len(n.Nodes)], n.APIs[n.Nodes[i%len(n.Nodes)]]))
	}
	dev, err := n.EnrollTokenDevice(ctx, 2)
	if err != nil {
		return err
	}
	s.step("device.add", "enrolled", fmt.Sprintf("carol's device %s: a P-256 key generated inside her PKCS#11 token (SoftHSM2 here), enrolled by alice and bob; her answers are signed in the token from now on", dev))
	specs := []struct{ id, chain, network string }{{ETHWallet, "eth", "devnet"}}
	if n.BTC != nil {
		specs = append(specs, struct{ id, chain, network string }{BTCWallet, "btc", "regtest"})
	}
	for _, sp := range specs {
		w, err := n.CreateWallet(ctx, sp.id, sp.chain, sp.network)
		if err != nil {
			return err
		}
		s.wallets[sp.id] = w
		s.step("wallet.create", "active", fmt.Sprintf("%s: %s %s, 2-of-%d by distributed keygen, approved by alice and bob", w.ID, w.Chain, w.Address, len(n.Nodes)))
	}
	ew := s.wallets[ETHWallet]
	if err := n.FundETH(ctx, common.HexToAddress(ew.Address), ether(10)); err != nil {
		return fmt.Errorf("fund %s: %w", ew.ID, err)
	}
	if err := n.FundToken(ctx, common.HexToAddress(ew.Address), big.NewInt(5_000_000_000)); err != nil {
		return fmt.Errorf("fund %s with TKN: %w", ew.ID, err)
	}
	s.step("fund", "done", fmt.Sprintf("%s: 10 ETH and 5000 TKN", ew.Address))
	if bw, ok := s.wallets[BTCWallet]; ok {
		if _, err := n.FundBTC(ctx, bw.Address, 5_0000_0000); err != nil {
			return fmt.Errorf("fund %s: %w", bw.ID, err)
		}
		s.step("fund", "done", fmt.Sprintf("%s: 5 BTC", bw.Address))
	}
	// Destinations: fresh addresses the devnet holds the keys of.
	for _, chain := range []string{"eth", "btc"} {
		if chain == "btc" && n.BTC == nil {
			continue
		}
		for _, m := range []map[string]string{s.dests, s.stranger} {
			a, err := freshAddress(chain)
			if err != nil {
				return err
			}
			m[chain] = a
		}
	}
	for chain, addr := range s.dests {
		network := "devnet"
		if chain == "btc" {
			network = "regtest"
		}
		id := "allow-" + chain + "-" + addr[len(addr)-6:]
		if _, err := n.Operator(ctx, "alice", nil, "allowlist", "add", "--chain", chain, "--network", network, "--address", addr,
			"--label", "devnet treasury", "--id", id, "--yes"); err != nil {
			return err
		}
		if _, err := n.Operator(ctx, "bob", nil, "changes", "approve", id, "--yes"); err != nil {
			return err
		}
		s.step("allowlist.add", "approved", fmt.Sprintf("%s %s proposed by alice, approved by bob (custody allowlist add, custody changes approve); cooling-off 5s", chain, addr))
	}
	// The cooling-off runs on every member's own clock: wait it out.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(6 * time.Second):
	}
	s.step("allowlist", "cooling-off passed", "the destinations may be paid")
	return nil
}

// create sends a withdrawal as the backend: its device signs the intent.
func (s *Story) create(ctx context.Context, wallet, asset, to, amt string, decimals int) (*rest.WithdrawalView, error) {
	s.seq++
	id := fmt.Sprintf("wd-%d-%s", s.seq, strings.ToLower(asset))
	base, err := amount.ParseUnits(amt, decimals)
	if err != nil {
		return nil, err
	}
	w := policy.Withdrawal{Wallet: wallet, Asset: asset, To: to, Amount: base}
	init, err := s.n.SignAs("backend", Backend, id, w.IntentHash(id), quorum.Initiate, time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	body := map[string]any{"id": id, "wallet": wallet, "asset": asset, "to": to, "amount": amt, "initiation": init}
	var v rest.WithdrawalView
	for {
		_, err := s.backend.Do(ctx, "", "POST", rest.PathWithdrawals, body, &v)
		var ae *APIError
		if err == nil {
			return &v, nil
		}
		if !errors.As(err, &ae) || ae.Status != 503 || ctx.Err() != nil {
			return nil, fmt.Errorf("create %s: %w", id, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// get reads a withdrawal as the backend.
func (s *Story) get(ctx context.Context, id string) (*rest.WithdrawalView, error) {
	var v rest.WithdrawalView
	_, err := s.backend.Do(ctx, "", "GET", rest.PathWithdrawals+"/"+id, nil, &v)
	return &v, err
}

// waitFor reads withdrawal id until ok holds (a replica catching up), for
// at most ten seconds.
func (s *Story) waitFor(ctx context.Context, id string, ok func(*rest.WithdrawalView) bool) (*rest.WithdrawalView, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := s.get(ctx, id)
		if err == nil && ok(v) {
			return v, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%s: still %s with %d approvals after 10s", id, v.Status, v.Approvals.Collected)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// decide has op approve (custody approve --yes) or reject (custody reject
// --reason) request v with the operator CLI: signed on op's device, sent to
// its node's operator API.
func (s *Story) decide(ctx context.Context, v *rest.WithdrawalView, op string, dec quorum.Decision) error {
	args := []string{"approve", v.ID, "--yes"}
	if dec == quorum.Reject {
		args = []string{"reject", v.ID, "--reason", "destination not expected"}
	}
	_, err := s.n.Operator(ctx, op, nil, args...)
	return err
}

// waitStatus polls v until its status is one of want, mining blocks on
// the chains meanwhile (confirmations).
func (s *Story) waitStatus(ctx context.Context, id string, want ...string) (*rest.WithdrawalView, error) {
	deadline := time.Now().Add(4 * time.Minute)
	var last string
	for {
		v, err := s.get(ctx, id)
		if err == nil {
			for _, w := range want {
				if v.Status == w {
					return v, nil
				}
			}
			last = v.Status
			switch v.Status {
			case "failed", "rejected", "denied", "expired", "reverted", "dropped":
				return v, fmt.Errorf("%s ended %s (%s)", id, v.Status, v.Failure)
			case "broadcast":
				s.n.ETH.Commit()
				if v.Chain == "btc" && s.n.BTC != nil {
					_ = s.n.MineBTC(ctx, 1)
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("%s: status %q, want %v", id, last, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// denied: a destination not on the allowlist.
func (s *Story) denied(ctx context.Context) error {
	v, err := s.create(ctx, ETHWallet, "ETH", s.stranger["eth"], "1", 18)
	if err != nil {
		return err
	}
	if v.Status != "denied" {
		return fmt.Errorf("a withdrawal to a non-allowlisted address is %s, want denied", v.Status)
	}
	s.emit(withdrawalStep("1. non-allowlisted destination", "denied", v.Policy.Reason+": "+v.Policy.Detail, v))
	return nil
}

// signed: ETH, ERC-20 and BTC withdrawals wait after one approval and are
// signed, broadcast and confirmed after the second.
func (s *Story) signed(ctx context.Context) error {
	type tc struct {
		wallet, asset, amt string
		decimals           int
		chain              string
	}
	cases := []tc{{ETHWallet, "ETH", "1.5", 18, "eth"}, {ETHWallet, "TKN", "250", 6, "eth"}}
	if s.n.BTC != nil {
		cases = append(cases, tc{BTCWallet, "BTC", "0.75", 8, "btc"})
	}
	for _, c := range cases {
		v, err := s.create(ctx, c.wallet, c.asset, s.dests[c.chain], c.amt, c.decimals)
		if err != nil {
			return err
		}
		if v.Status != "pending_approval" {
			return fmt.Errorf("%s: %s after create, want pending_approval (%s)", v.ID, v.Status, v.Policy.Reason)
		}
		if err := s.decide(ctx, v, "alice", quorum.Approve); err != nil {
			return err
		}
		// Reads come from the answering node's replica: wait for it to
		// apply the approval.
		if v, err = s.waitFor(ctx, v.ID, func(v *rest.WithdrawalView) bool { return v.Approvals.Collected == 1 }); err != nil {
			return err
		}
		if v.Status != "pending_approval" {
			return fmt.Errorf("%s after one approval: %s, want pending_approval", v.ID, v.Status)
		}
		s.step("2. "+c.asset+" withdrawal, one approval", "waits", fmt.Sprintf("%s: %s %s, approvals %d of %d", v.ID, c.amt, c.asset, v.Approvals.Collected, v.Approvals.Required))
		if err := s.decide(ctx, v, "bob", quorum.Approve); err != nil {
			return err
		}
		v, err = s.waitStatus(ctx, v.ID, "confirmed")
		if err != nil {
			return err
		}
		st, err := s.signedStep("2. "+c.asset+" withdrawal, second approval", v)
		if err != nil {
			return err
		}
		s.emit(st)
	}
	return nil
}

// withdrawalStep is a step about withdrawal v.
func withdrawalStep(name, outcome, detail string, v *rest.WithdrawalView) Step {
	return Step{Step: name, Outcome: outcome, Detail: detail, Chain: v.Chain, Network: v.Network, RequestID: v.ID,
		Status: v.Status, To: v.To, Amount: v.AmountBase, Asset: v.Asset}
}

// signedStep describes a confirmed withdrawal with what verifying it needs.
func (s *Story) signedStep(name string, v *rest.WithdrawalView) (Step, error) {
	confirmed := v.Status == "confirmed"
	st := withdrawalStep(name, v.Status, "", v)
	st.WalletAddress, st.Confirmed = s.wallets[v.Wallet].Address, &confirmed
	if v.Signed == nil {
		return st, fmt.Errorf("%s is %s without a signed transaction", v.ID, v.Status)
	}
	st.RawTx, st.TxHash = v.Signed.RawTx, v.Signed.TxHash
	st.Detail = fmt.Sprintf("%s %s %s → %s, tx %s", v.ID, v.Amount, v.Asset, v.To, v.Signed.TxHash)
	if v.OnChain != nil && v.OnChain.Confirmations > 0 {
		st.Detail += fmt.Sprintf(", %d confirmations", v.OnChain.Confirmations)
	}
	if v.Chain == "btc" {
		// Bitcoin's raw transactions are plain hex (bitcoind's and btcd's
		// sendrawtransaction take them so).
		st.RawTx = strings.TrimPrefix(v.Signed.RawTx, "0x")
		raw, err := hex.DecodeString(st.RawTx)
		if err != nil {
			return st, err
		}
		tx, err := btc.ParseRawTx(raw)
		if err != nil {
			return st, err
		}
		for _, in := range tx.TxIn {
			o, err := s.n.prevout(context.Background(), in.PreviousOutPoint)
			if err != nil {
				return st, err
			}
			st.Prevouts = append(st.Prevouts, Prevout{Script: hex.EncodeToString(o.PkScript), Amount: o.Value})
		}
	}
	return st, nil
}

// cold: above the hot route's limit the withdrawal waits for a ceremony.
func (s *Story) cold(ctx context.Context) error {
	v, err := s.create(ctx, ETHWallet, "ETH", s.dests["eth"], "3", 18)
	if err != nil {
		return err
	}
	for _, op := range []string{"alice", "bob"} {
		if err := s.decide(ctx, v, op, quorum.Approve); err != nil {
			return err
		}
	}
	if v, err = s.waitStatus(ctx, v.ID, "awaiting_ceremony"); err != nil {
		return err
	}
	s.emit(withdrawalStep("3. above the hot limit", v.Status, fmt.Sprintf("%s: 3 ETH routed %s by rule %s", v.ID, v.Policy.Route, v.Policy.Rule), v))
	return nil
}

// lock: an operator locks the wallet; the next withdrawal is refused; an
// unlock by the admin quorum takes effect after its delay.
func (s *Story) lock(ctx context.Context) error {
	if _, err := s.n.Operator(ctx, "carol", nil, "lock", "--wallet", ETHWallet, "--reason", "suspicious login", "--id", "lock-1", "--yes"); err != nil {
		return err
	}
	s.step("4. lock", "locked", "carol locked "+ETHWallet+" (custody lock): suspicious login")
	v, err := s.create(ctx, ETHWallet, "ETH", s.dests["eth"], "0.5", 18)
	if err != nil {
		return err
	}
	if v.Status != "denied" {
		return fmt.Errorf("a withdrawal from a locked wallet is %s, want denied", v.Status)
	}
	s.emit(withdrawalStep("4. withdrawal while locked", "denied", v.Policy.Reason+": "+v.Policy.Detail, v))
	if _, err := s.n.Operator(ctx, "alice", nil, "unlock", "--wallet", ETHWallet, "--id", "unlock-1", "--yes"); err != nil {
		return err
	}
	if _, err := s.n.Operator(ctx, "bob", nil, "changes", "approve", "unlock-1", "--yes"); err != nil {
		return err
	}
	s.step("4. unlock", "approved", "alice and bob approved the unlock; it takes effect after the 5s delay")
	deadline := time.Now().Add(time.Minute)
	for {
		v, err := s.create(ctx, ETHWallet, "ETH", s.dests["eth"], "0.5", 18)
		if err != nil {
			return err
		}
		if v.Status == "pending_approval" {
			s.step("4. after the unlock delay", "accepted", v.ID+" waits for approvals again")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still %s a minute after the unlock (%s)", v.Status, v.Policy.Reason)
		}
		time.Sleep(time.Second)
	}
}

// rejected: one rejection and the withdrawal is never signed.
func (s *Story) rejected(ctx context.Context) error {
	v, err := s.create(ctx, ETHWallet, "ETH", s.dests["eth"], "0.25", 18)
	if err != nil {
		return err
	}
	if err := s.decide(ctx, v, "alice", quorum.Approve); err != nil {
		return err
	}
	if err := s.decide(ctx, v, "carol", quorum.Reject); err != nil {
		return err
	}
	// A later approval is refused: rejected is final.
	late := s.decide(ctx, v, "bob", quorum.Approve)
	if late == nil {
		return fmt.Errorf("%s: bob's approval after the rejection was accepted", v.ID)
	}
	if v, err = s.waitFor(ctx, v.ID, func(v *rest.WithdrawalView) bool { return v.Status != "pending_approval" }); err != nil {
		return err
	}
	if v.Status != "rejected" || v.Signed != nil {
		return fmt.Errorf("%s after a rejection: %s (signed %v)", v.ID, v.Status, v.Signed != nil)
	}
	s.emit(withdrawalStep("5. rejected by carol", "rejected", v.ID+": never signed", v))
	return nil
}

// prevout reads the output op spends from btcd.
func (n *Net) prevout(ctx context.Context, op wire.OutPoint) (*wire.TxOut, error) {
	c, err := n.btcClient()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Output(ctx, op)
}

// freshAddress is a new address on chain whose key is thrown away.
func freshAddress(chain string) (string, error) {
	switch chain {
	case "eth":
		k, err := crypto.GenerateKey()
		if err != nil {
			return "", err
		}
		return crypto.PubkeyToAddress(k.PublicKey).Hex(), nil
	case "btc":
		k, err := btcec.NewPrivateKey()
		if err != nil {
			return "", err
		}
		a, err := btcAddress(k.PubKey())
		if err != nil {
			return "", err
		}
		return a.EncodeAddress(), nil
	}
	return "", fmt.Errorf("no chain %q", chain)
}

// PrintText writes a step for people: one or two lines.
func PrintText(w io.Writer, st Step) {
	fmt.Fprintf(w, "%-40s %s\n", st.Step, st.Outcome)
	if st.Detail != "" {
		fmt.Fprintf(w, "%-40s   %s\n", "", st.Detail)
	}
}

// PrintJSON writes a step as one JSON line.
func PrintJSON(w io.Writer, st Step) {
	b, _ := json.Marshal(st)
	fmt.Fprintf(w, "%s\n", b)
}

// PrintTable writes the withdrawals of steps as a final table.
func PrintTable(w io.Writer, steps []Step) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tCHAIN\tASSET\tAMOUNT (base units)\tSTATUS\tTX")
	for _, st := range steps {
		if st.RequestID == "" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.RequestID, st.Chain, st.Asset, st.Amount, st.Status, st.TxHash)
	}
	tw.Flush()
}
