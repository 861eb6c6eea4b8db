// Package devtoken is a minimal ERC-20 token as hand-assembled EVM
// bytecode (no Solidity compiler is needed), to deploy on the devnet's
// chain or a simulated chain in tests, or to place in its genesis. It is
// development tooling, never on a signing path, and imports nothing of
// custody.
package devtoken

import (
	"encoding/binary"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// A tiny EVM assembler, so the test token below is readable source rather
// than an opaque hex blob. Items: an opcode byte, push(n, bytes),
// label(name) (a JUMPDEST), or ref(name) (PUSH2 of the label's offset).
type (
	push  struct{ data []byte }
	label string
	ref   string
)

const (
	opADD          = 0x01
	opSUB          = 0x03
	opLT           = 0x10
	opEQ           = 0x14
	opSHR          = 0x1c
	opCALLER       = 0x33
	opCALLDATALOAD = 0x35
	opCODECOPY     = 0x39
	opPOP          = 0x50
	opMSTORE       = 0x52
	opSLOAD        = 0x54
	opSSTORE       = 0x55
	opJUMPI        = 0x57
	opJUMPDEST     = 0x5b
	opDUP1         = 0x80
	opDUP2         = 0x81
	opDUP3         = 0x82
	opSWAP1        = 0x90
	opLOG3         = 0xa3
	opRETURN       = 0xf3
	opREVERT       = 0xfd
)

func p1(v byte) push { return push{[]byte{v}} }

func assemble(items ...any) []byte {
	labels := map[string]int{}
	size := func(it any) int {
		switch v := it.(type) {
		case push:
			return 1 + len(v.data)
		case ref:
			return 3
		default:
			return 1
		}
	}
	pc := 0
	for _, it := range items {
		if l, ok := it.(label); ok {
			labels[string(l)] = pc
		}
		pc += size(it)
	}
	var out []byte
	for _, it := range items {
		switch v := it.(type) {
		case int:
			out = append(out, byte(v))
		case push:
			if len(v.data) < 1 || len(v.data) > 32 {
				panic("bad push")
			}
			out = append(out, byte(0x5f+len(v.data)))
			out = append(out, v.data...)
		case label:
			out = append(out, opJUMPDEST)
		case ref:
			at, ok := labels[string(v)]
			if !ok {
				panic(fmt.Sprintf("unknown label %s", v))
			}
			out = append(out, 0x61, byte(at>>8), byte(at))
		default:
			panic(fmt.Sprintf("bad item %T", it))
		}
	}
	return out
}

// transferTopic is keccak256("Transfer(address,address,uint256)").
var transferTopic = []byte{0xdd, 0xf2, 0x52, 0xad, 0x1b, 0xe2, 0xc8, 0x9b, 0x69, 0xc2, 0xb0, 0x68, 0xfc, 0x37, 0x8d, 0xaa, 0x95, 0x2b, 0xa7, 0xf1, 0x63, 0xc4, 0xa1, 0x16, 0x28, 0xf5, 0x5a, 0x4d, 0xf5, 0x23, 0xb3, 0xef}

// TokenRuntime is the deployed code of a minimal ERC-20 subset. Balances live at storage slot =
// holder address. Source:
//
//	sel = calldata[0:4]
//	if sel == transfer(address,uint256):
//	    amt = calldata[36:68]; bal = sload(caller)
//	    if bal < amt: revert
//	    sstore(caller, bal-amt); to = calldata[4:36]; sstore(to, sload(to)+amt)
//	    log3(amt, Transfer, caller, to); return true
//	if sel == balanceOf(address): return sload(calldata[4:36])
//	revert
func TokenRuntime() []byte {
	return assemble(
		p1(0), opCALLDATALOAD, p1(0xe0), opSHR, // [sel]
		opDUP1, push{[]byte{0xa9, 0x05, 0x9c, 0xbb}}, opEQ, ref("transfer"), opJUMPI,
		opDUP1, push{[]byte{0x70, 0xa0, 0x82, 0x31}}, opEQ, ref("balanceOf"), opJUMPI,
		label("fail"), p1(0), opDUP1, opREVERT,
		label("balanceOf"), p1(4), opCALLDATALOAD, opSLOAD, p1(0), opMSTORE, p1(32), p1(0), opRETURN,
		label("transfer"),
		p1(36), opCALLDATALOAD, // [sel amt]
		opCALLER, opSLOAD, // [sel amt bal]
		opDUP2, opDUP2, opLT, ref("fail"), opJUMPI, // bal < amt -> fail
		opDUP2, opDUP2, opSUB, opCALLER, opSSTORE, opPOP, // balance[caller] = bal-amt; [sel amt]
		p1(4), opCALLDATALOAD, opDUP1, opSLOAD, opDUP3, opADD, opSWAP1, opSSTORE, // balance[to] += amt
		p1(0), opMSTORE, // mem[0] = amt; [sel]
		p1(4), opCALLDATALOAD, opCALLER, push{transferTopic}, p1(32), p1(0), opLOG3,
		p1(1), p1(0), opMSTORE, p1(32), p1(0), opRETURN,
	)
}

// TokenInitCode is the creation code of the token: it credits supply to the
// deployer and returns TokenRuntime.
func TokenInitCode(supply *big.Int) []byte {
	rt := TokenRuntime()
	var word [32]byte
	supply.FillBytes(word[:])
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(rt)))
	const initLen = 48 // the length of the code below, before rt
	init := assemble(
		push{word[:]}, opCALLER, opSSTORE,
		push{l[:]}, opDUP1, push{[]byte{0, initLen}}, p1(0), opCODECOPY,
		p1(0), opRETURN,
	)
	if len(init) != initLen {
		panic(fmt.Sprintf("init code is %d bytes, want %d", len(init), initLen))
	}
	return append(init, rt...)
}

// TokenAccount is the token as a genesis account (types.GenesisAlloc) whose
// holders already hold balances: the contract's code is TokenRuntime and
// each balance sits at the storage slot named by the holder's address.
func TokenAccount(balances map[common.Address]*big.Int) types.Account {
	st := map[common.Hash]common.Hash{}
	for holder, v := range balances {
		st[common.BytesToHash(holder[:])] = common.BigToHash(v)
	}
	return types.Account{Code: TokenRuntime(), Storage: st, Balance: new(big.Int)}
}
