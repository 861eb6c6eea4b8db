package genesis

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
	"github.com/custody-dev/custody/strictdoc"
)

// Version is the format tag of a genesis document (its "version" field) and,
// followed by a zero byte, the domain tag of its hash.
const Version = "custody/genesis/v1"

// MaxSize bounds a genesis document (the rules file alone may be 1 MiB).
const MaxSize = 8 << 20

// ErrInvalid is wrapped by every error of Parse, ParseConfig, Build and
// Validate: the document (or config) is not a valid genesis.
var ErrInvalid = errors.New("genesis: invalid")

// ErrHashMismatch is wrapped when a genesis (or a ledger genesis command)
// does not hash to the value it is checked against.
var ErrHashMismatch = errors.New("genesis: hash mismatch")

// Error is a parse or validation error at one place of a document. It wraps
// ErrInvalid and the underlying cause.
type Error struct {
	// Path names the place: a JSON path into the genesis document
	// ("operators[2].roles"), or a YAML path into a config
	// ("operators[0].devices[1].key_file"); empty for the whole document.
	Path string
	// Line is the line in a YAML config (0 when unknown, and for JSON).
	Line int
	// Err says what is wrong.
	Err error
}

// Error reads "genesis: PATH (line N): what", as strictdoc spells a place.
func (e *Error) Error() string {
	return "genesis: " + (&strictdoc.Error{Path: e.Path, Line: e.Line, Err: e.Err}).Error()
}

// Unwrap returns ErrInvalid and the cause.
func (e *Error) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// Duration is a time.Duration written as Go duration text ("48h", "90m");
// the canonical form is time.Duration's String ("48h0m0s").
type Duration time.Duration

// String is the canonical form.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the canonical form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses Go duration text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (e.g. 48h): %q", b)
	}
	*d = Duration(v)
	return nil
}

// Genesis is the cluster's root of trust: everything a node accepts before
// any operator has signed anything. Nodes pin it by [Genesis.Hash]. Build
// one with Parse (from a file) or Config.Build (from a ceremony config);
// docs/genesis.md describes every field.
type Genesis struct {
	// Version is always [Version].
	Version   string `json:"version"`
	ClusterID string `json:"cluster_id"`
	// AdminQuorum is how many distinct admins approve a registry change,
	// an unlock or a rules change; at most the number of admins.
	AdminQuorum int `json:"admin_quorum"`
	// MaxApprovalValidity is the ceiling on any approval's lifetime
	// (quorum.MinApprovalValidity..quorum.MaxApprovalCeiling).
	MaxApprovalValidity Duration `json:"max_approval_validity"`
	// Operators are the initial operators, humans and backend principals
	// (kind backend, role initiator only), all active.
	Operators []quorum.Operator `json:"operators"`
	// Devices are the operators' public keys (Ed25519 or P-256), all
	// active; every operator has at least one.
	Devices []quorum.Device `json:"devices"`
	// Nodes is the node set: node IDs and the fingerprints of their
	// certificates' public keys.
	Nodes []pki.Node `json:"nodes"`
	// RulesHash is the policy hash of Rules ([policy.Rules.Hash]).
	RulesHash string `json:"rules_hash"`
	// Rules is the initial policy rules file, verbatim YAML.
	Rules string `json:"rules"`
}

// Parse reads and validates a genesis document. Parsing is strict: unknown
// fields, duplicate keys, nulls, wrong types and trailing data are refused,
// and every error is an *Error naming its JSON path.
func Parse(b []byte) (*Genesis, error) {
	if len(b) > MaxSize {
		return nil, &Error{Err: fmt.Errorf("larger than %d bytes", MaxSize)}
	}
	g := new(Genesis)
	if err := decodeJSON(b, g); err != nil {
		return nil, err
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return g, nil
}

// Sorted returns a deep copy with every set in canonical order: operators
// and devices by ID, each operator's roles, nodes by ID.
func (g *Genesis) Sorted() *Genesis {
	c := *g
	c.Operators = make([]quorum.Operator, len(g.Operators))
	for i, o := range g.Operators {
		o.Roles = slices.Clone(o.Roles)
		slices.Sort(o.Roles)
		c.Operators[i] = o
	}
	slices.SortStableFunc(c.Operators, func(a, b quorum.Operator) int { return cmp.Compare(a.ID, b.ID) })
	c.Devices = make([]quorum.Device, len(g.Devices))
	for i, d := range g.Devices {
		d.PublicKey = slices.Clone(d.PublicKey)
		d.Credential = slices.Clone(d.Credential)
		c.Devices[i] = d
	}
	slices.SortStableFunc(c.Devices, func(a, b quorum.Device) int { return cmp.Compare(a.ID, b.ID) })
	c.Nodes = slices.Clone(g.Nodes)
	slices.SortStableFunc(c.Nodes, func(a, b pki.Node) int { return cmp.Compare(a.ID, b.ID) })
	if c.Operators == nil {
		c.Operators = []quorum.Operator{}
	}
	if c.Devices == nil {
		c.Devices = []quorum.Device{}
	}
	if c.Nodes == nil {
		c.Nodes = []pki.Node{}
	}
	return &c
}

// Canonical is the encoding the hash is computed over: JSON without
// insignificant whitespace, fields in the order of the Genesis struct, sets
// sorted (operators and devices by ID, each operator's roles, nodes by ID),
// byte strings (public keys) in padded standard base64, the duration in
// its canonical form, strings escaped as encoding/json escapes them with
// HTML escaping off. Two documents that differ only in order, whitespace or
// duration spelling have the same canonical encoding.
func (g *Genesis) Canonical() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(g.Sorted()); err != nil {
		panic("genesis: not JSON-encodable: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Hash is the genesis hash, the value every node pins: the lowercase hex
// SHA-256 of Version ("custody/genesis/v1"), one zero byte, and
// [Genesis.Canonical].
func (g *Genesis) Hash() string {
	h := sha256.New()
	h.Write([]byte(Version))
	h.Write([]byte{0})
	h.Write(g.Canonical())
	return hex.EncodeToString(h.Sum(nil))
}

// Encode is the file form `custody genesis create` writes: the canonical
// encoding indented by two spaces, with a final newline. Parse reads it
// back to the same canonical encoding.
func (g *Genesis) Encode() []byte {
	var buf bytes.Buffer
	if err := json.Indent(&buf, g.Canonical(), "", "  "); err != nil {
		panic("genesis: canonical encoding is not JSON: " + err.Error())
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}
