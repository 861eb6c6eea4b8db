package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/custody-dev/custody/daemon"
	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// clusterDefaultRules are the initial rules `cluster init` ships when no
// --rules is given.
//
//go:embed cluster_rules.yaml
var clusterDefaultRules []byte

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Bootstrap a cluster: CA, certificates, keys, genesis and node configs",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newClusterInitCmd())
	return cmd
}

// clusterInitFlags are the inputs of `cluster init`.
type clusterInitFlags struct {
	nodes        int
	out          string
	clusterID    string
	operators    []string
	backend      string
	ethRPC       string
	ethChainID   int64
	btcRPC       string
	btcNetwork   string
	basePort     int
	adminQuorum  int
	maxValidity  time.Duration
	certValidity time.Duration
	rules        string
	hsmKeys      []string // --node-hsm-key nK=HEX
	nodeKeyLabel string

	// hsmPub are the parsed --node-hsm-key public keys (validate).
	hsmPub map[pki.NodeID]*ecdsa.PublicKey
}

// clusterOperator is one --operator NAME=ROLE[,ROLE].
type clusterOperator struct {
	name  string
	roles []quorum.Role
}

type clusterInitReport struct {
	ClusterID   string              `json:"cluster_id"`
	Dir         string              `json:"dir"`
	GenesisHash string              `json:"genesis_hash"`
	Genesis     string              `json:"genesis"`
	CACert      string              `json:"ca_cert"`
	CAKey       string              `json:"ca_key"`
	Nodes       []clusterNodeReport `json:"nodes"`
	Operators   []string            `json:"operators"`
	Backend     string              `json:"backend"`
}

type clusterNodeReport struct {
	ID             pki.NodeID `json:"id"`
	Config         string     `json:"config"`
	KeyFingerprint string     `json:"key_fingerprint"`
}

