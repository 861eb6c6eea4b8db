package withdraw

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/chains/btc"
	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/ledger"
)

// BTCNode is what Broadcast and Track need from a Bitcoin node;
// *btc.Client satisfies it.
type BTCNode interface {
	Broadcast(ctx context.Context, s *btc.Signed) (chainhash.Hash, error)
	// Confirmations of txid (0 in the mempool); an error when the node
	// does not know it.
	Confirmations(ctx context.Context, txid chainhash.Hash) (int64, error)
	BlockCount(ctx context.Context) (int64, error)
}

// ETHTracker is what Track needs from an Ethereum node beyond eth.RPC;
// *eth.Client (and so eth.Simulated) satisfies it. Config.ETH must
// implement it for Track.
type ETHTracker interface {
	Receipt(ctx context.Context, hash common.Hash) (*eth.Receipt, error)
	BlockNumber(ctx context.Context) (uint64, error)
	NonceAt(ctx context.Context, addr common.Address, block uint64) (uint64, error)
	Known(ctx context.Context, hash common.Hash) (bool, error)
}

var (
	_ BTCNode    = (*btc.Client)(nil)
	_ ETHTracker = (*eth.Client)(nil)
)

// ChainWork lists, from a ledger state (read linearizably on the leader),
// the requests whose transactions the leader should broadcast (signed or
// imported, of a wallet broadcast says the cluster broadcasts) and those it
// should track (broadcast, or dropped: a dropped transaction may still be
// mined or replaced). Both lists are sorted. broadcast is the per-wallet
// choice (the daemon's configuration); nil broadcasts every wallet.
func ChainWork(st *ledger.State, broadcast func(wallet string) bool) (send, track []string) {
	for id, r := range st.Requests {
		switch r.Status {
		case ledger.StatusSigned, ledger.StatusImported:
			if r.Result != nil && r.Result.TxHash != "" && (broadcast == nil || broadcast(r.Wallet)) {
				send = append(send, id)
			}
		case ledger.StatusBroadcast, ledger.StatusDropped:
			track = append(track, id)
		}
	}
	slices.Sort(send)
	slices.Sort(track)
	return send, track
}

// Broadcast sends a request's signed transaction to its chain and records
// request.broadcast (signed or imported → broadcast). It sends only the
// transaction the ledger recorded, after checking it is the approved
// payload signed by the wallet's key and hashes to the recorded TxHash.
// Idempotent: a node that already knows the transaction (in its pool or
// mined) is success, and a request already broadcast is sent again (the
// same bytes; nothing is signed) without a new record. Confirmed, reverted
// and replaced requests are returned unchanged.
func (c *Orchestrator) Broadcast(ctx context.Context, requestID string) (*ledger.Request, error) {
	r, pub, err := c.readSigned(ctx, requestID)
	if err != nil {
		return r, err
	}
	switch r.Status {
	case ledger.StatusSigned, ledger.StatusImported, ledger.StatusBroadcast, ledger.StatusDropped:
	case ledger.StatusConfirmed, ledger.StatusReverted, ledger.StatusReplaced:
		return r, nil
	}
	if err := c.send(ctx, r, pub); err != nil {
		return r, err
	}
	if r.Status == ledger.StatusBroadcast || r.Status == ledger.StatusDropped {
		return r, nil
	}
	out, err := c.cfg.Ledger.Submit(ctx, c.cfg.Actor, ledger.RecordBroadcast{RequestID: r.ID, TxHash: r.Result.TxHash})
	if errors.Is(err, ledger.ErrWrongStatus) {
		// Another leader (or our own earlier try) recorded it first.
		if again, _, rerr := c.readSigned(ctx, requestID); rerr == nil && again.OnChain != nil && again.OnChain.TxHash == r.Result.TxHash {
			return again, nil
		}
	}
	if err != nil {
		return r, fmt.Errorf("withdraw: record broadcast of %q: %w", requestID, err)
	}
	return out.Request, nil
}

