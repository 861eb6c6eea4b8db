package cold

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"

	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/newfile"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/preparams"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/strictdoc"
)

// Ceremony is the strict YAML of `custody ceremony keygen --config FILE`
// (docs/cold.md documents every field).
type Ceremony struct {
	Version   int    `json:"version"`
	Wallet    string `json:"wallet"`
	Chain     string `json:"chain"`
	Network   string `json:"network"`
	ChainID   int    `json:"chain_id,omitempty"`
	BTCParams string `json:"btc_params,omitempty"`
	// Threshold t: any t+1 custodians sign.
	Threshold int `json:"threshold"`
	// Module is the PKCS#11 library of the custodians' tokens.
	Module     string      `json:"module"`
	Custodians []Custodian `json:"custodians"`
}

// Custodian is one custodian and the token that holds their share.
type Custodian struct {
	// Name is the custodian's party name (a pki.NodeID: letters, digits,
	// '-', '.'); it names the share file.
	Name        string `json:"name"`
	TokenLabel  string `json:"token_label"`
	TokenSerial string `json:"token_serial"`
}

// ParseCeremony reads and validates a ceremony config; errors name the
// YAML path.
func ParseCeremony(b []byte) (*Ceremony, error) {
	var c Ceremony
	if err := strictdoc.DecodeYAML(b, &c); err != nil {
		return nil, fmt.Errorf("cold: ceremony: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("cold: ceremony: %w", err)
	}
	return &c, nil
}

func (c *Ceremony) validate() error {
	if c.ChainID < 0 {
		return fmt.Errorf("chain_id: %d is negative", c.ChainID)
	}
	if c.Version != 1 {
		return fmt.Errorf("version: %d, want 1", c.Version)
	}
	spec := c.spec(make([]byte, 33), strings.Repeat("0", 64))
	spec.PubKey[0] = 2
	if err := spec.Validate(); err != nil {
		return err
	}
	if c.Chain == "btc" {
		if _, err := btc.Network(c.BTCParams); err != nil {
			return fmt.Errorf("btc_params: %w", err)
		}
	}
	if c.Module == "" {
		return errors.New("module: required (the PKCS#11 library path)")
	}
	labels, serials := map[string]bool{}, map[string]bool{}
	for i, cu := range c.Custodians {
		switch {
		case pki.NodeID(cu.Name).Validate() != nil:
			return fmt.Errorf("custodians[%d].name: %w", i, pki.NodeID(cu.Name).Validate())
		case cu.TokenSerial == "":
			return fmt.Errorf("custodians[%d].token_serial: required", i)
		case serials[cu.TokenSerial]:
			return fmt.Errorf("custodians[%d].token_serial: %s holds another custodian's share: one share per token", i, cu.TokenSerial)
		case cu.TokenLabel != "" && labels[cu.TokenLabel]:
			return fmt.Errorf("custodians[%d].token_label: %q is another custodian's token", i, cu.TokenLabel)
		}
		serials[cu.TokenSerial], labels[cu.TokenLabel] = true, true
	}
	return nil
}

func (c *Ceremony) spec(pub []byte, transcript string) WalletSpec {
	names := make([]string, len(c.Custodians))
	for i, cu := range c.Custodians {
		names[i] = cu.Name
	}
	return WalletSpec{Wallet: c.Wallet, ID: "wallet-register-" + c.Wallet, Chain: c.Chain, Network: c.Network, ChainID: uint64(max(c.ChainID, 0)),
		BTCParams: c.BTCParams, PubKey: pub, Threshold: c.Threshold, Custodians: names, Transcript: transcript}
}

// PINSource returns a custodian's PIN (from the terminal without echo, or
// a file); it is never in argv.
type PINSource func(custodian string) (string, error)

// kekLabel is the label of the key-encryption key a ceremony creates in a
// custodian's token for wallet.
func kekLabel(wallet string) string { return "custody-cold-kek/" + wallet }

// Outputs is what a keygen produced: the public wallet file, one sealed
// share per custodian (by name), and the transcript.
type Outputs struct {
	Wallet     []byte
	Shares     map[string][]byte
	Transcript *Transcript
}

// Transcript is the record custodians sign off: the SHA-256 of every input
// and output, the public key and addresses.
type Transcript struct {
	Version string `json:"version"`
	Wallet  string `json:"wallet"`
	PubKey  string `json:"pubkey"`
	Address string `json:"address"`
	// Inputs and Outputs map file names to their hex SHA-256.
	Inputs  []FileHash `json:"inputs"`
	Outputs []FileHash `json:"outputs"`
	// TestSigned are the two t+1 subsets that test-signed.
	TestSigned [][]string `json:"test_signed"`
	// Tokens are the custodians' token serials.
	Tokens []FileHash `json:"tokens"`
}

// FileHash names a file (or a token) and its hex SHA-256 (or serial).
type FileHash struct {
	Name string `json:"name"`
	Hash string `json:"sha256"`
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// KeygenOptions vary a keygen.
type KeygenOptions struct {
	// PreParams generates each party's tss-lib pre-params (default: fresh
	// ones, keygen.GeneratePreParamsWithContext; tests inject committed
	// fixtures, which preparams refuses outside tests).
	PreParams func(i int) preparams.Generator
}

// Keygen runs the ceremony: it opens every custodian's token (PIN from
// pins), creates the wallet's KEK in each (a token that already has one is
// refused: one share per token), runs the distributed keygen of the
// custodians over an in-memory transport (tss.Engine.Keygen test-signs
// with two different t+1 subsets), seals each share in its custodian's
// token and returns the outputs. config is the ceremony file's bytes (its
// hash goes into the transcript).
func Keygen(ctx context.Context, config []byte, pins PINSource, opt KeygenOptions) (*Outputs, error) {
	c, err := ParseCeremony(config)
	if err != nil {
		return nil, err
	}
	var sealers []*hsm.Sealer
	var tokens []*hsm.Token
	defer func() {
		for _, t := range tokens {
			_ = t.Close()
		}
	}()
	for _, cu := range c.Custodians {
		tok, err := openToken(c.Module, cu, pins)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, tok)
		if _, err := tok.KEK(kekLabel(c.Wallet)); err == nil {
			return nil, fmt.Errorf("cold: custodian %s: token %s already holds a key for wallet %q: one share per token", cu.Name, cu.TokenSerial, c.Wallet)
		}
		k, err := tok.CreateKEK(kekLabel(c.Wallet))
		if err != nil {
			return nil, fmt.Errorf("cold: custodian %s: %w", cu.Name, err)
		}
		sealers = append(sealers, k)
	}
	ids := make([]pki.NodeID, len(c.Custodians))
	for i, cu := range c.Custodians {
		ids[i] = pki.NodeID(cu.Name)
	}
	session := tss.NewSessionID()
	net := tss.NewMemNetwork()
	type result struct {
		share *tss.Share
		err   error
	}
	results := make([]chan result, len(ids))
	for i, id := range ids {
		results[i] = make(chan result, 1)
		gen := func(ctx context.Context) (*keygen.LocalPreParams, error) {
			return keygen.GeneratePreParamsWithContext(ctx)
		}
		if opt.PreParams != nil {
			gen = opt.PreParams(i)
		}
		go func() {
			e, err := tss.NewEngine(tss.Config{Self: id, Transport: net.Endpoint(id)})
			if err != nil {
				results[i] <- result{err: err}
				return
			}
			defer e.Close()
			pre, err := gen(ctx)
			if err != nil {
				results[i] <- result{err: err}
				return
			}
			sh, err := e.Keygen(ctx, tss.KeygenParams{Wallet: c.Wallet, Session: session, Committee: ids, Threshold: c.Threshold}, pre)
			results[i] <- result{sh, err}
		}()
	}
	shares := make([]*tss.Share, len(ids))
	var firstErr error
	for i := range ids {
		r := <-results[i]
		if r.err != nil && firstErr == nil {
			firstErr = fmt.Errorf("cold: keygen (custodian %s): %w", ids[i], r.err)
		}
		shares[i] = r.share
	}
	defer func() {
		for _, s := range shares {
			if s != nil {
				s.Wipe()
			}
		}
	}()
	if firstErr != nil {
		return nil, firstErr
	}
	pub := shares[0].PubKey
	var addr string
	switch c.Chain {
	case "eth":
		a, err := eth.AddressFromPublicKey(pub)
		if err != nil {
			return nil, err
		}
		addr = a.Hex()
	case "btc":
		params, _ := btc.Network(c.BTCParams)
		a, err := btc.WalletAddress(pub, params)
		if err != nil {
			return nil, err
		}
		addr = a.EncodeAddress()
	}
	out := &Outputs{Shares: map[string][]byte{}}
	for i, cu := range c.Custodians {
		b, err := sealShare(sealers[i], c.Wallet, cu, shares[i])
		if err != nil {
			return nil, err
		}
		out.Shares[cu.Name] = b
	}
	tr := &Transcript{Version: "custody/cold-ceremony/v1", Wallet: c.Wallet, PubKey: hex.EncodeToString(pub), Address: addr,
		Inputs: []FileHash{{Name: "ceremony.yaml", Hash: sum(config)}}}
	for _, sub := range testSubsets(c.Custodians, c.Threshold) {
		tr.TestSigned = append(tr.TestSigned, sub)
	}
	for _, cu := range c.Custodians {
		tr.Tokens = append(tr.Tokens, FileHash{Name: cu.Name, Hash: cu.TokenSerial})
	}
	pubFile := PublicWallet{Version: "custody/cold-wallet/v1", Spec: c.spec(pub, ""), Address: addr}
	out.Wallet = encodeJSON(pubFile)
	tr.Outputs = append(tr.Outputs, FileHash{Name: "wallet.json", Hash: sum(out.Wallet)})
	for _, cu := range c.Custodians {
		tr.Outputs = append(tr.Outputs, FileHash{Name: ShareFileName(cu.Name), Hash: sum(out.Shares[cu.Name])})
	}
	out.Transcript = tr
	return out, nil
}

// testSubsets names the two t+1 subsets tss.Engine.Keygen test-signs
// with: the first t+1 and the last t+1 custodians in sorted order.
func testSubsets(cs []Custodian, t int) [][]string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	slices.Sort(names)
	return [][]string{slices.Clone(names[:t+1]), slices.Clone(names[len(names)-t-1:])}
}

