package btc

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// RPCConfig says how to reach a btcd node's JSON-RPC server.
type RPCConfig struct {
	Host string // host:port
	User string
	Pass string // never logged or put in errors
	// Cert is btcd's rpc.cert (PEM); required unless DisableTLS.
	Cert []byte
	// DisableTLS is for a node on loopback started with --notls only.
	DisableTLS bool
}

// Client is the chain adapter over btcd's RPC. btcd has no wallet, so UTXOs
// come from its address index: the node must run with --txindex and
// --addrindex (see UTXOs).
//
// rpcclient's HTTP client has no timeout and its calls take no context:
// each call runs on its own goroutine (rpc) and the caller returns when its
// context ends, leaving that goroutine to finish or fail on its own.
type Client struct {
	c   *rpcclient.Client
	net *chaincfg.Params
}

// Dial connects (HTTP POST mode, no websocket) to a btcd node on net.
func Dial(cfg RPCConfig, net *chaincfg.Params) (*Client, error) {
	c, err := rpcclient.New(&rpcclient.ConnConfig{
		Host: cfg.Host, User: cfg.User, Pass: cfg.Pass, Certificates: cfg.Cert,
		DisableTLS: cfg.DisableTLS, HTTPPostMode: true,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("btc: rpc client for %s: %w", cfg.Host, err)
	}
	return &Client{c: c, net: net}, nil
}

// rpc runs one rpcclient call under ctx: the answer, or ctx's error as
// soon as ctx ends (a btcd that never answers cannot hang the caller).
func rpc[T any](ctx context.Context, call func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type answer struct {
		v   T
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		v, err := call()
		ch <- answer{v, err}
	}()
	select {
	case a := <-ch:
		return a.v, a.err
	case <-ctx.Done():
		return zero, fmt.Errorf("btc: no answer from btcd: %w", ctx.Err())
	}
}

// Close releases the client.
func (n *Client) Close() { n.c.Shutdown() }

// BlockCount returns the height of the best chain.
func (n *Client) BlockCount(ctx context.Context) (int64, error) {
	h, err := rpc(ctx, n.c.GetBlockCount)
	if err != nil {
		return 0, fmt.Errorf("btc: getblockcount: %w", err)
	}
	return h, nil
}

// searchPage is how many transactions one searchrawtransactions call asks for.
const searchPage = 500

// UTXOs returns the spendable outputs paying addr, discovered with
// searchrawtransactions over btcd's address index (which covers the
// mempool too): every output paying addr in any transaction touching addr,
// minus those spent by an input of any such transaction (including
// unconfirmed spends). Values come from the raw transaction bytes, never
// from the RPC's floating-point fields. Coinbase outputs younger than the
// network's coinbase maturity and outputs with fewer than minConf
// confirmations are left out.
func (n *Client) UTXOs(ctx context.Context, addr btcutil.Address, minConf int64) ([]UTXO, error) {
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return nil, fmt.Errorf("btc: utxos: %w", err)
	}
	type found struct {
		u        UTXO
		coinbase bool
	}
	outs := map[wire.OutPoint]found{}
	var order []wire.OutPoint
	spent := map[wire.OutPoint]bool{}
	for skip := 0; ; skip += searchPage {
		res, err := rpc(ctx, func() ([]*btcjson.SearchRawTransactionsResult, error) {
			return n.c.SearchRawTransactionsVerbose(addr, skip, searchPage, false, false, nil)
		})
		var rerr *btcjson.RPCError
		if errors.As(err, &rerr) && rerr.Code == btcjson.ErrRPCNoTxInfo {
			break // no (more) transactions for this address
		}
		if err != nil {
			return nil, fmt.Errorf("btc: searchrawtransactions (needs --txindex --addrindex): %w", err)
		}
		for _, r := range res {
			raw, err := hex.DecodeString(r.Hex)
			if err != nil {
				return nil, fmt.Errorf("btc: searchrawtransactions: bad hex for %s: %w", r.Txid, err)
			}
			tx, err := ParseRawTx(raw)
			if err != nil {
				return nil, fmt.Errorf("btc: searchrawtransactions: tx %s: %w", r.Txid, err)
			}
			cb := isCoinbase(tx)
			if !cb {
				for _, in := range tx.TxIn {
					spent[in.PreviousOutPoint] = true
				}
			}
			h := tx.TxHash()
			for i, o := range tx.TxOut {
				if !bytes.Equal(o.PkScript, script) {
					continue
				}
				op := wire.OutPoint{Hash: h, Index: uint32(i)}
				if _, dup := outs[op]; !dup {
					order = append(order, op)
				}
				outs[op] = found{u: UTXO{OutPoint: op, Value: o.Value, PkScript: bytes.Clone(o.PkScript), Confirmations: int64(r.Confirmations)}, coinbase: cb}
			}
		}
		if len(res) < searchPage {
			break
		}
	}
	var utxos []UTXO
	for _, op := range order {
		f := outs[op]
		if spent[op] || f.u.Confirmations < minConf {
			continue
		}
		if f.coinbase && f.u.Confirmations < int64(n.net.CoinbaseMaturity) {
			continue
		}
		utxos = append(utxos, f.u)
	}
	return utxos, nil
}