func newClusterInitCmd() *cobra.Command {
	f := &clusterInitFlags{}
	cmd := &cobra.Command{
		Use:   "init --nodes N --out DIR --operator NAME=ROLE[,ROLE]...",
		Short: "Create a new cluster's CA, certificates, keys, genesis and node configs",
		Long: `Create everything a new cluster starts from, in DIR (which must not exist or
be empty):

  ca/                   cluster CA certificate (ca.pem) and key (ca.key)
  nodes/nK/             node certificate and key, config.yaml (pins the genesis)
  backend/NAME/         backend certificate and key, device key
  operators/NAME/       operator certificate and key, device key (approvals)
  rules.yaml            the initial rules (--rules, or a conservative default)
  genesis.yaml          the genesis ceremony config, for "custody genesis create"
  genesis.json          the genesis; its hash is printed and pinned by every node

Private keys are written with mode 0600 and never printed. Device keys are
unsealed key files ("custody operator keygen" format): hand each directory
to its owner, and move the CA key offline. Nothing is written when a flag is
invalid. Each node's HSM token (hsm.token_label custody-nK) and PIN file
(hsm.pin) are created separately; see docs/node.md.`,
		Example: `  custody cluster init --nodes 3 --out ./cluster \
    --operator alice=admin,approver --operator bob=admin,approver --operator carol=approver`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			ops, err := f.validate()
			if err != nil {
				return err
			}
			rules := clusterDefaultRules
			if f.rules != "" {
				if rules, err = readInputFile(f.rules); err != nil {
					return fmt.Errorf("cluster: --rules: %w", err)
				}
			}
			plan, err := planCluster(f, ops, rules, time.Now())
			if err != nil {
				return err
			}
			if err := plan.write(f.out); err != nil {
				return err
			}
			return report(cmd, plan.report, func(w io.Writer) error { return clusterPrint(w, plan.report) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.nodes, "nodes", 0, "number of signer nodes (1..64)")
	fl.StringVar(&f.out, "out", "", "directory to create (must not exist, or be empty)")
	fl.StringVar(&f.clusterID, "cluster-id", "custody-dev", "cluster ID (bound into every approval)")
	fl.StringArrayVar(&f.operators, "operator", nil, "operator NAME=ROLE[,ROLE] (roles: admin, approver, initiator, auditor); repeat per operator")
	fl.StringVar(&f.backend, "backend", "exchange", "the backend principal's name")
	fl.StringVar(&f.ethRPC, "eth-rpc", daemon.EmbeddedETH, `Ethereum JSON-RPC URL, "embedded" (devnet) or "" (no Ethereum)`)
	fl.Int64Var(&f.ethChainID, "eth-chain-id", 0, "Ethereum chain ID (required with a URL; embedded: 1337)")
	fl.StringVar(&f.btcRPC, "btc-rpc", "", `btcd RPC address (host:port or URL); "" means no Bitcoin`)
	fl.StringVar(&f.btcNetwork, "btc-network", "regtest", "Bitcoin network: "+strings.Join(daemon.BTCNetworks, ", "))
	fl.IntVar(&f.basePort, "base-port", 7100, "node K (from 0) listens on base+10K (raft), +1 (tss), +2 (rpc), +3 (api), +4 (metrics, plain HTTP) on 127.0.0.1")
	fl.IntVar(&f.adminQuorum, "admin-quorum", 0, "admins that approve governance changes (default: 2, or 1 with a single admin)")
	fl.DurationVar(&f.maxValidity, "max-approval-validity", 48*time.Hour, "the genesis's ceiling on an approval's lifetime")
	fl.DurationVar(&f.certValidity, "cert-validity", 2*365*24*time.Hour, "validity of the CA and every certificate")
	fl.StringVar(&f.rules, "rules", "", "initial rules file (default: a conservative built-in set)")
	fl.StringArrayVar(&f.hsmKeys, "node-hsm-key", nil, "nK=HEX: node nK's key is in its HSM token (the public_key `custody hsm keygen --curve p256` printed); no key file is written and its config names --node-key-label; repeat per node")
	fl.StringVar(&f.nodeKeyLabel, "node-key-label", "custody-node", "label of the node key in the HSM token, for the nodes of --node-hsm-key")
	_ = cmd.MarkFlagRequired("nodes")
	_ = cmd.MarkFlagRequired("out")
	_ = cmd.MarkFlagRequired("operator")
	return cmd
}

// validate checks every flag before anything is generated or written.
func (f *clusterInitFlags) validate() ([]clusterOperator, error) {
	if f.nodes < 1 || f.nodes > 64 {
		return nil, fmt.Errorf("cluster: --nodes must be 1..64, got %d", f.nodes)
	}
	f.hsmPub = map[pki.NodeID]*ecdsa.PublicKey{}
	for _, spec := range f.hsmKeys {
		id, hexKey, ok := strings.Cut(spec, "=")
		n, err := strconv.Atoi(strings.TrimPrefix(id, "n"))
		if !ok || !strings.HasPrefix(id, "n") || err != nil || n < 1 || n > f.nodes || strconv.Itoa(n) != id[1:] {
			return nil, fmt.Errorf("cluster: --node-hsm-key %q: want nK=HEX with K in 1..%d", spec, f.nodes)
		}
		if _, dup := f.hsmPub[pki.NodeID(id)]; dup {
			return nil, fmt.Errorf("cluster: --node-hsm-key: %s given twice", id)
		}
		raw, err := hex.DecodeString(hexKey)
		if err != nil {
			return nil, fmt.Errorf("cluster: --node-hsm-key %s: not hex", id)
		}
		pub, err := hsm.ParsePublicKey(hsm.P256, raw)
		if err != nil {
			return nil, fmt.Errorf("cluster: --node-hsm-key %s: not a P-256 public key (custody hsm keygen --curve p256 prints it): %v", id, err)
		}
		f.hsmPub[pki.NodeID(id)] = pub
	}
	if len(f.hsmKeys) > 0 && f.nodeKeyLabel == "" {
		return nil, errors.New("cluster: --node-key-label must not be empty")
	}
	if f.out == "" {
		return nil, errors.New("cluster: --out DIR is required")
	}
	if err := clusterCheckOut(f.out); err != nil {
		return nil, err
	}
	if f.basePort < 1 || f.basePort+10*f.nodes > 65535 {
		return nil, fmt.Errorf("cluster: --base-port %d leaves no room for %d nodes (ports base..base+10N must be < 65536)", f.basePort, f.nodes)
	}
	var ops []clusterOperator
	names := map[string]bool{}
	admins := 0
	for _, spec := range f.operators {
		name, roleList, ok := strings.Cut(spec, "=")
		if !ok || roleList == "" {
			return nil, fmt.Errorf("cluster: --operator %q: want NAME=ROLE[,ROLE]", spec)
		}
		if err := clusterName("--operator", name); err != nil {
			return nil, err
		}
		if names[name] {
			return nil, fmt.Errorf("cluster: --operator %q given twice", name)
		}
		names[name] = true
		op := clusterOperator{name: name}
		for _, r := range strings.Split(roleList, ",") {
			role := quorum.Role(r)
			if !role.Valid() {
				return nil, fmt.Errorf("cluster: --operator %s: unknown role %q (admin, approver, initiator, auditor)", name, r)
			}
			if slices.Contains(op.roles, role) {
				return nil, fmt.Errorf("cluster: --operator %s: role %q given twice", name, r)
			}
			op.roles = append(op.roles, role)
		}
		if slices.Contains(op.roles, quorum.RoleAdmin) {
			admins++
		}
		ops = append(ops, op)
	}
	if admins == 0 {
		return nil, errors.New("cluster: at least one --operator needs the admin role")
	}
	if err := clusterName("--backend", f.backend); err != nil {
		return nil, err
	}
	if names[f.backend] {
		return nil, fmt.Errorf("cluster: --backend %q is also an --operator", f.backend)
	}
	if f.adminQuorum == 0 {
		f.adminQuorum = min(2, admins)
	}
	if f.adminQuorum < 1 || f.adminQuorum > admins {
		return nil, fmt.Errorf("cluster: --admin-quorum must be 1..%d (the number of admins)", admins)
	}
	if f.certValidity < time.Hour {
		return nil, errors.New("cluster: --cert-validity must be at least 1h")
	}
	return ops, nil
}

// clusterName checks an operator or backend name: an operator ID that is
// also a plain file name.
func clusterName(flag, name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 64 ||
		strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@") != "" {
		return fmt.Errorf("cluster: %s %q: a name is 1..64 letters, digits and . _ - @", flag, name)
	}
	return nil
}

// clusterCheckOut refuses an --out that exists and is not an empty
// directory.
func clusterCheckOut(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: --out: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("cluster: --out %s: %w and is not empty; refusing to write into it", dir, fs.ErrExist)
	}
	return nil
}

