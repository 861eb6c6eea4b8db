package ledger

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"hash"

	"github.com/custody-dev/custody/pki"
)

// MaxTokenSerial bounds a token serial (PKCS#11: 16 characters; some HSMs
// report longer ones).
const MaxTokenSerial = 64

// NodeToken binds a node of the node set to the serial of the HSM token that
// holds its shares and KEK, signed with the node's own key (the key the node
// set pins): one share per token (SECURITY 20). A node declares it at every
// start; the FSM refuses a serial another node declared (ErrConflict) and
// the node then refuses to run, so two nodes configured on one token cannot
// both sign. A node may re-declare (a token replaced): its binding moves.
// A compromised node can declare any serial for itself only, and cannot
// take another node's.
type NodeToken struct {
	Node        pki.NodeID    `json:"node"`
	TokenSerial string        `json:"token_serial"`
	Sig         CheckpointSig `json:"sig"`
}

// Type implements Command.
func (NodeToken) Type() string { return CmdNodeToken }

// NodeTokenDigest is what a node signs to declare its token: SHA-256 of
// "custody/node-token/v1" 0x00, cluster ID, 0x00, genesis hash, 0x00, node
// ID, 0x00, serial.
func NodeTokenDigest(cluster, genesis string, node pki.NodeID, serial string) []byte {
	h := nodeHash("custody/node-token/v1", cluster, genesis, string(node))
	h.Write([]byte(serial))
	return h.Sum(nil)
}

// nodeHash is a SHA-256 over parts, each followed by 0x00: the prefix of
// what a node signs with its node key about itself.
func nodeHash(parts ...string) hash.Hash {
	h := sha256.New()
	for _, part := range parts {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return h
}

// SignNodeToken is node's declaration that serial is its token.
func SignNodeToken(cluster, genesis string, node pki.NodeID, serial string, key crypto.Signer) (NodeToken, error) {
	sig, err := signNodeDigest(NodeTokenDigest(cluster, genesis, node, serial), node, key)
	if err != nil {
		return NodeToken{}, fmt.Errorf("ledger: declare token of %s: %w", node, err)
	}
	return NodeToken{Node: node, TokenSerial: serial, Sig: sig}, nil
}

func (p NodeToken) apply(t *txn) (applyOut, error) {
	reg := t.registry()
	if reg.ClusterID == "" {
		return applyOut{}, fmt.Errorf("%w: no genesis yet", ErrWrongStatus)
	}
	if p.TokenSerial == "" || len(p.TokenSerial) > MaxTokenSerial {
		return applyOut{}, invalid("token serial must be 1..%d characters", MaxTokenSerial)
	}
	for _, r := range p.TokenSerial {
		if r < 0x20 || r > 0x7e {
			return applyOut{}, invalid("token serial must be printable ASCII")
		}
	}
	if p.Sig.Node != p.Node {
		return applyOut{}, fmt.Errorf("%w: token of %s signed by %s", ErrApproval, p.Node, p.Sig.Node)
	}
	if err := p.Sig.VerifyDigest(NodeTokenDigest(reg.ClusterID, t.st.GenesisHash, p.Node, p.TokenSerial), t.nodeSet()); err != nil {
		return applyOut{}, fmt.Errorf("%w: token of %s: %w", ErrApproval, p.Node, err)
	}
	bound := t.tokenBindings()
	for id, serial := range bound {
		if serial == p.TokenSerial && id != p.Node {
			return applyOut{}, fmt.Errorf("%w: HSM token %q is node %s's: one share per token (SECURITY 20)", ErrConflict, p.TokenSerial, id)
		}
	}
	if bound[p.Node] == p.TokenSerial {
		return applyOut{}, nil
	}
	t.bindToken(p.Node, p.TokenSerial)
	return changed(string(p.Node))
}