// PublicWallet is the ceremony's public output (wallet.json): the wallet's
// registration spec (without change ID and transcript hash, which the
// registration adds) and its address.
type PublicWallet struct {
	Version string     `json:"version"`
	Spec    WalletSpec `json:"spec"`
	Address string     `json:"address"`
}

// ShareFileName is the sealed share file of a custodian.
func ShareFileName(custodian string) string { return "share-" + custodian + ".sealed" }

// Write writes the outputs into dir (created 0700 if missing) with O_EXCL:
// an existing file is never overwritten, and nothing is written when any
// output exists. The transcript is written last, with the hash of the
// others.
func (o *Outputs) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cold: %w", err)
	}
	files := map[string][]byte{"wallet.json": o.Wallet, "transcript.json": encodeJSON(o.Transcript)}
	for name, b := range o.Shares {
		files[ShareFileName(name)] = b
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return newfile.Exists(filepath.Join(dir, n))
		}
	}
	for _, n := range names {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(n, ".sealed") {
			mode = 0o600
		}
		if err := newfile.Write(filepath.Join(dir, n), mode, files[n]); err != nil {
			return err
		}
	}
	return nil
}

func encodeJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic("cold: " + err.Error())
	}
	return append(b, '\n')
}

// openToken opens a custodian's token with its PIN: the serial must match
// (the label too, when the config names one).
func openToken(module string, cu Custodian, pins PINSource) (*hsm.Token, error) {
	pin, err := pins(cu.Name)
	if err != nil {
		return nil, fmt.Errorf("cold: custodian %s: PIN: %w", cu.Name, err)
	}
	tok, err := hsm.Open(hsm.Config{Module: module, TokenLabel: cu.TokenLabel, TokenSerial: cu.TokenSerial, PIN: pin, MaxSessions: 2})
	if err != nil {
		return nil, fmt.Errorf("cold: custodian %s (token %s): %w", cu.Name, cu.TokenSerial, err)
	}
	return tok, nil
}