// Track asks the chain what became of a broadcast (or dropped) request's
// transaction and records request.chain_status when it is settled:
// confirmed or reverted once mined under at least minConf blocks (0 counts
// as 1); replaced (ETH) when the wallet's nonce at the block minConf deep
// is past the transaction's nonce and the transaction has no receipt:
// another transaction used the nonce; dropped when the node knows neither a
// receipt nor the transaction. Nothing is released or re-signed. Returns
// the request as recorded (unchanged while the transaction is pending).
// Call it every few blocks per tracked request (ChainWork).
func (c *Orchestrator) Track(ctx context.Context, requestID string, minConf uint64) (*ledger.Request, error) {
	minConf = max(minConf, 1)
	r, pub, err := c.readSigned(ctx, requestID)
	if err != nil {
		return r, err
	}
	switch r.Status {
	case ledger.StatusBroadcast, ledger.StatusDropped:
	case ledger.StatusConfirmed, ledger.StatusReverted, ledger.StatusReplaced:
		return r, nil
	default:
		return r, fmt.Errorf("%w: %q is %s, not broadcast", ledger.ErrWrongStatus, requestID, r.Status)
	}
	st, err := ChainStatus(ctx, c.chainNodes(), r, pub, minConf)
	if err != nil || st == nil {
		return r, err
	}
	if r.Status == ledger.StatusDropped && st.Status == ledger.StatusDropped {
		return r, nil // still dropped: nothing new
	}
	out, err := c.cfg.Ledger.Submit(ctx, c.cfg.Actor, *st)
	if errors.Is(err, ledger.ErrWrongStatus) {
		if again, _, rerr := c.readSigned(ctx, requestID); rerr == nil && again.Status != r.Status {
			return again, nil
		}
	}
	if err != nil {
		return r, fmt.Errorf("withdraw: record %s of %q: %w", st.Status, requestID, err)
	}
	return out.Request, nil
}

