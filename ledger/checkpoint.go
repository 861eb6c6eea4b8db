package ledger

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/custody-dev/custody/pki"
)

// Checkpoints: why a snapshot is never more trusted than a log entry.
//
// hashicorp/raft installs a snapshot from any peer whose term is at least
// the follower's, and a snapshot replaces the whole state. So a snapshot
// carries no state a node has to take on the sender's word: it is the state
// at a checkpoint that a checkpoint quorum of the node set signed (each
// node signs the hash of the state it computed itself, with its node key,
// which can live in its HSM), installed only under the checkpoint's own
// raft index and term, so every later entry comes from the log. One
// compromised node cannot produce a quorum's signatures. docs/ledger.md
// (Snapshots) and docs/trust.md have the whole design.
//
// Checkpoint indices are deterministic: the state after the first entry
// whose state index crosses a multiple of the interval. Every node that
// applied the same log has the same checkpoints and the same hash at each.

// DefaultCheckpointInterval is how many raft indices lie between two
// checkpoints unless the genesis says otherwise (Genesis.CheckpointInterval).
const DefaultCheckpointInterval = 1024

// checkpointDomain separates checkpoint signatures from every other
// signature made with a node key.
const checkpointDomain = "custody/checkpoint/v1\n"

// ErrCheckpoint is wrapped by every refused checkpoint signature or
// snapshot: a signature that does not verify, a signer outside the node
// set, a hash that is not this node's, a snapshot whose checkpoint lacks a
// quorum or is stored under another index or term.
var ErrCheckpoint = errors.New("ledger: checkpoint refused")

// errCheckpointDone is returned for a signature on a checkpoint that is
// already certified (or superseded): nothing to do, nothing wrong.
var errCheckpointDone = fmt.Errorf("%w: checkpoint already certified", ErrCheckpoint)

// CheckpointHead is what a node signs at a checkpoint: which cluster and
// genesis, the state index, the SHA-256 of the canonical state
// ([State.Hash], hex) and the head of the audit chain (the last event's Seq
// and Hash; 0 and [GenesisHash] when it is empty). The audit head lets
// `custody audit verify` detect a truncated chain with the signed heads
// alone, without the state.
type CheckpointHead struct {
	ClusterID   string `json:"cluster_id"`
	GenesisHash string `json:"genesis_hash"`
	Index       uint64 `json:"index"`
	// Term is the raft term of the entry at Index: a snapshot of this
	// checkpoint is stored and installed as (Index, Term), so raft resumes
	// right after it (0 in claim attestations).
	Term      uint64 `json:"term,omitempty"`
	StateHash string `json:"state_hash"`
	AuditSeq  uint64 `json:"audit_seq"`
	AuditHead string `json:"audit_head"`
}

// Digest is the SHA-256 a node signs: the domain, then the head's JSON.
func (h CheckpointHead) Digest() []byte {
	b, err := json.Marshal(h)
	if err != nil {
		panic("ledger: checkpoint head not serialisable: " + err.Error())
	}
	d := sha256.New()
	d.Write([]byte(checkpointDomain))
	d.Write(b)
	return d.Sum(nil)
}

// CheckpointSig is one node's signature over a CheckpointHead (or another
// node-signed head): the node, its public key (DER SubjectPublicKeyInfo,
// whose SHA-256 must be the key fingerprint the node set pins) and the
// signature (ASN.1 ECDSA, or Ed25519 over the digest): pki.NodeSig.
type CheckpointSig = pki.NodeSig

// Checkpoint is a certified checkpoint: the head and the signatures of a
// checkpoint quorum of the node set over it (sorted by node).
type Checkpoint struct {
	CheckpointHead
	Sigs []CheckpointSig `json:"sigs"`
}

// SignCheckpoint signs h as node with key (the node's certificate key, or
// the same key in its HSM).
func SignCheckpoint(h CheckpointHead, node pki.NodeID, key crypto.Signer) (CheckpointSig, error) {
	sig, err := signNodeDigest(h.Digest(), node, key)
	if err != nil {
		return CheckpointSig{}, fmt.Errorf("ledger: sign checkpoint %d: %w", h.Index, err)
	}
	return sig, nil
}

// signNodeDigest signs a domain-separated SHA-256 digest with a node key
// (pki.SignNodeDigest). Every signature made with a node key (checkpoints,
// claim attestations, wallet key attestations, cold export attestations)
// goes through here, each over its own domain.
func signNodeDigest(digest []byte, node pki.NodeID, key crypto.Signer) (CheckpointSig, error) {
	return pki.SignNodeDigest(digest, node, key)
}

// verifyCheckpointSig checks s over h against the node set: the signer is
// in it, its key is the one pinned for it, and the signature verifies.
func verifyCheckpointSig(s CheckpointSig, h CheckpointHead, nodes map[pki.NodeID]*Node) error {
	if err := s.VerifyDigest(h.Digest(), nodes); err != nil {
		return fmt.Errorf("%w: checkpoint %d: %w", ErrCheckpoint, h.Index, err)
	}
	return nil
}

