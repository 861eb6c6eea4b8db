package genesis

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// MaxConfigSize bounds a genesis config file.
const MaxConfigSize = 1 << 20

// Config is the genesis ceremony's input (`custody genesis create
// --config`): YAML naming the cluster, its people and their device keys,
// its backend principals, its nodes' certificates and its rules file.
// Keys are the JSON names of the fields below; docs/genesis.md has the
// table. File names are read through the ReadFile given to Build (the CLI
// resolves relative names against the config file's directory).
type Config struct {
	ClusterID           string           `json:"cluster_id"`
	AdminQuorum         int              `json:"admin_quorum"`
	MaxApprovalValidity Duration         `json:"max_approval_validity"`
	Rules               string           `json:"rules"` // rules file
	Operators           []ConfigOperator `json:"operators"`
	Backends            []ConfigBackend  `json:"backends"`
	Nodes               []ConfigNode     `json:"nodes"`
}

// ConfigOperator is a human operator (kind human, active).
type ConfigOperator struct {
	ID      string         `json:"id"`
	Name    string         `json:"name"`
	Roles   []quorum.Role  `json:"roles"`
	Devices []ConfigDevice `json:"devices"`
}

// ConfigBackend is a backend principal: an operator of kind backend whose
// only role is initiator.
type ConfigBackend struct {
	ID      string         `json:"id"`
	Name    string         `json:"name"`
	Devices []ConfigDevice `json:"devices"`
}

// ConfigDevice is one device key: either KeyFile (a key file written by
// `custody operator keygen --out`; only its public part is read, a sealed
// file needs no passphrase) or Kind and PublicKey (hex, as `custody
// operator show` prints it; the form for keys on a PKCS#11 token).
// DeviceID, when given, must be the key's device ID: a check that the key
// is the one the operator reported.
type ConfigDevice struct {
	KeyFile   string            `json:"key_file"`
	Kind      quorum.DeviceKind `json:"kind"`
	PublicKey string            `json:"public_key"`
	DeviceID  string            `json:"device_id"`
	Label     string            `json:"label"`
}

// ConfigNode is one node: its certificate (a PEM file holding exactly one
// CERTIFICATE block, a node certificate of the cluster CA). ID, when given,
// must be the certificate's node ID.
type ConfigNode struct {
	Cert string     `json:"cert"`
	ID   pki.NodeID `json:"id"`
}

// ReadFile returns the contents of a file named in a config.
type ReadFile func(name string) ([]byte, error)

// ParseConfig reads a genesis config strictly: unknown keys, duplicate
// keys, aliases, nulls, wrong types and several documents are refused, and
// every error is an *Error naming its YAML path and line.
func ParseConfig(b []byte) (*Config, error) {
	if len(b) > MaxConfigSize {
		return nil, &Error{Err: fmt.Errorf("config larger than %d bytes", MaxConfigSize)}
	}
	c := new(Config)
	if err := decodeYAML(b, c); err != nil {
		return nil, err
	}
	return c, nil
}

// Build reads the files the config names and returns the validated
// genesis. Errors are *Error values naming the config's YAML path (a
// problem the genesis validation finds is reported at the config entry it
// came from).
func (c *Config) Build(read ReadFile) (*Genesis, error) {
	g := &Genesis{
		Version:             Version,
		ClusterID:           c.ClusterID,
		AdminQuorum:         c.AdminQuorum,
		MaxApprovalValidity: c.MaxApprovalValidity,
	}
	// from maps a genesis path (operators[3]) to the config path it was
	// built from (backends[1]).
	from := map[string]string{}
	fail := func(path string, err error) error { return &Error{Path: path, Err: err} }

	if c.Rules == "" {
		return nil, fail("rules", errors.New("required: the rules file"))
	}
	rules, err := read(c.Rules)
	if err != nil {
		return nil, fail("rules", err)
	}
	g.Rules = string(rules)
	if r, err := policy.ParseRules(rules); err == nil {
		g.RulesHash = r.Hash()
	} // else Validate reports it at "rules"

	addDevices := func(path, operator string, devs []ConfigDevice) error {
		if len(devs) == 0 {
			return fail(path+".devices", errors.New("at least one device is required"))
		}
		for j, cd := range devs {
			p := index(path+".devices", j)
			d, err := cd.device(read)
			if err != nil {
				return &Error{Path: p + err.Path, Err: err.Err}
			}
			d.OperatorID, d.Label, d.Status = operator, cd.Label, quorum.DeviceActive
			from[index("devices", len(g.Devices))] = p
			g.Devices = append(g.Devices, d)
		}
		return nil
	}
	for i, o := range c.Operators {
		p := index("operators", i)
		from[index("operators", len(g.Operators))] = p
		g.Operators = append(g.Operators, quorum.Operator{ID: o.ID, Name: o.Name, Kind: quorum.KindHuman, Roles: o.Roles, Status: quorum.StatusActive})
		if err := addDevices(p, o.ID, o.Devices); err != nil {
			return nil, err
		}
	}
	for i, b := range c.Backends {
		p := index("backends", i)
		from[index("operators", len(g.Operators))] = p
		g.Operators = append(g.Operators, quorum.Operator{ID: b.ID, Name: b.Name, Kind: quorum.KindBackend, Roles: []quorum.Role{quorum.RoleInitiator}, Status: quorum.StatusActive})
		if err := addDevices(p, b.ID, b.Devices); err != nil {
			return nil, err
		}
	}
	for i, cn := range c.Nodes {
		p := index("nodes", i)
		n, err := cn.node(read)
		if err != nil {
			return nil, &Error{Path: p + err.Path, Err: err.Err}
		}
		g.Nodes = append(g.Nodes, n)
	}

	if err := g.Validate(); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, &Error{Path: translate(e.Path, from), Err: e.Err}
		}
		return nil, err
	}
	return g, nil
}

