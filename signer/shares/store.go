// Package shares keeps a node's key shares on disk, sealed with the node's
// KEK in its HSM. Plaintext never touches the disk: a share is serialised in
// memory, sealed, and only the blob is written.
//
// # Blob format
//
// A file holds "CSH2" | u16 big-endian format version | sealed blob from the
// Sealer (hsm: AES-256-GCM inside the token). The AAD given to the Sealer is
//
//	"custody/share\x00" | wallet | "\x00" | party | "\x00" | hex(share ID) | "\x00" | u16 version
//
// so a blob moved to another wallet, party, share or version fails to open.
package shares

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
)

// Sealer seals and opens data with a key that never leaves the HSM;
// *hsm.Sealer implements it.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(blob, aad []byte) ([]byte, error)
}

const fileMagic = "CSH2"

// Errors a caller branches on.
var (
	ErrNotFound = errors.New("shares: share not found")
	ErrExists   = errors.New("shares: share already stored")
	ErrCorrupt  = errors.New("shares: sealed share does not open or decode")
)

// Store is a directory of sealed shares.
type Store struct {
	dir    string
	sealer Sealer
}

// NewStore opens (creating, mode 0700) a store in dir.
func NewStore(dir string, s Sealer) (*Store, error) {
	if s == nil {
		return nil, errors.New("shares: nil sealer")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("shares: %w", err)
	}
	return &Store{dir: dir, sealer: s}, nil
}

func aad(wallet string, party pki.NodeID, shareID []byte, version uint16) []byte {
	b := []byte("custody/share\x00")
	b = append(b, wallet...)
	b = append(b, 0)
	b = append(b, party...)
	b = append(b, 0)
	b = append(b, hex.EncodeToString(shareID)...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint16(b, version)
}

func (s *Store) path(wallet string, party pki.NodeID, shareID []byte) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s.%s.%s.share",
		hex.EncodeToString([]byte(wallet)), hex.EncodeToString([]byte(party)), hex.EncodeToString(shareID)))
}

// Put seals and writes share. An existing share with the same wallet, party
// and share ID is never overwritten.
func (s *Store) Put(share *tss.Share) error {
	pt, err := share.Marshal()
	if err != nil {
		return fmt.Errorf("shares: %w", err)
	}
	defer clear(pt)
	id := share.Data.ShareID.Bytes()
	return s.write(share.Wallet, share.Self, id, pt)
}

func (s *Store) write(wallet string, party pki.NodeID, shareID, plaintext []byte) error {
	blob, err := s.sealer.Seal(plaintext, aad(wallet, party, shareID, tss.ShareFormatVersion))
	if err != nil {
		return fmt.Errorf("shares: seal: %w", err)
	}
	out := binary.BigEndian.AppendUint16([]byte(fileMagic), tss.ShareFormatVersion)
	out = append(out, blob...)
	final := s.path(wallet, party, shareID)
	if _, err := os.Stat(final); err == nil {
		return ErrExists
	}
	// A unique temporary name (CreateTemp: O_EXCL, mode 0600): a file left
	// by a crash, or a concurrent Put of the same share, must not make the
	// share unstorable. Only ciphertext is ever written to it.
	f, err := os.CreateTemp(s.dir, filepath.Base(final)+".*.tmp")
	if err != nil {
		return fmt.Errorf("shares: %w", err)
	}
	tmp := f.Name()
	if _, err := f.Write(out); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("shares: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("shares: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("shares: %w", err)
	}
	if err := os.Link(tmp, final); err != nil { // fails if final appeared meanwhile
		os.Remove(tmp)
		if os.IsExist(err) {
			return ErrExists
		}
		return fmt.Errorf("shares: %w", err)
	}
	os.Remove(tmp)
	return syncDir(s.dir)
}

// Get opens the share of party in wallet with the given share ID (its tss
// party key, tss.Party.Key). Pre-v2 shares without Paillier P/Q are refused.
func (s *Store) Get(wallet string, party pki.NodeID, shareID []byte) (*tss.Share, error) {
	raw, err := os.ReadFile(s.path(wallet, party, shareID))
	if os.IsNotExist(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("shares: %w", err)
	}
	if len(raw) < 6 || string(raw[:4]) != fileMagic {
		return nil, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	if v := binary.BigEndian.Uint16(raw[4:6]); v != tss.ShareFormatVersion {
		return nil, fmt.Errorf("%w: format version %d", ErrCorrupt, v)
	}
	pt, err := s.sealer.Open(raw[6:], aad(wallet, party, shareID, tss.ShareFormatVersion))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	defer clear(pt)
	share, err := tss.UnmarshalShare(pt)
	if err != nil {
		return nil, fmt.Errorf("shares: %w", err)
	}
	if share.Wallet != wallet || share.Self != party {
		return nil, fmt.Errorf("%w: share names another wallet or party", ErrCorrupt)
	}
	return share, nil
}

// Delete removes a sealed share (after a reshare retired it). The blob is
// ciphertext under a KEK that never leaves the HSM, so removal suffices.
func (s *Store) Delete(wallet string, party pki.NodeID, shareID []byte) error {
	if err := os.Remove(s.path(wallet, party, shareID)); err != nil {
		if os.IsNotExist(err) {
			return ErrNotFound
		}
		return fmt.Errorf("shares: %w", err)
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("shares: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("shares: %w", err)
	}
	return nil
}

// Ref names one stored share: what Get takes.
type Ref struct {
	Wallet  string
	Party   pki.NodeID
	ShareID []byte
}

// List names every share in the store (sorted by file name), without
// opening any: a node lists its shares at start and opens each one to learn
// its wallets. Files that are not share blobs (temporaries of an interrupted
// Put) are skipped; a share file whose name does not decode is an error.
func (s *Store) List() ([]Ref, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("shares: %w", err)
	}
	var out []Ref
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".share")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		parts := strings.Split(name, ".")
		var dec [3][]byte
		if len(parts) == 3 {
			for i, p := range parts {
				if dec[i], err = hex.DecodeString(p); err != nil {
					break
				}
			}
		}
		if len(parts) != 3 || err != nil || len(dec[0]) == 0 || len(dec[1]) == 0 || len(dec[2]) == 0 {
			return nil, fmt.Errorf("%w: %s is not a share file name", ErrCorrupt, e.Name())
		}
		out = append(out, Ref{Wallet: string(dec[0]), Party: pki.NodeID(dec[1]), ShareID: dec[2]})
	}
	return out, nil
}

// RetiredDir is the subdirectory retired shares are moved to.
const RetiredDir = "retired"

// Retire moves a sealed share out of the store into RetiredDir instead of
// deleting it: the share of a wallet's former committee, kept (still
// sealed by the KEK) until a person confirms the new committee signs, so a
// reshare that went wrong never destroys the key. Retired shares are not
// listed and not opened.
func (s *Store) Retire(wallet string, party pki.NodeID, shareID []byte) error {
	src := s.path(wallet, party, shareID)
	if _, err := os.Stat(src); err != nil {
		if os.IsNotExist(err) {
			return ErrNotFound
		}
		return fmt.Errorf("shares: %w", err)
	}
	dir := filepath.Join(s.dir, RetiredDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("shares: %w", err)
	}
	if err := os.Rename(src, filepath.Join(dir, filepath.Base(src))); err != nil {
		return fmt.Errorf("shares: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return syncDir(s.dir)
}
