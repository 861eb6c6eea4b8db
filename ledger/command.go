package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// CommandVersion is the only envelope version this build applies. A log entry
// with any other version halts the node (see [ErrHalted]).
const CommandVersion = 1

// Command is one typed ledger command: a struct of this package (Genesis,
// RequestCreate, Approve, ClaimSession, ...) submitted with [Store.Submit].
// Each command type sits with its handler in the file of its family
// (cmd_genesis.go, cmd_voter.go, cmd_governance.go, cmd_wallet.go,
// cmd_request.go, cmd_claim.go, cmd_broadcast.go, cmd_cold.go, cmd_change.go,
// cmd_webhook.go, checkpoint.go); the set is closed (apply is unexported),
// so nothing outside the ledger can invent a command or propose one by
// name.
type Command interface {
	// Type is the command's name in the log entry ("request.create").
	Type() string
	// apply checks the command against the state and stages its effect in
	// t. A refusal returns an error and the staged effect is discarded: the
	// state stays byte-identical (see txn).
	apply(t *txn) (applyOut, error)
}

// Command types, as written in log entries. Adding one is a protocol change:
// every node must run a build that knows it before any leader proposes it (an
// unknown type halts a node).
const (
	CmdGenesis        = "genesis"
	CmdVoterSet       = "voter.set"
	CmdVoterRemove    = "voter.remove"
	CmdRegistryChange = "registry.change"
	CmdPolicyChange   = "policy.change"
	CmdRulesSet       = "rules.set"
	CmdWalletSet      = "wallet.set"
	CmdWalletCreate   = "wallet.create"
	CmdWalletKeyed    = "wallet.keyed"
	CmdWalletReshare  = "wallet.reshare"
	CmdWalletReshared = "wallet.reshared"
	CmdRequestCreate  = "request.create"
	CmdApprove        = "request.approve"
	CmdClaim          = "request.claim"
	CmdReclaim        = "request.reclaim"
	CmdResult         = "request.result"
	CmdExpire         = "request.expire"
	CmdColdExport     = "cold.export"
	CmdColdImport     = "cold.import"
	CmdColdAttest     = "cold.attest"
	CmdWalletRegister = "wallet.register"
	CmdCheckpointSign = "checkpoint.sign"
	CmdNodeChange     = "node.change"
	CmdNodeToken      = "node.token"
	CmdBroadcast      = "request.broadcast"
	CmdChainStatus    = "request.chain_status"
	CmdChainWitness   = "request.chain_witness"
	CmdChangePropose  = "change.propose"
	CmdChangeApprove  = "change.approve"
	// CmdWebhookDelivered records webhook delivery progress (cmd_webhook.go).
	CmdWebhookDelivered = "webhook.delivered"
)

// commandTypes is the one table from a log entry's type to its command.
var commandTypes = map[string]func() Command{
	CmdGenesis:        func() Command { return new(Genesis) },
	CmdVoterSet:       func() Command { return new(VoterSet) },
	CmdVoterRemove:    func() Command { return new(VoterRemove) },
	CmdRegistryChange: func() Command { return new(RegistryChange) },
	CmdPolicyChange:   func() Command { return new(PolicyChange) },
	CmdRulesSet:       func() Command { return new(RulesSet) },
	CmdWalletSet:      func() Command { return new(WalletSet) },
	CmdWalletCreate:   func() Command { return new(WalletCreate) },
	CmdWalletKeyed:    func() Command { return new(WalletKeyed) },
	CmdWalletReshare:  func() Command { return new(WalletReshare) },
	CmdWalletReshared: func() Command { return new(WalletReshared) },
	CmdRequestCreate:  func() Command { return new(RequestCreate) },
	CmdApprove:        func() Command { return new(Approve) },
	CmdClaim:          func() Command { return new(ClaimSession) },
	CmdReclaim:        func() Command { return new(ReclaimSession) },
	CmdResult:         func() Command { return new(RecordResult) },
	CmdExpire:         func() Command { return new(ExpireRequest) },
	CmdColdExport:     func() Command { return new(ColdExport) },
	CmdColdImport:     func() Command { return new(ColdImport) },
	CmdColdAttest:     func() Command { return new(ColdAttest) },
	CmdWalletRegister: func() Command { return new(WalletRegister) },
	CmdCheckpointSign: func() Command { return new(CheckpointSign) },
	CmdNodeChange:     func() Command { return new(NodeChange) },
	CmdNodeToken:      func() Command { return new(NodeToken) },
	CmdBroadcast:      func() Command { return new(RecordBroadcast) },
	CmdChainStatus:    func() Command { return new(RecordChainStatus) },
	CmdChainWitness:   func() Command { return new(ChainWitness) },
	CmdChangePropose:  func() Command { return new(ChangePropose) },
	CmdChangeApprove:  func() Command { return new(ChangeApprove) },
	// Webhook delivery progress (cmd_webhook.go).
	CmdWebhookDelivered: func() Command { return new(WebhookDelivered) },
}

