package devnet

import (
	"context"
	"fmt"
	"math/big"
	"path/filepath"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/custody-dev/custody/chains/eth"
	"github.com/custody-dev/custody/chains/eth/gethproc"
)

// The Ethereum nodes a devnet runs (Config.ETHNode).
const (
	// ETHEmbedded is go-ethereum's simulated backend, served over HTTP
	// JSON-RPC by the devnet process; a block is mined right after each
	// accepted transaction.
	ETHEmbedded = "embedded"
	// ETHGeth is a real geth --dev process (Config.Geth), mining on
	// demand: a block as soon as a transaction is pending.
	ETHGeth = "geth"
)

// ETHChain is the devnet's Ethereum chain as the devnet itself drives it:
// over the same JSON-RPC endpoint the nodes use (URL), whichever node
// serves it.
type ETHChain struct {
	// Client speaks JSON-RPC to URL.
	*eth.Client
	// Node is ETHEmbedded or ETHGeth.
	Node string
	// ChainID is what the node answers eth_chainId with (1337).
	ChainID *big.Int

	url    string
	rpc    *ethclient.Client
	served *eth.Served    // embedded
	geth   *gethproc.Node // geth
}

// URL is the chain's JSON-RPC endpoint, http://127.0.0.1:PORT.
func (c *ETHChain) URL() string { return c.url }

// Mine adds one block (confirmations for the nodes' broadcasts): a Commit
// of the embedded chain, a zero-value transfer from geth's developer
// account (on-demand mining makes a block for it).
func (c *ETHChain) Mine(ctx context.Context) error {
	if c.geth != nil {
		return c.geth.Mine(ctx)
	}
	c.served.Commit()
	return nil
}

// PID is geth's process ID (0 for the embedded chain: it runs in the
// devnet process).
func (c *ETHChain) PID() int {
	if c.geth != nil {
		return c.geth.PID()
	}
	return 0
}

// Close disconnects and stops the node.
func (c *ETHChain) Close() error {
	if c.rpc != nil {
		c.rpc.Close()
	}
	if c.geth != nil {
		c.geth.Stop()
		return nil
	}
	if c.served != nil {
		return c.served.Close()
	}
	return nil
}

// funderBalance is what the devnet's funder key starts with.
func funderBalance() *big.Int { return ether(1000) }

// openETH starts the Ethereum node the config names with funder holding
// funderBalance, and connects to it.
func (n *Net) openETH(ctx context.Context, funder common.Address) (c *ETHChain, err error) {
	c = &ETHChain{Node: n.cfg.ETHNode}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	switch c.Node {
	case ETHEmbedded:
		if c.served, err = eth.NewServed(types.GenesisAlloc{funder: {Balance: funderBalance()}}, eth.ServeConfig{CommitOnSend: true}); err != nil {
			return nil, err
		}
		c.url = c.served.URL()
	case ETHGeth:
		if c.geth, err = gethproc.Start(ctx, gethproc.Config{Bin: n.cfg.Geth, Dir: filepath.Join(n.Dir, "geth")}); err != nil {
			return nil, err
		}
		c.url = c.geth.URL
		// The developer account is prefunded and unlocked in geth's
		// keystore; from here on the devnet signs with its own funder key,
		// exactly as with the embedded chain.
		if _, err := c.geth.Fund(ctx, funder, funderBalance()); err != nil {
			return nil, fmt.Errorf("fund the devnet's funder from geth's developer account: %w", err)
		}
	default:
		return nil, fmt.Errorf("Ethereum node %q: want %s or %s", c.Node, ETHEmbedded, ETHGeth)
	}
	if c.rpc, err = ethclient.DialContext(ctx, c.url); err != nil {
		return nil, err
	}
	c.Client = eth.NewClient(c.rpc)
	if c.ChainID, err = c.Client.ChainID(ctx); err != nil {
		return nil, err
	}
	if c.ChainID.Cmp(eth.SimulatedChainID) != 0 {
		return nil, fmt.Errorf("the %s chain answers chain ID %s, want %s", c.Node, c.ChainID, eth.SimulatedChainID)
	}
	return c, nil
}

// describe is the progress line's name of the node.
func (c *ETHChain) describe() string {
	if c.geth != nil {
		return fmt.Sprintf("geth --dev (%s, process %d, log %s)", c.geth.Version, c.geth.PID(), c.geth.Log)
	}
	return "go-ethereum simulated chain"
}
