package daemon

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/custody-dev/custody/genesis"
	"github.com/custody-dev/custody/newfile"
	"github.com/custody-dev/custody/pki"
)

// ErrNotDistinct is wrapped when two node configs share a token serial, a
// data dir or a node ID (SECURITY 20: one share per token).
var ErrNotDistinct = errors.New("daemon: configs are not distinct")

// CheckDistinct refuses configs of which two name the same node ID, the
// same HSM token serial or the same data dir (compared as cleaned absolute
// paths). Two parties on one token would put two shares behind one PIN;
// two nodes in one data dir would share a ledger and a high-water mark.
func CheckDistinct(configs ...*Config) error {
	ids := map[pki.NodeID]int{}
	serials := map[string]int{}
	dirs := map[string]int{}
	for i, c := range configs {
		if j, ok := ids[c.NodeID]; ok {
			return fmt.Errorf("%w: configs %d and %d are both node %q", ErrNotDistinct, j+1, i+1, c.NodeID)
		}
		ids[c.NodeID] = i
		if s := c.HSM.TokenSerial; s != "" {
			if j, ok := serials[s]; ok {
				return fmt.Errorf("%w: nodes %q and %q name the same HSM token (serial %q): one share per token", ErrNotDistinct, configs[j].NodeID, c.NodeID, s)
			}
			serials[s] = i
		}
		dir, err := filepath.Abs(c.DataDir)
		if err != nil {
			return fmt.Errorf("daemon: data dir of node %q: %w", c.NodeID, err)
		}
		if j, ok := dirs[dir]; ok {
			return fmt.Errorf("%w: nodes %q and %q use the same data dir %s", ErrNotDistinct, configs[j].NodeID, c.NodeID, dir)
		}
		dirs[dir] = i
	}
	return nil
}

// StampFile is the name of the identity stamp in a node's data dir.
const StampFile = "node.id"

// ErrWrongDataDir is wrapped when a data dir was stamped for another node
// or another token.
var ErrWrongDataDir = errors.New("daemon: data dir belongs to another node")

// DataDirFormat is the layout version of a data dir this custody writes
// and reads; a dir stamped with another is refused (ErrIncompatibleDataDir).
const DataDirFormat = 1

// ErrIncompatibleDataDir is wrapped when a data dir was written by a custody
// with another data dir format.
var ErrIncompatibleDataDir = errors.New("daemon: data dir written by an incompatible version")

// Stamp is what a data dir's node.id records: which node, on which token,
// owns the directory, and the data dir format it was written in.
type Stamp struct {
	NodeID      pki.NodeID `json:"node_id"`
	TokenSerial string     `json:"token_serial"`
	Format      int        `json:"format"`
}

// ClaimDataDir makes sure dir belongs to want: it creates dir (0700) and
// its node.id stamp (0600, O_EXCL) when there is none, and refuses a dir
// stamped for another node ID or token serial with one line
// (ErrWrongDataDir). The node runs it at start with the serial of the
// token it actually opened, before it touches anything else in dir.
func ClaimDataDir(dir string, want Stamp) error {
	if err := want.NodeID.Validate(); err != nil {
		return fmt.Errorf("daemon: data dir stamp: %w", err)
	}
	if want.TokenSerial == "" {
		return errors.New("daemon: data dir stamp: the token serial is required")
	}
	if want.Format != DataDirFormat {
		return fmt.Errorf("daemon: data dir stamp: format %d, want %d", want.Format, DataDirFormat)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("daemon: data dir: %w", err)
	}
	path := filepath.Join(dir, StampFile)
	b, err := readBounded(path, 4096)
	if errors.Is(err, fs.ErrNotExist) {
		return writeStamp(dir, path, want)
	}
	if err != nil {
		return fmt.Errorf("daemon: data dir: %w", err)
	}
	var have Stamp
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&have); err != nil || have.NodeID == "" {
		return fmt.Errorf("%w: %s is not a node.id stamp; refusing to use %s", ErrWrongDataDir, path, dir)
	}
	if have.Format != DataDirFormat {
		return fmt.Errorf("%w: %s is in data dir format %d, this custody reads format %d", ErrIncompatibleDataDir, dir, have.Format, DataDirFormat)
	}
	if have != want {
		return fmt.Errorf("%w: %s is stamped for node %q on token %q, not node %q on token %q", ErrWrongDataDir, dir, have.NodeID, have.TokenSerial, want.NodeID, want.TokenSerial)
	}
	return nil
}

func writeStamp(dir, path string, s Stamp) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := newfile.Write(path, 0o600, append(b, '\n')); err != nil {
		return fmt.Errorf("daemon: data dir: %w", err)
	}
	// The stamp must survive a crash as surely as what follows it.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("daemon: data dir: %w", err)
	}
	defer d.Close()
	return d.Sync()
}

// LoadGenesis reads the genesis file the config names, checks that it
// hashes to the pinned hash (genesis.ErrHashMismatch otherwise) and that
// this node is in its node set with the key of its certificate.
func (c *Config) LoadGenesis() (*genesis.Genesis, error) {
	b, err := readBounded(c.Genesis.File, genesis.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("daemon: genesis.file: %w", err)
	}
	g, err := genesis.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Genesis.File, err)
	}
	if got := g.Hash(); got != c.Genesis.Hash {
		return nil, fmt.Errorf("%w: %s hashes to %s, the config pins %s", genesis.ErrHashMismatch, c.Genesis.File, got, c.Genesis.Hash)
	}
	certPEM, err := readBounded(c.TLS.Cert, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("daemon: tls.cert: %w", err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return nil, fmt.Errorf("daemon: tls.cert: %s holds no PEM block", c.TLS.Cert)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("daemon: tls.cert: %w", err)
	}
	fp := pki.KeyFingerprint(cert)
	for _, n := range g.Nodes {
		if n.ID == c.NodeID {
			if n.KeyFingerprint != fp {
				return nil, fmt.Errorf("daemon: node %q: the genesis pins key %s, tls.cert has key %s", c.NodeID, n.KeyFingerprint, fp)
			}
			return g, nil
		}
	}
	return nil, fmt.Errorf("daemon: node %q is not in the genesis node set", c.NodeID)
}
