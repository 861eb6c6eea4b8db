package ledgertest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// Operator is a test operator with one Ed25519 device whose key is derived
// from the operator's ID, so failures reproduce.
type Operator struct {
	ID    string
	Roles []quorum.Role
	Kind  quorum.OperatorKind
	Key   ed25519.PrivateKey
}

// NewOperator returns the operator id with a deterministic device key.
func NewOperator(id string, kind quorum.OperatorKind, roles ...quorum.Role) Operator {
	seed := sha256.Sum256([]byte("ledgertest-key/" + id))
	return Operator{ID: id, Roles: roles, Kind: kind, Key: ed25519.NewKeyFromSeed(seed[:])}
}

// Device is the operator's enrolled device.
func (o Operator) Device() quorum.Device {
	pub := o.Key.Public().(ed25519.PublicKey)
	return quorum.Device{ID: quorum.DeviceID(quorum.DeviceEd25519, pub), OperatorID: o.ID, Kind: quorum.DeviceEd25519, PublicKey: pub, Status: quorum.DeviceActive}
}

// Sign signs a statement about subject (a request or change ID) of cluster.
// The expiry is truncated to the second, as the digest carries it.
func (o Operator) Sign(t testing.TB, cluster, subject string, payload quorum.Hash, dec quorum.Decision, expiry time.Time) quorum.Approval {
	t.Helper()
	a, err := quorum.Sign(quorum.Statement{ClusterID: cluster, RequestID: subject, PayloadHash: payload, Decision: dec, Expiry: expiry.Truncate(time.Second)}, o.Device().ID, o.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// ApprovalValidity is the approval-validity ceiling of Genesis.
const ApprovalValidity = 48 * time.Hour

// GenesisNodes is the node set of Genesis: the IDs New gives a cluster of
// three.
var GenesisNodes = []pki.NodeID{"n1", "n2", "n3"}

// Nodes returns the node set of ids with the fingerprints of their
// NodeKey: the keys every Cluster's node certificates carry, whatever CA
// issued them.
func Nodes(ids ...pki.NodeID) []ledger.Node {
	out := make([]ledger.Node, len(ids))
	for i, id := range ids {
		der, err := x509.MarshalPKIXPublicKey(NodeKey(id).Public())
		if err != nil {
			panic("ledgertest: node key: " + err.Error())
		}
		sum := sha256.Sum256(der)
		out[i] = ledger.Node{ID: id, KeyFingerprint: hex.EncodeToString(sum[:])}
	}
	return out
}

// NodeKey is node id's P-256 key, derived from the ID so that a genesis
// written before a cluster starts pins the keys its certificates carry.
// Test keys only: anyone can derive them.
func NodeKey(id pki.NodeID) *ecdsa.PrivateKey {
	for i := 0; ; i++ {
		seed := sha256.Sum256([]byte(fmt.Sprintf("ledgertest-node-key/%d/%s", i, id)))
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed[:]); err == nil {
			return k
		}
	}
}

// Genesis is the genesis command of cluster with the given admin quorum,
// rules and operators (all active, one device each), approvals valid for
// at most ApprovalValidity, the node set Nodes(GenesisNodes...), and the
// hash of the genesis document it is the command of (package genesis). It
// panics when that document does not validate: build an invalid genesis
// command by editing a valid one.
func Genesis(cluster string, adminQuorum int, rules string, ops ...Operator) ledger.Genesis {
	return GenesisFor(GenesisNodes, cluster, adminQuorum, rules, ops...)
}

// GenesisFor is Genesis with the node set Nodes(nodes...).
func GenesisFor(nodes []pki.NodeID, cluster string, adminQuorum int, rules string, ops ...Operator) ledger.Genesis {
	g := ledger.Genesis{ClusterID: cluster, AdminQuorum: adminQuorum, Rules: []byte(rules), MaxApprovalValidity: ApprovalValidity,
		Nodes: Nodes(nodes...)}
	for _, o := range ops {
		g.Operators = append(g.Operators, quorum.Operator{ID: o.ID, Name: o.ID, Kind: o.Kind, Roles: o.Roles, Status: quorum.StatusActive})
		g.Devices = append(g.Devices, o.Device())
	}
	doc, err := ledger.GenesisDocument(g)
	if err != nil {
		panic("ledgertest: Genesis: " + err.Error())
	}
	g.Hash = doc.Hash()
	return g
}