// CheckpointQuorum is how many of a node set of n must sign a checkpoint
// or attest a claim: any two quorums share at least two nodes, so with one
// compromised node they still share an honest one, and two conflicting
// histories can never both be certified (a plain majority of 3 is 2, which
// one compromised node and one follower it fed a forged log would reach).
// 3 of 3, 3 of 4, 4 of 5, 5 of 7. The price: a three-node cluster needs
// all three nodes up to certify; four nodes tolerate one down and one
// compromised.
func CheckpointQuorum(n int) int { return pki.NodeQuorum(n) }

// VerifyCheckpoint checks that a checkpoint quorum of nodes (distinct
// members, each with its pinned key) signed c's head. nodes is the verifier's own node
// set: its current state's, or its pinned genesis's; never the set inside
// the state the checkpoint certifies.
func VerifyCheckpoint(c Checkpoint, nodes map[pki.NodeID]*Node) error {
	if len(nodes) == 0 {
		return fmt.Errorf("%w: no node set to verify checkpoint %d against (no pinned genesis)", ErrCheckpoint, c.Index)
	}
	if err := pki.VerifyQuorum(fmt.Sprintf("checkpoint %d", c.Index), c.Digest(), c.Sigs, nodes); err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	return nil
}

// auditHead is the head of s's audit chain.
func (s *State) auditHead() (uint64, string) {
	if n := len(s.Audit); n > 0 {
		return s.Audit[n-1].Seq, s.Audit[n-1].Hash
	}
	return 0, GenesisHash
}

// LastCheckpoint returns the latest certified checkpoint (nil before the
// first).
func (s *State) LastCheckpoint() *Checkpoint {
	if n := len(s.Checkpoints); n > 0 {
		return &s.Checkpoints[n-1]
	}
	return nil
}

// CheckpointSign records one node's signature over the checkpoint at Index.
// Nodes submit it (followers forward it to the leader) after they reached
// the checkpoint and hashed their own state. It is accepted only when the
// signer is in the node set with its pinned key, the signature verifies,
// and the head is exactly this node's own at that index; the signature of
// the quorum-th node certifies the checkpoint (State.Checkpoints).
type CheckpointSign struct {
	// Request, when set, makes this an attestation of that request's
	// claim at Index (StateHash empty, the audit head the claim's).
	Request   string        `json:"request,omitempty"`
	Index     uint64        `json:"index"`
	Term      uint64        `json:"term,omitempty"`
	StateHash string        `json:"state_hash"`
	AuditSeq  uint64        `json:"audit_seq"`
	AuditHead string        `json:"audit_head"`
	Sig       CheckpointSig `json:"sig"`
}

// Type implements Command.
func (CheckpointSign) Type() string { return CmdCheckpointSign }

func (p CheckpointSign) head(t *txn) CheckpointHead {
	return CheckpointHead{ClusterID: t.registry().ClusterID, GenesisHash: t.st.GenesisHash,
		Index: p.Index, Term: p.Term, StateHash: p.StateHash, AuditSeq: p.AuditSeq, AuditHead: p.AuditHead}
}

func (p CheckpointSign) apply(t *txn) (applyOut, error) {
	if err := t.needGenesis(); err != nil {
		return applyOut{}, err
	}
	h := p.head(t)
	nodes := t.nodeSet()
	if err := verifyCheckpointSig(p.Sig, h, nodes); err != nil {
		return applyOut{}, err
	}
	if p.Request != "" {
		return p.attest(t, h, nodes)
	}
	if last := t.st.LastCheckpoint(); last != nil && p.Index <= last.Index {
		return applyOut{}, errCheckpointDone
	}
	pend := t.cps.pending
	if pend == nil || pend.index != p.Index {
		return applyOut{}, fmt.Errorf("%w: no checkpoint at index %d on this node", ErrCheckpoint, p.Index)
	}
	own, err := pend.head(h.ClusterID, h.GenesisHash)
	if err != nil {
		return applyOut{}, err
	}
	if own != h {
		return applyOut{}, fmt.Errorf("%w: %q signed state %s (audit %d %s) at index %d, this node has %s (audit %d %s): one of the two diverged",
			ErrCheckpoint, p.Sig.Node, short(h.StateHash), h.AuditSeq, short(h.AuditHead), p.Index, short(own.StateHash), own.AuditSeq, short(own.AuditHead))
	}
	if slices.ContainsFunc(pend.sigs, func(s CheckpointSig) bool { return s.Node == p.Sig.Node }) {
		return applyOut{}, nil // a repeat: nothing new
	}
	out := applyOut{sig: &cpSig{index: p.Index, sig: p.Sig}}
	valid := 0
	for _, s := range pend.sigs {
		if nodes[s.Node] != nil {
			valid++
		}
	}
	if valid+1 < CheckpointQuorum(len(nodes)) {
		return out, nil // recorded beside the state, not in it (see checkpoints)
	}
	sigs := append(slices.Clone(pend.sigs), p.Sig)
	sigs = slices.DeleteFunc(sigs, func(s CheckpointSig) bool { return nodes[s.Node] == nil })
	slices.SortFunc(sigs, func(a, b CheckpointSig) int { return cmpNode(a.Node, b.Node) })
	t.certify(Checkpoint{CheckpointHead: own, Sigs: sigs})
	out.changed, out.subject = true, fmt.Sprintf("checkpoint %d", p.Index)
	return out, nil
}

