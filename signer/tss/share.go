package tss

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"sync"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/custody-dev/custody/pki"
)

// ShareFormatVersion is the serialisation version of Share; it is also bound
// into the sealing AAD by the share store.
const ShareFormatVersion = 2

// Party is one committee member of a wallet: its node and tss-lib party key.
type Party struct {
	Node pki.NodeID `json:"node"`
	Key  []byte     `json:"key"`
}

// WalletInfo is the public description of a wallet's current committee. New
// committee members of a reshare get it from the ledger.
type WalletInfo struct {
	Wallet    string  `json:"wallet"`
	Threshold int     `json:"threshold"` // t: any t+1 members sign
	Members   []Party `json:"members"`   // sorted by node
	PubKey    []byte  `json:"pubkey"`    // 33-byte compressed secp256k1
}

// Share is one node's key share of a wallet: public committee data plus the
// secret tss-lib save data. Keep it in memory only for a session; at rest it
// is sealed by the share store.
type Share struct {
	WalletInfo
	Self pki.NodeID
	Data keygen.LocalPartySaveData

	mu      sync.Mutex
	retired bool
}

type shareJSON struct {
	Version int                       `json:"version"`
	Info    WalletInfo                `json:"info"`
	Self    pki.NodeID                `json:"self"`
	Data    keygen.LocalPartySaveData `json:"data"`
}

// ErrBadShare is returned for share bytes that do not decode to a complete,
// consistent v2 share (including pre-v2 shares without Paillier P/Q).
var ErrBadShare = errors.New("tss: bad share")

// Marshal serialises the share (secret!). Callers seal the result at once.
func (s *Share) Marshal() ([]byte, error) {
	if s.Retired() {
		return nil, ErrShareRetired
	}
	return json.Marshal(shareJSON{Version: ShareFormatVersion, Info: s.WalletInfo, Self: s.Self, Data: s.Data})
}

// UnmarshalShare decodes and validates a share. Shares in the pre-v2 format
// (no Paillier P/Q, no NTilde proof values) are refused: SECURITY.md item 3.
func UnmarshalShare(b []byte) (*Share, error) {
	var j shareJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadShare, err)
	}
	if j.Version != ShareFormatVersion {
		return nil, fmt.Errorf("%w: format version %d", ErrBadShare, j.Version)
	}
	s := &Share{WalletInfo: j.Info, Self: j.Self, Data: j.Data}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Share) validate() error {
	d := &s.Data
	if !d.LocalPreParams.ValidateWithProof() {
		return fmt.Errorf("%w: pre-v2 share without Paillier P/Q", ErrBadShare)
	}
	n := len(s.Members)
	if n < 2 || s.Threshold < 1 || s.Threshold >= n || d.Xi == nil || d.ShareID == nil || d.ECDSAPub == nil ||
		len(d.Ks) != n || len(d.BigXj) != n || len(d.NTildej) != n || len(d.H1j) != n || len(d.H2j) != n || len(d.PaillierPKs) != n {
		return fmt.Errorf("%w: incomplete save data", ErrBadShare)
	}
	// Members must be distinct nodes with distinct keys, each key one of
	// the save data's share IDs.
	nodes, keys := map[pki.NodeID]bool{}, map[string]bool{}
	ks := map[string]bool{}
	for _, k := range d.Ks {
		if k != nil {
			ks[string(k.Bytes())] = true
		}
	}
	for _, m := range s.Members {
		k := string(new(big.Int).SetBytes(m.Key).Bytes())
		if m.Node == "" || nodes[m.Node] || keys[k] {
			return fmt.Errorf("%w: empty or duplicate member node or key", ErrBadShare)
		}
		if !ks[k] {
			return fmt.Errorf("%w: member %s's key is not a share ID of the save data", ErrBadShare, m.Node)
		}
		nodes[m.Node], keys[k] = true, true
	}
	self := false
	for _, m := range s.Members {
		if m.Node == s.Self {
			self = true
			if new(big.Int).SetBytes(m.Key).Cmp(d.ShareID) != 0 {
				return fmt.Errorf("%w: share ID does not match the member key", ErrBadShare)
			}
		}
	}
	if !self {
		return fmt.Errorf("%w: self is not a member", ErrBadShare)
	}
	if pk := compressPub(d); pk == nil || string(pk) != string(s.PubKey) {
		return fmt.Errorf("%w: public key mismatch", ErrBadShare)
	}
	return nil
}

// Retired reports whether the share was destroyed after a reshare.
func (s *Share) Retired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retired
}