// translate rewrites the mapped prefix of a genesis path (the prefixes are
// disjoint: "operators[1]" does not prefix "operators[10]").
func translate(path string, from map[string]string) string {
	for p, to := range from {
		if rest, ok := strings.CutPrefix(path, p); ok && (rest == "" || rest[0] == '.') {
			return to + rest
		}
	}
	return path
}

// device reads one device key. The error's Path is relative (".key_file").
func (cd ConfigDevice) device(read ReadFile) (quorum.Device, *Error) {
	fail := func(field string, err error) *Error { return &Error{Path: "." + field, Err: err} }
	var d quorum.Device
	switch {
	case cd.KeyFile != "" && (cd.PublicKey != "" || cd.Kind != ""):
		return d, fail("key_file", errors.New("give either key_file, or kind and public_key"))
	case cd.KeyFile != "":
		b, err := read(cd.KeyFile)
		if err != nil {
			return d, fail("key_file", err)
		}
		kf, err := quorum.ParseKeyFile(b)
		if err != nil {
			return d, fail("key_file", fmt.Errorf("%s: %w", cd.KeyFile, err))
		}
		d.Kind, d.PublicKey = kf.Kind, kf.PublicKey
	case cd.PublicKey != "":
		if cd.Kind == "" {
			return d, fail("kind", fmt.Errorf("required with public_key (%s or %s)", quorum.DeviceEd25519, quorum.DeviceP256))
		}
		pub, err := hex.DecodeString(strings.TrimPrefix(cd.PublicKey, "0x"))
		if err != nil {
			return d, fail("public_key", errors.New("not hex"))
		}
		if err := quorum.ValidatePublicKey(cd.Kind, pub); err != nil {
			return d, fail("public_key", err)
		}
		d.Kind, d.PublicKey = cd.Kind, pub
	default:
		return d, &Error{Err: errors.New("needs key_file, or kind and public_key")}
	}
	d.ID = quorum.DeviceID(d.Kind, d.PublicKey)
	if cd.DeviceID != "" && cd.DeviceID != d.ID {
		return d, fail("device_id", fmt.Errorf("the key's device ID is %s, not %s", d.ID, cd.DeviceID))
	}
	return d, nil
}

// node reads one node certificate. The error's Path is relative (".cert").
func (cn ConfigNode) node(read ReadFile) (pki.Node, *Error) {
	fail := func(field string, err error) *Error { return &Error{Path: "." + field, Err: err} }
	if cn.Cert == "" {
		return pki.Node{}, fail("cert", errors.New("required: the node's certificate (PEM)"))
	}
	b, err := read(cn.Cert)
	if err != nil {
		return pki.Node{}, fail("cert", err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		return pki.Node{}, fail("cert", fmt.Errorf("%s: want exactly one PEM CERTIFICATE block", cn.Cert))
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return pki.Node{}, fail("cert", fmt.Errorf("%s: %w", cn.Cert, err))
	}
	id, err := pki.NodeCertificate(cert)
	if err != nil {
		return pki.Node{}, fail("cert", fmt.Errorf("%s: %w", cn.Cert, err))
	}
	if cn.ID != "" && cn.ID != id {
		return pki.Node{}, fail("id", fmt.Errorf("the certificate is node %q", id))
	}
	return pki.Node{ID: id, KeyFingerprint: pki.KeyFingerprint(cert)}, nil
}