func isCoinbase(tx *wire.MsgTx) bool {
	return len(tx.TxIn) == 1 && tx.TxIn[0].PreviousOutPoint.Index == wire.MaxPrevOutIndex && tx.TxIn[0].PreviousOutPoint.Hash == (chainhash.Hash{})
}

// Broadcast submits a signed transaction (btcd refuses absurd fees).
func (n *Client) Broadcast(ctx context.Context, s *Signed) (chainhash.Hash, error) {
	h, err := rpc(ctx, func() (*chainhash.Hash, error) { return n.c.SendRawTransaction(s.tx, false) })
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("btc: sendrawtransaction %s: %w", s.TxID(), err)
	}
	return *h, nil
}

// Confirmations returns how many blocks confirm txid (0 while in the
// mempool). Needs --txindex for transactions not in the mempool.
func (n *Client) Confirmations(ctx context.Context, txid chainhash.Hash) (int64, error) {
	r, err := rpc(ctx, func() (*btcjson.TxRawResult, error) { return n.c.GetRawTransactionVerbose(&txid) })
	if err != nil {
		return 0, fmt.Errorf("btc: getrawtransaction %s: %w", txid, err)
	}
	return int64(r.Confirmations), nil
}

// Output returns the output op names (its script and value), from the
// transaction that made it (needs --txindex unless it is in the mempool).
func (n *Client) Output(ctx context.Context, op wire.OutPoint) (*wire.TxOut, error) {
	tx, err := rpc(ctx, func() (*btcutil.Tx, error) { return n.c.GetRawTransaction(&op.Hash) })
	if err != nil {
		return nil, fmt.Errorf("btc: getrawtransaction %s: %w", op.Hash, err)
	}
	outs := tx.MsgTx().TxOut
	if int(op.Index) >= len(outs) {
		return nil, fmt.Errorf("btc: %s has no output %d", op.Hash, op.Index)
	}
	o := outs[op.Index]
	return wire.NewTxOut(o.Value, bytes.Clone(o.PkScript)), nil
}

// Generate mines blocks to the node's --miningaddr (regtest/simnet only).
func (n *Client) Generate(ctx context.Context, blocks uint32) ([]chainhash.Hash, error) {
	hs, err := rpc(ctx, func() ([]*chainhash.Hash, error) { return n.c.Generate(blocks) })
	if err != nil {
		return nil, fmt.Errorf("btc: generate: %w", err)
	}
	out := make([]chainhash.Hash, len(hs))
	for i, h := range hs {
		out[i] = *h
	}
	return out, nil
}

// BlockContains reports whether the block with hash h contains txid.
func (n *Client) BlockContains(ctx context.Context, h, txid chainhash.Hash) (bool, error) {
	b, err := rpc(ctx, func() (*wire.MsgBlock, error) { return n.c.GetBlock(&h) })
	if err != nil {
		return false, fmt.Errorf("btc: getblock %s: %w", h, err)
	}
	for _, tx := range b.Transactions {
		if tx.TxHash() == txid {
			return true, nil
		}
	}
	return false, nil
}
