package tss

// committee selects a set of participants inside a session.
type committee uint8

const (
	cMain   committee = iota // keygen / signing committee
	cOld                     // resharing: old committee
	cNew                     // resharing: new committee
	cOldNew                  // resharing: both
)

// msgSpec describes one tss-lib message type: who may send it, who receives
// it, and whether it is a broadcast (echo-checked). The routing claims inside
// tss-lib's payload are never used; this table is.
type msgSpec struct {
	broadcast bool
	from      committee
	to        committee
}

const (
	protoKeygen  = "keygen"
	protoSign    = "signing"
	protoReshare = "resharing"
)

var specs = map[string]map[string]msgSpec{
	protoKeygen: {
		"binance.tsslib.ecdsa.keygen.KGRound1Message":  {true, cMain, cMain},
		"binance.tsslib.ecdsa.keygen.KGRound2Message1": {false, cMain, cMain},
		"binance.tsslib.ecdsa.keygen.KGRound2Message2": {true, cMain, cMain},
		"binance.tsslib.ecdsa.keygen.KGRound3Message":  {true, cMain, cMain},
	},
	protoSign: {
		"binance.tsslib.ecdsa.signing.SignRound1Message1": {false, cMain, cMain},
		"binance.tsslib.ecdsa.signing.SignRound1Message2": {true, cMain, cMain},
		"binance.tsslib.ecdsa.signing.SignRound2Message":  {false, cMain, cMain},
		"binance.tsslib.ecdsa.signing.SignRound3Message":  {true, cMain, cMain},
		"binance.tsslib.ecdsa.signing.SignRound4Message":  {true, cMain, cMain},
		"binance.tsslib.ecdsa.signing.SignRound5Message":  {true, cMain, cMain},
		"binance.tsslib.ecdsa.signing.SignRound6Message":  {true, cMain, cMain},
		"binance.tsslib.ecdsa.signing.SignRound7Message":  {true, cMain, cMain},
		"binance.tsslib.ecdsa.signing.SignRound8Message":  {true, cMain, cMain},
		"binance.tsslib.ecdsa.signing.SignRound9Message":  {true, cMain, cMain},
	},
	protoReshare: {
		"binance.tsslib.ecdsa.resharing.DGRound1Message":  {true, cOld, cNew},
		"binance.tsslib.ecdsa.resharing.DGRound2Message1": {true, cNew, cNew},
		"binance.tsslib.ecdsa.resharing.DGRound2Message2": {true, cNew, cOld},
		"binance.tsslib.ecdsa.resharing.DGRound3Message1": {false, cOld, cNew},
		"binance.tsslib.ecdsa.resharing.DGRound3Message2": {true, cOld, cNew},
		"binance.tsslib.ecdsa.resharing.DGRound4Message1": {false, cNew, cNew},
		"binance.tsslib.ecdsa.resharing.DGRound4Message2": {true, cNew, cOldNew},
	},
}

// Round-4 signing message type, exposed for the presignature pool (#7),
// which holds it back to finish a signature later.
const (
	SignRound4Type = "binance.tsslib.ecdsa.signing.SignRound4Message"
	SignRound9Type = "binance.tsslib.ecdsa.signing.SignRound9Message"
)

func (c committee) has(r Role) bool {
	switch c {
	case cMain:
		return r == RoleMain
	case cOld:
		return r == RoleOld
	case cNew:
		return r == RoleNew
	case cOldNew:
		return r == RoleOld || r == RoleNew
	}
	return false
}