// attest records a node's attestation of a request's claim.
func (p CheckpointSign) attest(t *txn, h CheckpointHead, nodes map[pki.NodeID]*Node) (applyOut, error) {
	r := t.request(p.Request)
	if r == nil || r.Claim == nil || r.Claim.Index != p.Index {
		return applyOut{}, fmt.Errorf("%w: %q has no claim at index %d on this node", ErrCheckpoint, p.Request, p.Index)
	}
	own := r.ClaimHead(h.ClusterID, h.GenesisHash)
	if own != h {
		return applyOut{}, fmt.Errorf("%w: %q attested the claim of %q at index %d over audit %d %s, this node has audit %d %s: one of the two diverged",
			ErrCheckpoint, p.Sig.Node, p.Request, p.Index, h.AuditSeq, short(h.AuditHead), own.AuditSeq, short(own.AuditHead))
	}
	if r.Claim.Attested {
		return applyOut{}, errCheckpointDone
	}
	if slices.ContainsFunc(r.Claim.Attestations, func(s CheckpointSig) bool { return s.Node == p.Sig.Node }) {
		return applyOut{}, nil
	}
	r.Claim.Attestations = append(r.Claim.Attestations, p.Sig)
	slices.SortFunc(r.Claim.Attestations, func(a, b CheckpointSig) int { return cmpNode(a.Node, b.Node) })
	r.Claim.Attested = len(pinnedSigs(r.Claim.Attestations, nodes)) >= CheckpointQuorum(len(nodes))
	t.putRequest(r)
	return changed(r.ID)
}

// pinnedSigs are the signatures of sigs by members of nodes with the keys
// the set pins for them (a new slice; sigs is not modified).
func pinnedSigs(sigs []CheckpointSig, nodes map[pki.NodeID]*Node) []CheckpointSig {
	return slices.DeleteFunc(slices.Clone(sigs), func(s CheckpointSig) bool { return !s.PinnedBy(nodes) })
}

func cmpNode(a, b pki.NodeID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// cpSig is an accepted checkpoint signature, for the FSM to record beside
// the state once the command committed.
type cpSig struct {
	index uint64
	sig   CheckpointSig
}

// checkpoints is what the FSM keeps beside the state to make snapshots
// and to count signatures. It is a function of the log alone (the
// signatures of a pending checkpoint are collected from log entries, all
// after the checkpoint), so a node that restored a snapshot and one that
// applied the whole log hold the same after the same entries.
type checkpoints struct {
	// base is a view of the state at the last certified checkpoint (nil
	// while there is none: the base is then the empty state), baseCP its
	// certificate.
	base   *State
	baseCP *Checkpoint
	// lastSeen is the raft index of the last entry applied.
	lastSeen uint64
	// pending is the checkpoint reached and not yet certified (nil: none).
	// Reaching a checkpoint supersedes the one still pending, so a node
	// restored from a checkpoint and one that applied the whole log take
	// and refuse the same signatures.
	pending *pendingCheckpoint
}

func newCheckpoints() *checkpoints {
	return &checkpoints{}
}

// pendingCheckpoint is a checkpoint this node reached: a view of its state
// there, the hash computed once (by the signer, or by the first signature
// that needs it), and the node-set signatures collected so far.
type pendingCheckpoint struct {
	index uint64
	term  uint64
	view  *State

	once sync.Once
	hash string
	err  error

	sigs []CheckpointSig
}

func (p *pendingCheckpoint) stateHash() (string, error) {
	p.once.Do(func() {
		h, err := p.view.Hash()
		p.hash, p.err = hex.EncodeToString(h[:]), err
	})
	return p.hash, p.err
}

// head is this node's own head at the checkpoint.
func (p *pendingCheckpoint) head(cluster, genesisHash string) (CheckpointHead, error) {
	h, err := p.stateHash()
	if err != nil {
		return CheckpointHead{}, err
	}
	seq, audit := p.view.auditHead()
	return CheckpointHead{ClusterID: cluster, GenesisHash: genesisHash, Index: p.index, Term: p.term, StateHash: h, AuditSeq: seq, AuditHead: audit}, nil
}

// crossedCheckpoint reports whether st's index moving from prev reached a
// checkpoint, at the interval of st's genesis.
func crossedCheckpoint(st *State, prev uint64) bool {
	n := st.CheckpointInterval
	if n == 0 {
		n = DefaultCheckpointInterval
	}
	return st.Index/n > prev/n
}

// record keeps an accepted signature; when the state now holds the
// checkpoint's certificate, the checkpoint becomes the base and everything
// at or before it is dropped.
func (c *checkpoints) record(s *cpSig, st *State) {
	p := c.pending
	if p == nil || p.index != s.index {
		return
	}
	p.sigs = append(p.sigs, s.sig)
	last := st.LastCheckpoint()
	if last == nil || last.Index != s.index {
		return
	}
	c.base, c.baseCP, c.pending = p.view, last, nil
}