// clusterFile is one output file, its name relative to --out.
type clusterFile struct {
	name string
	mode os.FileMode
	data []byte
}

// clusterPlan is everything `cluster init` writes, made in memory first.
type clusterPlan struct {
	files  []clusterFile
	report clusterInitReport
}

func (p *clusterPlan) add(name string, mode os.FileMode, data []byte) {
	p.files = append(p.files, clusterFile{name: filepath.FromSlash(name), mode: mode, data: data})
}

// planCluster makes the CA, every certificate and key, the genesis and the
// node configs.
func planCluster(f *clusterInitFlags, ops []clusterOperator, rules []byte, now time.Time) (*clusterPlan, error) {
	p := &clusterPlan{}
	ca, err := pki.NewCA(f.clusterID+" cluster CA", now, f.certValidity)
	if err != nil {
		return nil, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	p.add("ca/ca.pem", 0o644, ca.PEM())
	p.add("ca/ca.key", 0o600, caKey)
	p.add("rules.yaml", 0o644, rules)

	gc := genesis.Config{
		ClusterID:           f.clusterID,
		AdminQuorum:         f.adminQuorum,
		MaxApprovalValidity: genesis.Duration(f.maxValidity),
		Rules:               "rules.yaml",
	}
	// principal issues a certificate of role and an Ed25519 device key for
	// an operator or backend into dir.
	principal := func(dir string, role pki.Role, name string) (genesis.ConfigDevice, error) {
		certPEM, keyPEM, err := ca.Issue(role, name, now, f.certValidity)
		if err != nil {
			return genesis.ConfigDevice{}, err
		}
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return genesis.ConfigDevice{}, err
		}
		device, err := quorum.NewKeyFile(priv, nil, rand.Reader)
		if err != nil {
			return genesis.ConfigDevice{}, err
		}
		p.add(dir+"/cert.pem", 0o644, certPEM)
		p.add(dir+"/cert.key", 0o600, keyPEM)
		p.add(dir+"/device.key", 0o600, device)
		return genesis.ConfigDevice{KeyFile: dir + "/device.key", Label: "cluster init"}, nil
	}
	for _, o := range ops {
		dev, err := principal("operators/"+o.name, pki.RoleOperator, o.name)
		if err != nil {
			return nil, err
		}
		gc.Operators = append(gc.Operators, genesis.ConfigOperator{ID: o.name, Name: o.name, Roles: o.roles, Devices: []genesis.ConfigDevice{dev}})
		p.report.Operators = append(p.report.Operators, o.name)
	}
	dev, err := principal("backend/"+f.backend, pki.RoleBackend, f.backend)
	if err != nil {
		return nil, err
	}
	gc.Backends = []genesis.ConfigBackend{{ID: f.backend, Name: f.backend, Devices: []genesis.ConfigDevice{dev}}}

	ids := make([]pki.NodeID, f.nodes)
	for i := range ids {
		ids[i] = pki.NodeID(fmt.Sprintf("n%d", i+1))
		dir := "nodes/" + string(ids[i])
		if pub := f.hsmPub[ids[i]]; pub != nil {
			certPEM, err := ca.IssueNodeFor(ids[i], pub, now, f.certValidity)
			if err != nil {
				return nil, err
			}
			p.add(dir+"/node.pem", 0o644, certPEM)
		} else {
			certPEM, keyPEM, err := ca.IssueNode(ids[i], now, f.certValidity)
			if err != nil {
				return nil, err
			}
			p.add(dir+"/node.pem", 0o644, certPEM)
			p.add(dir+"/node.key", 0o600, keyPEM)
		}
		gc.Nodes = append(gc.Nodes, genesis.ConfigNode{Cert: dir + "/node.pem", ID: ids[i]})
	}

	// The genesis is built exactly as `custody genesis create` builds it,
	// from the ceremony config and the files planned so far, which is
	// also written out so anyone can rebuild it.
	g, err := gc.Build(func(name string) ([]byte, error) {
		for _, pf := range p.files {
			if pf.name == filepath.FromSlash(name) {
				return pf.data, nil
			}
		}
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	gcYAML, err := yaml.Marshal(clusterGenesisYAML(gc))
	if err != nil {
		return nil, err
	}
	p.add("genesis.yaml", 0o644, append([]byte("# The genesis ceremony config cluster init used: custody genesis create --config genesis.yaml\n"), gcYAML...))
	p.add("genesis.json", 0o644, g.Encode())
	hash := g.Hash()

	for i, id := range ids {
		cfg := clusterNodeConfig(f, ids, i, hash)
		b, err := yaml.Marshal(cfg)
		if err != nil {
			return nil, err
		}
		dir := "nodes/" + string(id)
		// The config must be one the node accepts: a flag that makes it
		// invalid (--eth-rpc URL without --eth-chain-id) fails here, before
		// anything is written.
		if _, err := daemon.ParseConfig(b, filepath.Join(f.out, dir)); err != nil {
			return nil, fmt.Errorf("cluster: node %s: %w (check the chain flags)", id, err)
		}
		header := fmt.Sprintf("# Node %s of cluster %s (custody cluster init); docs/config.md has every field.\n"+
			"# Create the HSM token %q and its PIN file %s before the node starts.\n", id, f.clusterID, cfg.HSM.TokenLabel, cfg.HSM.PINFile)
		p.add(dir+"/config.yaml", 0o644, append([]byte(header), b...))
		fp := ""
		for _, n := range g.Nodes {
			if n.ID == id {
				fp = n.KeyFingerprint
			}
		}
		p.report.Nodes = append(p.report.Nodes, clusterNodeReport{ID: id, Config: filepath.Join(f.out, dir, "config.yaml"), KeyFingerprint: fp})
	}
	p.report.ClusterID = f.clusterID
	p.report.Dir = f.out
	p.report.GenesisHash = hash
	p.report.Genesis = filepath.Join(f.out, "genesis.json")
	p.report.CACert = filepath.Join(f.out, "ca", "ca.pem")
	p.report.CAKey = filepath.Join(f.out, "ca", "ca.key")
	p.report.Backend = f.backend
	return p, nil
}

// clusterNodeConfig is node i's config: loopback addresses from
// --base-port, every other node as a peer, files relative to the node's
// directory (so the output directory can be moved).
func clusterNodeConfig(f *clusterInitFlags, ids []pki.NodeID, i int, hash string) daemon.Config {
	addr := func(k, off int) string {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(f.basePort+10*k+off))
	}
	cfg := daemon.Config{
		NodeID:  ids[i],
		DataDir: "data",
		Listen:  daemon.Listen{Raft: addr(i, 0), TSS: addr(i, 1), RPC: addr(i, 2), API: addr(i, 3), Metrics: addr(i, 4)},
		TLS:     daemon.TLSFiles{CA: "../../ca/ca.pem", Cert: "node.pem", Key: "node.key"},
		HSM:     daemon.HSM{TokenLabel: "custody-" + string(ids[i]), PINFile: "hsm.pin"},
		Genesis: daemon.GenesisPin{File: "../../genesis.json", Hash: hash},
		Ledger:  daemon.Ledger{LogStore: ledger.DefaultLogStore},
		TSS:     daemon.TSS{SessionTimeout: daemon.Duration(daemon.DefaultTSSSessionTimeout)},
	}
	if f.hsmPub[ids[i]] != nil {
		cfg.TLS.Key, cfg.TLS.KeyLabel = "", f.nodeKeyLabel
	}
	for k, id := range ids {
		if k != i {
			cfg.Peers = append(cfg.Peers, daemon.Peer{ID: id, Raft: addr(k, 0), TSS: addr(k, 1), RPC: addr(k, 2)})
		}
	}
	if f.ethRPC != "" {
		eth := &daemon.ETH{RPC: f.ethRPC, ChainID: f.ethChainID}
		if f.ethRPC != daemon.EmbeddedETH {
			eth.Network = clusterETHNetwork(f.ethChainID)
		}
		cfg.Chains.ETH = eth
	}
	if f.btcRPC != "" {
		cfg.Chains.BTC = &daemon.BTC{RPC: f.btcRPC, User: "custody", PasswordFile: "btcd.pass", CertFile: "btcd-rpc.cert", Network: f.btcNetwork}
	}
	return cfg
}

// clusterETHNetwork names well-known chain IDs.
func clusterETHNetwork(id int64) string {
	switch id {
	case 1:
		return "mainnet"
	case 11155111:
		return "sepolia"
	case 17000:
		return "holesky"
	}
	return "chain-" + strconv.FormatInt(id, 10)
}

// clusterGenesisYAML is the genesis config in the keys ParseConfig reads
// (its JSON names), for yaml.Marshal.
func clusterGenesisYAML(gc genesis.Config) map[string]any {
	devices := func(ds []genesis.ConfigDevice) []map[string]any {
		var out []map[string]any
		for _, d := range ds {
			out = append(out, map[string]any{"key_file": d.KeyFile, "label": d.Label})
		}
		return out
	}
	var ops, backends, nodes []map[string]any
	for _, o := range gc.Operators {
		ops = append(ops, map[string]any{"id": o.ID, "name": o.Name, "roles": o.Roles, "devices": devices(o.Devices)})
	}
	for _, b := range gc.Backends {
		backends = append(backends, map[string]any{"id": b.ID, "name": b.Name, "devices": devices(b.Devices)})
	}
	for _, n := range gc.Nodes {
		nodes = append(nodes, map[string]any{"cert": n.Cert, "id": string(n.ID)})
	}
	return map[string]any{
		"cluster_id": gc.ClusterID, "admin_quorum": gc.AdminQuorum,
		"max_approval_validity": gc.MaxApprovalValidity.String(), "rules": gc.Rules,
		"operators": ops, "backends": backends, "nodes": nodes,
	}
}

// write creates dir and every planned file with the CLI's one O_EXCL
// writer. On failure it removes what it created, so dir is left as it was.
func (p *clusterPlan) write(dir string) (err error) {
	var made []string
	defer func() {
		if err != nil {
			for _, m := range slices.Backward(made) {
				os.Remove(m)
			}
		}
	}()
	mkdir := func(d string) error {
		if err := mkdirAll(d, &made); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		return nil
	}
	if err := clusterCheckOut(dir); err != nil {
		return err
	}
	for _, f := range p.files {
		path := filepath.Join(dir, f.name)
		if err := mkdir(filepath.Dir(path)); err != nil {
			return err
		}
		if err := writeNew(path, f.mode, f.data); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		made = append(made, path)
	}
	return nil
}

// mkdirAll creates d and its missing parents (0755 for the layout; key
// files are 0600 themselves), recording each one it made.
func mkdirAll(d string, made *[]string) error {
	if _, err := os.Stat(d); err == nil {
		return nil
	}
	if parent := filepath.Dir(d); parent != d {
		if err := mkdirAll(parent, made); err != nil {
			return err
		}
	}
	if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	*made = append(*made, d)
	return nil
}

func clusterPrint(w io.Writer, r clusterInitReport) error {
	fmt.Fprintf(w, "cluster %s: %d nodes, %d operators, backend %s, in %s\n", r.ClusterID, len(r.Nodes), len(r.Operators), r.Backend, r.Dir)
	fmt.Fprintf(w, "  CA certificate  %s\n  CA key          %s (move it offline)\n", r.CACert, r.CAKey)
	for _, n := range r.Nodes {
		fmt.Fprintf(w, "  node %-10s %s\n", n.ID, n.Config)
	}
	fmt.Fprintf(w, "  operators       %s\n", strings.Join(r.Operators, ", "))
	fmt.Fprintf(w, "  genesis         %s\n", r.Genesis)
	_, err := fmt.Fprintf(w, "genesis hash: %s\n", r.GenesisHash)
	return err
}