// CommandTypes returns every command type this build applies, sorted.
func CommandTypes() []string {
	out := make([]string, 0, len(commandTypes))
	for k := range commandTypes {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Envelope is the log entry format: JSON {v, type, time, actor, payload}.
// Time is set by the proposing leader; Apply never reads a clock.
type Envelope struct {
	V       int             `json:"v"`
	Type    string          `json:"type"`
	Time    time.Time       `json:"time"`
	Actor   string          `json:"actor"`
	Payload json.RawMessage `json:"payload"`
}

// EncodeCommand builds the log entry of cmd, proposed by actor at now.
func EncodeCommand(actor string, now time.Time, cmd Command) ([]byte, error) {
	if cmd == nil {
		return nil, fmt.Errorf("%w: no command", ErrInvalid)
	}
	p, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode %s: %w", cmd.Type(), err)
	}
	return json.Marshal(Envelope{V: CommandVersion, Type: cmd.Type(), Time: now.UTC(), Actor: actor, Payload: p})
}

// decodeEntry parses a log entry into its envelope and typed command. An
// error means this build cannot apply the entry (the FSM halts).
func decodeEntry(b []byte) (*Envelope, Command, error) {
	var env Envelope
	if err := decodeStrict(b, &env); err != nil {
		return nil, nil, fmt.Errorf("undecodable entry: %v", err)
	}
	if env.V != CommandVersion {
		return nil, nil, fmt.Errorf("unknown command version %d (this build applies %d)", env.V, CommandVersion)
	}
	cmd, err := decodeCommand(env.Type, env.Payload)
	if err != nil {
		return nil, nil, err
	}
	return &env, cmd, nil
}

// DecodeCommand decodes a command of type typ from its payload: the JSON
// json.Marshal gives for the command, as in a log entry's payload. It is
// how a leader takes a command another node forwarded. Decoding is as
// strict as the FSM's (unknown types and fields, trailing data refused) and
// refuses a null payload too, so a command that decodes carries exactly
// what it was encoded with, signatures byte for byte. The command is a
// pointer (*RequestCreate, ...), as the FSM applies it. Errors wrap
// [ErrInvalid].
func DecodeCommand(typ string, payload []byte) (Command, error) {
	if bytes.Equal(bytes.TrimSpace(payload), []byte("null")) {
		// The FSM refuses the zero command such a log entry decodes to;
		// a forwarded command has no reason to be one.
		return nil, fmt.Errorf("%w: %s payload is null", ErrInvalid, typ)
	}
	cmd, err := decodeCommand(typ, payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return cmd, nil
}

// decodeCommand is the one decoder of a typed payload, for log entries
// (decodeEntry) and forwarded commands (DecodeCommand).
func decodeCommand(typ string, payload []byte) (Command, error) {
	mk, ok := commandTypes[typ]
	if !ok {
		return nil, fmt.Errorf("unknown command type %q", typ)
	}
	cmd := mk()
	if err := decodeStrict(payload, cmd); err != nil {
		return nil, fmt.Errorf("undecodable %s payload: %v", typ, err)
	}
	return cmd, nil
}

// decodeStrict parses JSON refusing unknown fields and trailing data: a field
// this build does not know means the entry was written by a newer protocol.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}