// retire zeroes the secret and marks the share unusable.
func (s *Share) retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
	if s.Data.Xi != nil {
		s.Data.Xi.SetInt64(0)
	}
	s.Data.Xi = nil
}

// Wipe zeroes the share's secret integers in place (the key share Xi and the
// Paillier and safe-prime secrets of the pre-params) and marks the share
// retired, so it refuses to sign or serialise. Call it when a share leaves
// memory (after a session, on shutdown). Go cannot guarantee erasure: the
// garbage collector may have copied these values, big.Int arithmetic leaves
// intermediate copies, and Marshal output and tss-lib's own copies are not
// reached; Wipe shortens how long the secret lives, it does not prove it is
// gone. A running session shares these integers, so never Wipe a share
// while it signs; once Sign (or SignLateBound, Keygen's test-sign, Reshare)
// has returned, success or failure, tss-lib no longer reads it: a session
// returns only after its tss-lib parties stopped (TestSignReturnsAfterTssLibStopped).
func (s *Share) Wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
	d := &s.Data
	zero := func(xs ...*big.Int) {
		for _, x := range xs {
			if x != nil {
				clear(x.Bits()) // Bits shares the backing array
				x.SetInt64(0)
			}
		}
	}
	zero(d.Xi, d.P, d.Q, d.Alpha, d.Beta)
	if sk := d.PaillierSK; sk != nil {
		zero(sk.LambdaN, sk.PhiN, sk.P, sk.Q)
	}
	d.Xi = nil
}

// Info returns the public wallet description.
func (s *Share) Info() WalletInfo { return s.WalletInfo }

func compressPub(d *keygen.LocalPartySaveData) []byte {
	if d.ECDSAPub == nil {
		return nil
	}
	var x, y btcec.FieldVal
	if x.SetByteSlice(d.ECDSAPub.X().Bytes()) || y.SetByteSlice(d.ECDSAPub.Y().Bytes()) {
		return nil
	}
	return btcec.NewPublicKey(&x, &y).SerializeCompressed()
}

// resultDigest is what parties compare after keygen/resharing: the public
// key and every party's public share point and share ID.
func resultDigest(d *keygen.LocalPartySaveData) []byte {
	h := sha256.New()
	h.Write([]byte("custody/tss/result/v1\x00"))
	h.Write(compressPub(d))
	for i := range d.Ks {
		h.Write(d.Ks[i].Bytes())
		h.Write([]byte{0})
		if d.BigXj[i] != nil {
			h.Write(d.BigXj[i].X().Bytes())
			h.Write(d.BigXj[i].Y().Bytes())
		}
	}
	return h.Sum(nil)
}

// sortedPIDs builds tss-lib party IDs for members, indexed as tss-lib sorts
// them (by key), and returns the ID for self if present.
func sortedPIDs(members []Party, self pki.NodeID) (tsslib.SortedPartyIDs, *tsslib.PartyID, map[pki.NodeID]*tsslib.PartyID) {
	var un tsslib.UnSortedPartyIDs
	byNode := map[pki.NodeID]*tsslib.PartyID{}
	for _, m := range members {
		pid := tsslib.NewPartyID(string(m.Node), string(m.Node), new(big.Int).SetBytes(m.Key))
		un = append(un, pid)
		byNode[m.Node] = pid
	}
	sorted := tsslib.SortPartyIDs(un)
	return sorted, byNode[self], byNode
}

func sortMembers(ms []Party) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Node < ms[j].Node })
}

func checkCommittee(nodes []pki.NodeID, self pki.NodeID, needSelf bool) error {
	seen := map[pki.NodeID]bool{}
	in := false
	for _, n := range nodes {
		if n == "" || seen[n] {
			return fmt.Errorf("%w: empty or duplicate party %q", ErrBadParams, n)
		}
		seen[n] = true
		if n == self {
			in = true
		}
	}
	if needSelf && !in {
		return fmt.Errorf("%w: %s is not in the committee", ErrBadParams, self)
	}
	return nil
}

// copySaveData deep-copies the secret so tss-lib (which zeroes an old
// party's Xi at the end of resharing) cannot destroy the share we must keep
// until the new committee test-signed.
func copySaveData(d keygen.LocalPartySaveData) keygen.LocalPartySaveData {
	c := d
	if d.Xi != nil {
		c.Xi = new(big.Int).Set(d.Xi)
	}
	if d.ShareID != nil {
		c.ShareID = new(big.Int).Set(d.ShareID)
	}
	return c
}
