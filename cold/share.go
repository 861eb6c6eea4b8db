package cold

import (
	"encoding/hex"
	"fmt"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/strictdoc"
)

// SealedShare is a custodian's share file: the share sealed by the KEK in
// the custodian's token, bound (AAD) to the wallet, the custodian, the
// token serial and the wallet key.
type SealedShare struct {
	Version     string `json:"version"`
	Wallet      string `json:"wallet"`
	Custodian   string `json:"custodian"`
	TokenSerial string `json:"token_serial"`
	PubKey      []byte `json:"pubkey"`
	Sealed      []byte `json:"sealed"`
}

const shareVersion = "custody/cold-share/v1"

func (s SealedShare) aad() []byte {
	return []byte(shareVersion + "\x00" + s.Wallet + "\x00" + s.Custodian + "\x00" + s.TokenSerial + "\x00" + hex.EncodeToString(s.PubKey))
}

func sealShare(k *hsm.Sealer, wallet string, cu Custodian, sh *tss.Share) ([]byte, error) {
	pt, err := sh.Marshal()
	if err != nil {
		return nil, fmt.Errorf("cold: %w", err)
	}
	defer clear(pt)
	s := SealedShare{Version: shareVersion, Wallet: wallet, Custodian: cu.Name, TokenSerial: cu.TokenSerial, PubKey: sh.PubKey}
	if s.Sealed, err = k.Seal(pt, s.aad()); err != nil {
		return nil, fmt.Errorf("cold: seal the share of %s: %w", cu.Name, err)
	}
	return encodeJSON(s), nil
}

// ParseSealedShare reads a share file strictly.
func ParseSealedShare(b []byte) (*SealedShare, error) {
	var s SealedShare
	if err := strictdoc.DecodeJSON(b, &s); err != nil {
		return nil, fmt.Errorf("cold: share file: %w", err)
	}
	if s.Version != shareVersion {
		return nil, fmt.Errorf("cold: share file: version %q, want %q", s.Version, shareVersion)
	}
	return &s, nil
}

// open unseals the share in tok (whose serial must be the file's) and
// checks it is the custodian's share of the wallet's key.
func (s *SealedShare) open(tok *hsm.Token, pub []byte) (*tss.Share, error) {
	if tok.Info().Serial != s.TokenSerial {
		return nil, fmt.Errorf("cold: the share of %s is sealed in token %s, not %s", s.Custodian, s.TokenSerial, tok.Info().Serial)
	}
	if string(s.PubKey) != string(pub) {
		return nil, fmt.Errorf("cold: the share of %s is for another key than the wallet's", s.Custodian)
	}
	k, err := tok.KEK(kekLabel(s.Wallet))
	if err != nil {
		return nil, fmt.Errorf("cold: custodian %s: %w", s.Custodian, err)
	}
	pt, err := k.Open(s.Sealed, s.aad())
	if err != nil {
		return nil, fmt.Errorf("cold: custodian %s: the share does not open in this token: %w", s.Custodian, err)
	}
	defer clear(pt)
	sh, err := tss.UnmarshalShare(pt)
	if err != nil {
		return nil, fmt.Errorf("cold: custodian %s: %w", s.Custodian, err)
	}
	if string(sh.PubKey) != string(pub) || string(sh.Self) != s.Custodian {
		sh.Wipe()
		return nil, fmt.Errorf("cold: custodian %s: the unsealed share is not this custodian's share of the wallet", s.Custodian)
	}
	return sh, nil
}