// readSigned reads the request linearizably with its wallet's public key
// (the orchestrator's registration, else the key the committee attested).
func (c *Orchestrator) readSigned(ctx context.Context, requestID string) (*ledger.Request, []byte, error) {
	var r *ledger.Request
	var pub []byte
	if err := c.cfg.Ledger.ReadLinearizable(ctx, func(st *ledger.State) error {
		if x := st.Requests[requestID]; x != nil {
			r = x.Clone()
			if w := st.Wallets[x.Wallet]; w != nil {
				pub = slices.Clone(w.PubKey)
			}
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if r == nil {
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownRequest, requestID)
	}
	if info, err := c.wallet(r.Wallet); err == nil {
		pub = info.PubKey
	}
	if !r.Status.Signed() && r.Status != ledger.StatusImported {
		return r, nil, fmt.Errorf("%w: %q is %s, no signed transaction", ledger.ErrWrongStatus, requestID, r.Status)
	}
	if r.Result == nil || len(r.Result.Signed) == 0 || r.Result.TxHash == "" {
		return r, nil, fmt.Errorf("withdraw: %q has no signed transaction with a hash", requestID)
	}
	if len(pub) == 0 {
		return r, nil, fmt.Errorf("withdraw: no public key of wallet %q", r.Wallet)
	}
	return r, pub, nil
}

// send checks the recorded transaction and sends it.
func (c *Orchestrator) send(ctx context.Context, r *ledger.Request, pub []byte) error {
	switch r.Chain {
	case "eth":
		s, from, err := ethSigned(r, pub)
		if err != nil {
			return err
		}
		if _, err := c.cfg.ETH.Broadcast(ctx, s); err != nil && !alreadyKnown(err) {
			if known, kerr := c.ethKnown(ctx, s.Hash()); kerr != nil || !known {
				return fmt.Errorf("withdraw: broadcast %q from %s: %w", r.ID, from.Hex(), err)
			}
		}
		return nil
	case "btc":
		if c.cfg.BTCNode == nil {
			return errors.New("withdraw: no bitcoin node configured (Config.BTCNode)")
		}
		s, err := btcSigned(r, pub)
		if err != nil {
			return err
		}
		if _, err := c.cfg.BTCNode.Broadcast(ctx, s); err != nil && !alreadyKnown(err) {
			if _, cerr := c.cfg.BTCNode.Confirmations(ctx, s.TxID()); cerr != nil {
				return fmt.Errorf("withdraw: broadcast %q: %w", r.ID, err)
			}
		}
		return nil
	}
	return fmt.Errorf("withdraw: no broadcast for chain %q", r.Chain)
}

// alreadyKnown reports the nodes' "I have it" refusals of a resent
// transaction: go-ethereum's "already known", btcd's "already have
// transaction" and "transaction already exists".
func alreadyKnown(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "already known") || strings.Contains(msg, "already have transaction") || strings.Contains(msg, "already exists")
}

func (c *Orchestrator) ethKnown(ctx context.Context, h common.Hash) (bool, error) {
	if _, err := c.cfg.ETH.Receipt(ctx, h); err == nil {
		return true, nil
	}
	if t, ok := c.cfg.ETH.(ETHTracker); ok {
		return t.Known(ctx, h)
	}
	return false, nil
}

// ethSigned parses the recorded signed transaction and checks it is the
// approved payload, signed by the wallet, with the recorded hash.
func ethSigned(r *ledger.Request, pub []byte) (*eth.Signed, common.Address, error) {
	from, err := eth.AddressFromPublicKey(pub)
	if err != nil {
		return nil, from, err
	}
	s, err := eth.ParseSigned(r.Result.Signed)
	if err != nil {
		return nil, from, fmt.Errorf("withdraw: recorded transaction of %q: %w", r.ID, err)
	}
	if err := s.Verify(r.PayloadHash, from); err != nil {
		return nil, from, fmt.Errorf("withdraw: recorded transaction of %q: %w", r.ID, err)
	}
	if h := s.Hash().Hex(); h != r.Result.TxHash {
		return nil, from, fmt.Errorf("withdraw: recorded transaction of %q hashes to %s, the ledger records %s", r.ID, h, r.Result.TxHash)
	}
	return s, from, nil
}

// btcSigned is ethSigned for Bitcoin: the recorded transaction is the
// approved unsigned one with every input verified.
func btcSigned(r *ledger.Request, pub []byte) (*btc.Signed, error) {
	u, err := btc.ParseUnsigned(r.Payload, pub)
	if err != nil {
		return nil, fmt.Errorf("withdraw: payload of %q: %w", r.ID, err)
	}
	s, err := u.VerifySigned(r.Result.Signed)
	if err != nil {
		return nil, fmt.Errorf("withdraw: recorded transaction of %q: %w", r.ID, err)
	}
	if id := s.TxID().String(); id != r.Result.TxHash {
		return nil, fmt.Errorf("withdraw: recorded transaction of %q has ID %s, the ledger records %s", r.ID, id, r.Result.TxHash)
	}
	return s, nil
}

// ChainNodes are the chain nodes a transaction's status is read from:
// the reading node's own.
type ChainNodes struct {
	// ETH is the Ethereum node (nil: Ethereum transactions cannot be read).
	ETH ETHTracker
	// BTC is the Bitcoin node (nil: Bitcoin transactions cannot be read).
	BTC BTCNode
}

// chainNodes are the orchestrator's chain nodes.
func (c *Orchestrator) chainNodes() ChainNodes {
	n := ChainNodes{BTC: c.cfg.BTCNode}
	if t, ok := c.cfg.ETH.(ETHTracker); ok {
		n.ETH = t
	}
	return n
}

// ChainStatus is the one reading of what became of a broadcast request's
// transaction on a chain node: the request.chain_status it shows
// (RequestID and TxHash set), or nil while it is pending (in a pool, or
// mined under fewer than minConf blocks; 0 counts as 1). pub is the
// wallet's public key: the recorded transaction is checked against it and
// the approved payload first. Ethereum: confirmed or reverted once mined
// minConf deep (block and depth); replaced when the wallet's nonce minConf
// blocks deep is past the transaction's and it has no receipt; dropped
// when the node knows neither a receipt nor the transaction. Bitcoin:
// confirmed at minConf confirmations (a transaction the node does not know
// is an error, not dropped: telling dropped from replaced needs the spent
// state of its outpoints). The leader records what it reads (Track); every
// node witnesses the recorded status when its own node reads the same
// (Witness).
func ChainStatus(ctx context.Context, nodes ChainNodes, r *ledger.Request, pub []byte, minConf uint64) (*ledger.RecordChainStatus, error) {
	minConf = max(minConf, 1)
	if r.OnChain == nil || r.Result == nil {
		return nil, fmt.Errorf("%w: %q was not broadcast", ledger.ErrWrongStatus, r.ID)
	}
	var st *ledger.RecordChainStatus
	var err error
	switch r.Chain {
	case "eth":
		st, err = ethStatus(ctx, nodes.ETH, r, pub, minConf)
	case "btc":
		st, err = btcStatus(ctx, nodes.BTC, r, minConf)
	default:
		err = fmt.Errorf("withdraw: no chain tracking for %q", r.Chain)
	}
	if err != nil || st == nil {
		return nil, err
	}
	st.RequestID, st.TxHash = r.ID, r.OnChain.TxHash
	return st, nil
}

func ethStatus(ctx context.Context, node ETHTracker, r *ledger.Request, pub []byte, minConf uint64) (*ledger.RecordChainStatus, error) {
	if node == nil {
		return nil, errors.New("withdraw: the eth node cannot track transactions (withdraw.ETHTracker)")
	}
	s, from, err := ethSigned(r, pub)
	if err != nil {
		return nil, err
	}
	if r.Nonce == nil {
		return nil, fmt.Errorf("withdraw: %q has no nonce", r.ID)
	}
	nonce, hash := *r.Nonce, s.Hash()
	head, err := node.BlockNumber(ctx)
	if err != nil {
		return nil, err
	}
	rc, err := node.Receipt(ctx, hash)
	switch {
	case err == nil:
		if rc.BlockNumber > head || head-rc.BlockNumber+1 < minConf {
			return nil, nil // mined, not deep enough yet
		}
		st := &ledger.RecordChainStatus{Status: ledger.StatusConfirmed, Block: rc.BlockNumber, Confirmations: head - rc.BlockNumber + 1}
		if !rc.Success {
			st.Status, st.Detail = ledger.StatusReverted, "receipt status 0 (execution failed)"
		}
		return st, nil
	case !errors.Is(err, eth.ErrNotMined):
		return nil, err
	}
	// No receipt. The nonce minConf blocks deep past ours: another
	// transaction of the wallet took it, under the same depth a
	// confirmation needs.
	if head+1 >= minConf {
		deep := head + 1 - minConf
		n, err := node.NonceAt(ctx, from, deep)
		if err != nil {
			return nil, err
		}
		if n > nonce {
			// Mined between the two reads? Then the next Track confirms it.
			if _, err := node.Receipt(ctx, hash); !errors.Is(err, eth.ErrNotMined) {
				return nil, err
			}
			return &ledger.RecordChainStatus{Status: ledger.StatusReplaced,
				Detail: fmt.Sprintf("nonce %d of %s used by another transaction by block %d", nonce, from.Hex(), deep)}, nil
		}
	}
	known, err := node.Known(ctx, hash)
	if err != nil || known {
		return nil, err
	}
	return &ledger.RecordChainStatus{Status: ledger.StatusDropped, Detail: "neither mined nor in the node's pool"}, nil
}

// btcStatus reads a confirmation. A transaction the node does not know is
// an error, not "dropped": telling dropped from replaced needs the spent
// state of its outpoints (left: docs/ledger.md).
func btcStatus(ctx context.Context, node BTCNode, r *ledger.Request, minConf uint64) (*ledger.RecordChainStatus, error) {
	if node == nil {
		return nil, errors.New("withdraw: no bitcoin node configured (Config.BTCNode)")
	}
	txid, err := chainhash.NewHashFromStr(r.OnChain.TxHash)
	if err != nil {
		return nil, fmt.Errorf("withdraw: recorded txid of %q: %w", r.ID, err)
	}
	conf, err := node.Confirmations(ctx, *txid)
	if err != nil || conf < int64(minConf) {
		return nil, err
	}
	height, err := node.BlockCount(ctx)
	if err != nil {
		return nil, err
	}
	return &ledger.RecordChainStatus{Status: ledger.StatusConfirmed, Block: uint64(height - conf + 1), Confirmations: uint64(conf)}, nil
}
