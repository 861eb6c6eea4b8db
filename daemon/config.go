package daemon

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custody-dev/custody/api/requestid"
	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/strictdoc"
)

// MaxConfigSize bounds a node config file.
const MaxConfigSize = 1 << 20

// Defaults of the optional fields (docs/config.md).
const (
	DefaultTSSSessionTimeout = 2 * time.Minute
	DefaultTSSKeygenTimeout  = 5 * time.Minute
	DefaultPresignPoolSize   = 8
	// EmbeddedETH is the chains.eth.rpc value that runs the embedded
	// simulated chain (devnet and tests only).
	EmbeddedETH = "embedded"
	// DefaultEmbeddedChainID is chains.eth.chain_id for the embedded chain.
	DefaultEmbeddedChainID = 1337
)

// ErrInvalid is wrapped by every error of ParseConfig and LoadConfig.
var ErrInvalid = errors.New("daemon: invalid config")

// Error is a problem at one place of a node config. It wraps ErrInvalid
// and the cause.
type Error struct {
	// Path is the YAML path of the offending value ("ledger.log_store").
	Path string
	// Line is its line in the file, when known.
	Line int
	// Err says what is wrong.
	Err error
}

// Error reads "daemon: config: PATH (line N): what".
func (e *Error) Error() string {
	return "daemon: config: " + (&strictdoc.Error{Path: e.Path, Line: e.Line, Err: e.Err}).Error()
}

// Unwrap returns ErrInvalid and the cause.
func (e *Error) Unwrap() []error { return []error{ErrInvalid, e.Err} }

func fail(path string, format string, args ...any) *Error {
	return &Error{Path: path, Err: fmt.Errorf(format, args...)}
}

// Duration is a time.Duration written as Go duration text ("30s", "2m").
type Duration time.Duration

// MarshalText writes Go duration text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses Go duration text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (e.g. 30s): %q", b)
	}
	*d = Duration(v)
	return nil
}

// Config is one signer node's configuration: strict YAML, every key
// documented in docs/config.md. Relative file names are relative to the
// config file's directory (LoadConfig resolves them). Secrets are never in
// it: the HSM PIN and the btcd password are in files it names.
type Config struct {
	// NodeID is this node's ID: the CN of its node certificate, its raft
	// server ID and tss party. Required.
	NodeID pki.NodeID `json:"node_id" yaml:"node_id"`
	// DataDir holds the ledger, the sealed shares, the high-water mark
	// and the node.id stamp. Required; one node per data dir.
	DataDir string `json:"data_dir" yaml:"data_dir"`
	// Listen are this node's listen addresses. Required.
	Listen Listen `json:"listen" yaml:"listen"`
	// Peers are the other nodes of the cluster and where to reach them.
	Peers []Peer `json:"peers" yaml:"peers,omitempty"`
	// TLS names the cluster CA and this node's certificate and key.
	TLS TLSFiles `json:"tls" yaml:"tls"`
	// HSM selects the node's PKCS#11 token.
	HSM HSM `json:"hsm" yaml:"hsm"`
	// Genesis names the genesis file and pins its hash.
	Genesis GenesisPin `json:"genesis" yaml:"genesis"`
	// Chains configures the chain adapters; each is optional.
	Chains Chains `json:"chains" yaml:"chains,omitempty"`
	// Ledger tunes the raft ledger; every field is optional.
	Ledger Ledger `json:"ledger" yaml:"ledger,omitempty"`
	// TSS tunes the threshold engine; optional.
	TSS TSS `json:"tss" yaml:"tss,omitempty"`
	// Presign configures the presignature pool; off by default.
	Presign Presign `json:"presign" yaml:"presign,omitempty"`
	// Broadcast configures sending signed transactions and tracking them.
	Broadcast Broadcast `json:"broadcast" yaml:"broadcast,omitempty"`
	// API tunes the HTTPS API on listen.api; optional.
	API API `json:"api" yaml:"api,omitempty"`
	// Webhooks configures the delivery of withdrawals' status changes to
	// their backend principals (docs/api.md); every node carries the same
	// section, only the leader delivers.
	Webhooks Webhooks `json:"webhooks" yaml:"webhooks,omitempty"`
	// Log sets the node's log level and format (`node run`).
	Log Log `json:"log" yaml:"log,omitempty"`
}

// API tunes the HTTPS API (docs/api.md).
type API struct {
	// RateLimit bounds each principal's requests to this node.
	RateLimit RateLimit `json:"rate_limit" yaml:"rate_limit,omitempty"`
	// BalanceTimeout bounds the chain reads of one wallets request
	// (default rest.DefaultBalanceTimeout).
	BalanceTimeout Duration `json:"balance_timeout,omitempty" yaml:"balance_timeout,omitempty"`
}

// RateLimit is a token bucket per principal: Burst requests at once,
// refilled at PerMinute a minute (defaults rest.DefaultRatePerMinute,
// rest.DefaultRateBurst).
type RateLimit struct {
	PerMinute int `json:"per_minute,omitempty" yaml:"per_minute,omitempty"`
	Burst     int `json:"burst,omitempty" yaml:"burst,omitempty"`
}

// Webhooks are the backend principals' webhook endpoints and the delivery
// limits (package api/webhook).
type Webhooks struct {
	Endpoints []WebhookEndpoint `json:"endpoints,omitempty" yaml:"endpoints,omitempty"`
	// Timeout bounds one HTTP attempt (default 10s).
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// MaxAttempts and MaxAge bound the retries of one event (default 12
	// attempts, 24h from the change); then it is recorded as failed and
	// the withdrawal's next event follows.
	MaxAttempts int      `json:"max_attempts,omitempty" yaml:"max_attempts,omitempty"`
	MaxAge      Duration `json:"max_age,omitempty" yaml:"max_age,omitempty"`
	// BackoffMin and BackoffMax shape the pause between attempts: full
	// jitter up to min(backoff_max, backoff_min·2^(n-1)) (default 1s, 10m).
	BackoffMin Duration `json:"backoff_min,omitempty" yaml:"backoff_min,omitempty"`
	BackoffMax Duration `json:"backoff_max,omitempty" yaml:"backoff_max,omitempty"`
	// Concurrency bounds the requests in flight per endpoint (default 4).
	Concurrency int `json:"concurrency,omitempty" yaml:"concurrency,omitempty"`
}

// WebhookEndpoint is one backend principal's receiver. The secret is in
// a file (mode 0600 or 0400); there is no field for the secret itself.
type WebhookEndpoint struct {
	// Principal is a backend principal of the genesis (kind backend).
	Principal string `json:"principal" yaml:"principal"`
	// URL is https://...; http:// only with AllowHTTP to a loopback host.
	URL string `json:"url" yaml:"url"`
	// SecretFile holds the HMAC secret: at least 32 bytes, one trailing
	// newline ignored.
	SecretFile string `json:"secret_file" yaml:"secret_file"`
	// CAFile (PEM) verifies the receiver's certificate instead of the
	// system roots.
	CAFile string `json:"ca_file,omitempty" yaml:"ca_file,omitempty"`
	// AllowHTTP permits a plain http:// URL to a loopback host (a
	// receiver on this machine, development only).
	AllowHTTP bool `json:"allow_http,omitempty" yaml:"allow_http,omitempty"`
}

// Log is the node's logging: slog records on stderr, JSON by default.
type Log struct {
	// Level is debug, info (the default), warn or error.
	Level string `json:"level,omitempty" yaml:"level,omitempty"`
	// Format is json (the default: one JSON object per line) or text
	// (slog's key=value lines, for a person at a terminal).
	Format string `json:"format,omitempty" yaml:"format,omitempty"`
}

// Log formats.
const (
	LogJSON = "json"
	LogText = "text"
)

// SlogLevel is Level as a slog.Level.
func (l Log) SlogLevel() (slog.Level, error) {
	var v slog.Level
	if err := v.UnmarshalText([]byte(l.Level)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", l.Level)
	}
	return v, nil
}

// NewLogger returns the logger `node run` gives the node: records at
// level and above, written to w as JSON lines or text, each with its
// request ID when logged with a request's context (requestid.Handler).
func NewLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case LogJSON:
		return slog.New(requestid.Handler(slog.NewJSONHandler(w, opts))), nil
	case LogText:
		return slog.New(requestid.Handler(slog.NewTextHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("daemon: log format %q: want %q or %q", format, LogJSON, LogText)
}

// Broadcast says which signed transactions the leader sends to the chain
// and how deep it waits before it records them confirmed.
type Broadcast struct {
	// SkipWallets are wallets whose signed transactions the leader does
	// not send (the backend takes the raw transaction and sends it); the
	// leader still tracks them once someone recorded a broadcast.
	SkipWallets []string `json:"skip_wallets,omitempty" yaml:"skip_wallets,omitempty"`
	// Confirmations is how many blocks deep a transaction must be before
	// it is recorded confirmed (default 3).
	Confirmations int `json:"confirmations,omitempty" yaml:"confirmations,omitempty"`
}

// DefaultConfirmations is broadcast.confirmations' default.
const DefaultConfirmations = 3

// Listen are a node's listen addresses, each host:port.
type Listen struct {
	Raft string `json:"raft" yaml:"raft"`
	TSS  string `json:"tss" yaml:"tss"`
	RPC  string `json:"rpc" yaml:"rpc"`
	API  string `json:"api" yaml:"api"`
	// Metrics is where /metrics, /healthz and /readyz are served over
	// plain HTTP (no TLS, no authentication): bind it to loopback or an
	// internal interface. Empty: not served.
	Metrics string `json:"metrics,omitempty" yaml:"metrics,omitempty"`
}

// Peer is another node: its ID and its raft, tss and node-RPC addresses.
type Peer struct {
	ID   pki.NodeID `json:"id" yaml:"id"`
	Raft string     `json:"raft" yaml:"raft"`
	TSS  string     `json:"tss" yaml:"tss"`
	RPC  string     `json:"rpc" yaml:"rpc"`
}

// TLSFiles are PEM files: the cluster CA certificate, this node's
// certificate and its private key (mode 0600 or stricter) — or, with
// KeyLabel, no key file: the node key is a P-256 key inside the node's HSM
// token (`custody hsm keygen --curve p256`), used for TLS and for every
// signature the node makes with its node key.
type TLSFiles struct {
	CA   string `json:"ca" yaml:"ca"`
	Cert string `json:"cert" yaml:"cert"`
	Key  string `json:"key,omitempty" yaml:"key,omitempty"`
	// KeyLabel is the label of the node key in the HSM token; set either
	// it or Key.
	KeyLabel string `json:"key_label,omitempty" yaml:"key_label,omitempty"`
}

// HSM selects a PKCS#11 token (by serial, label or both) and names the
// file holding its user PIN. There is deliberately no field for the PIN.
type HSM struct {
	// Module is the PKCS#11 library; empty means libsofthsm2.so found on
	// this system (development only).
	Module      string `json:"module,omitempty" yaml:"module,omitempty"`
	TokenLabel  string `json:"token_label,omitempty" yaml:"token_label,omitempty"`
	TokenSerial string `json:"token_serial,omitempty" yaml:"token_serial,omitempty"`
	PINFile     string `json:"pin_file" yaml:"pin_file"`
}

// GenesisPin names the genesis file and the hash the node pins; the node
// refuses to start unless the file hashes to it.
type GenesisPin struct {
	File string `json:"file" yaml:"file"`
	Hash string `json:"hash" yaml:"hash"`
}

// Chains are the chain adapters; a missing section means no such chain.
type Chains struct {
	ETH *ETH `json:"eth,omitempty" yaml:"eth,omitempty"`
	BTC *BTC `json:"btc,omitempty" yaml:"btc,omitempty"`
}

// ETH configures the Ethereum adapter.
type ETH struct {
	// RPC is a JSON-RPC URL (http, https, ws, wss) or "embedded" for the
	// in-process simulated chain (devnet).
	RPC string `json:"rpc" yaml:"rpc"`
	// ChainID is required with a URL; embedded defaults to 1337.
	ChainID int64 `json:"chain_id,omitempty" yaml:"chain_id,omitempty"`
	// Network is a name for people and logs ("mainnet", "sepolia");
	// required with a URL, "devnet" for embedded.
	Network string `json:"network,omitempty" yaml:"network,omitempty"`
	// Tokens are the ERC-20 tokens the node handles.
	Tokens []Token `json:"tokens,omitempty" yaml:"tokens,omitempty"`
}

// Token is an ERC-20 token.
type Token struct {
	Symbol   string `json:"symbol" yaml:"symbol"`
	Contract string `json:"contract" yaml:"contract"`
	Decimals int    `json:"decimals" yaml:"decimals"`
}

// BTC configures the Bitcoin adapter (a btcd JSON-RPC endpoint).
type BTC struct {
	// RPC is the btcd RPC address: host:port or an http(s) URL.
	RPC  string `json:"rpc" yaml:"rpc"`
	User string `json:"user" yaml:"user"`
	// PasswordFile holds the RPC password; there is no password field.
	PasswordFile string `json:"password_file" yaml:"password_file"`
	// Network is mainnet, testnet3, signet, regtest or simnet (also the
	// ledger's network name of the node's Bitcoin wallets).
	Network string `json:"network" yaml:"network"`
	// CertFile is btcd's rpc.cert (PEM); required unless NoTLS.
	CertFile string `json:"cert_file,omitempty" yaml:"cert_file,omitempty"`
	// NoTLS talks plain HTTP to btcd: only to a loopback address (a btcd
	// started with --notls on this machine).
	NoTLS bool `json:"no_tls,omitempty" yaml:"no_tls,omitempty"`
	// FeeRate is the fee rate (sat/vB) of withdrawals that name none
	// (default 10); policy's max_fee and max_fee_rate cap what is paid.
	FeeRate int64 `json:"fee_rate,omitempty" yaml:"fee_rate,omitempty"`
	// MinConf is how many confirmations an output needs before the leader
	// spends it (default 1).
	MinConf int64 `json:"min_conf,omitempty" yaml:"min_conf,omitempty"`
}

// Defaults of chains.btc.
const (
	DefaultBTCFeeRate = 10
	DefaultBTCMinConf = 1
)

// Ledger tunes the raft ledger; zero values take the ledger's defaults.
type Ledger struct {
	// LogStore is "wal" (the default) or "boltdb"; a data dir made with
	// one is refused with the other.
	LogStore           ledger.LogStore `json:"log_store,omitempty" yaml:"log_store,omitempty"`
	HeartbeatTimeout   Duration        `json:"heartbeat_timeout,omitempty" yaml:"heartbeat_timeout,omitempty"`
	ElectionTimeout    Duration        `json:"election_timeout,omitempty" yaml:"election_timeout,omitempty"`
	LeaderLeaseTimeout Duration        `json:"leader_lease_timeout,omitempty" yaml:"leader_lease_timeout,omitempty"`
	ApplyTimeout       Duration        `json:"apply_timeout,omitempty" yaml:"apply_timeout,omitempty"`
}

// TSS tunes the threshold engine.
type TSS struct {
	// SessionTimeout bounds one signing session (default 2m): after it a
	// new leader fails a claim without a result and re-claims it.
	SessionTimeout Duration `json:"session_timeout,omitempty" yaml:"session_timeout,omitempty"`
	// KeygenTimeout bounds one keygen or reshare attempt, pre-params
	// included (default 5m): far slower than a signature.
	KeygenTimeout Duration `json:"keygen_timeout,omitempty" yaml:"keygen_timeout,omitempty"`
	// PreParamsPool is how many sets of tss pre-params the node keeps ready
	// for keygens (default 2; each takes tens of seconds of CPU to make).
	PreParamsPool int `json:"preparams_pool,omitempty" yaml:"preparams_pool,omitempty"`
	// PreParamsCache is a directory of cached pre-params (devnet only:
	// refused unless every chain is a local development chain). The node
	// takes sets from it before generating its own and returns its unused
	// sets to it at shutdown; each set is used once.
	PreParamsCache string `json:"preparams_cache,omitempty" yaml:"preparams_cache,omitempty"`
}

// Presign configures the presignature pool (docs/presign.md).
type Presign struct {
	// Enabled turns the pool on; off by default.
	Enabled bool `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	// PoolSize is how many presignatures to keep per wallet (default 8
	// when enabled).
	PoolSize int `json:"pool_size,omitempty" yaml:"pool_size,omitempty"`
}

// ParseConfig reads a node config strictly (unknown keys, duplicate keys,
// aliases, nulls, wrong types refused), fills in the defaults, resolves
// relative file names against base (the config file's directory) and
// validates every field. It reads no file; LoadConfig does. Every error is
// an *Error naming the YAML path.
func ParseConfig(b []byte, base string) (*Config, error) {
	if len(b) > MaxConfigSize {
		return nil, &Error{Err: fmt.Errorf("larger than %d bytes", MaxConfigSize)}
	}
	c := new(Config)
	if err := strictdoc.DecodeYAML(b, c); err != nil {
		var e *strictdoc.Error
		if errors.As(err, &e) {
			return nil, &Error{Path: e.Path, Line: e.Line, Err: e.Err}
		}
		return nil, &Error{Err: err}
	}
	c.defaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.resolve(base)
	return c, nil
}

// LoadConfig reads the node config at path (ParseConfig, relative file
// names against its directory) and checks the TLS files it names: the
// CA, certificate and key load as one identity, the certificate is a node
// certificate for node_id, and the key file is readable by its owner only
// (mode 0600 or 0400; anything else is refused). The genesis file is
// checked by LoadGenesis.
func LoadConfig(path string) (*Config, error) {
	b, err := readBounded(path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("daemon: config: %w", err)
	}
	c, err := ParseConfig(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.checkTLS(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// readBounded reads a file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b, nil
}

func (c *Config) defaults() {
	if c.Ledger.LogStore == "" {
		c.Ledger.LogStore = ledger.DefaultLogStore
	}
	if c.TSS.SessionTimeout == 0 {
		c.TSS.SessionTimeout = Duration(DefaultTSSSessionTimeout)
	}
	if c.TSS.KeygenTimeout == 0 {
		c.TSS.KeygenTimeout = Duration(DefaultTSSKeygenTimeout)
	}
	if c.TSS.PreParamsPool == 0 {
		c.TSS.PreParamsPool = DefaultPreParamsPool
	}
	if c.Broadcast.Confirmations == 0 {
		c.Broadcast.Confirmations = DefaultConfirmations
	}
	if c.API.RateLimit.PerMinute == 0 {
		c.API.RateLimit.PerMinute = rest.DefaultRatePerMinute
	}
	if c.API.RateLimit.Burst == 0 {
		c.API.RateLimit.Burst = rest.DefaultRateBurst
	}
	if c.API.BalanceTimeout == 0 {
		c.API.BalanceTimeout = Duration(rest.DefaultBalanceTimeout)
	}
	c.Webhooks.defaults()
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = LogJSON
	}
	if c.Presign.Enabled && c.Presign.PoolSize == 0 {
		c.Presign.PoolSize = DefaultPresignPoolSize
	}
	if b := c.Chains.BTC; b != nil {
		if b.FeeRate == 0 {
			b.FeeRate = DefaultBTCFeeRate
		}
		if b.MinConf == 0 {
			b.MinConf = DefaultBTCMinConf
		}
	}
	if e := c.Chains.ETH; e != nil && e.RPC == EmbeddedETH {
		if e.ChainID == 0 {
			e.ChainID = DefaultEmbeddedChainID
		}
		if e.Network == "" {
			e.Network = "devnet"
		}
	}
}

// resolve makes relative file names relative to base.
func (c *Config) resolve(base string) {
	for _, p := range []*string{&c.DataDir, &c.TLS.CA, &c.TLS.Cert, &c.TLS.Key, &c.HSM.PINFile, &c.Genesis.File, &c.TSS.PreParamsCache} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for i := range c.Webhooks.Endpoints {
		e := &c.Webhooks.Endpoints[i]
		for _, p := range []*string{&e.SecretFile, &e.CAFile} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(base, *p)
			}
		}
	}
	if b := c.Chains.BTC; b != nil {
		for _, p := range []*string{&b.PasswordFile, &b.CertFile} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(base, *p)
			}
		}
	}
	c.DataDir = filepath.Clean(c.DataDir)
}

func (c *Config) validate() error {
	if err := c.NodeID.Validate(); err != nil {
		return fail("node_id", "%v", err)
	}
	if c.DataDir == "" {
		return fail("data_dir", "required: the node's data directory")
	}
	own := map[string]string{}
	for _, a := range []struct{ key, addr string }{
		{"listen.raft", c.Listen.Raft}, {"listen.tss", c.Listen.TSS},
		{"listen.rpc", c.Listen.RPC}, {"listen.api", c.Listen.API},
	} {
		if err := hostPort(a.addr); err != nil {
			return fail(a.key, "%v", err)
		}
		if prev, dup := own[a.addr]; dup {
			return fail(a.key, "%s is also %s", a.addr, prev)
		}
		own[a.addr] = a.key
	}
	if m := c.Listen.Metrics; m != "" {
		if err := hostPort(m); err != nil {
			return fail("listen.metrics", "%v (or leave it out: no metrics listener)", err)
		}
		if prev, dup := own[m]; dup {
			return fail("listen.metrics", "%s is also %s", m, prev)
		}
	}
	if _, err := c.Log.SlogLevel(); err != nil {
		return fail("log.level", "%v", err)
	}
	if c.Log.Format != LogJSON && c.Log.Format != LogText {
		return fail("log.format", "%q: want %q or %q", c.Log.Format, LogJSON, LogText)
	}
	seen := map[pki.NodeID]bool{c.NodeID: true}
	for i, p := range c.Peers {
		at := fmt.Sprintf("peers[%d]", i)
		if err := p.ID.Validate(); err != nil {
			return fail(at+".id", "%v", err)
		}
		if seen[p.ID] {
			if p.ID == c.NodeID {
				return fail(at+".id", "%q is this node (node_id)", p.ID)
			}
			return fail(at+".id", "duplicate peer %q", p.ID)
		}
		seen[p.ID] = true
		for _, a := range []struct{ key, addr string }{{"raft", p.Raft}, {"tss", p.TSS}, {"rpc", p.RPC}} {
			if err := hostPort(a.addr); err != nil {
				return fail(at+"."+a.key, "%v", err)
			}
		}
	}
	for _, f := range []struct{ key, v string }{{"tls.ca", c.TLS.CA}, {"tls.cert", c.TLS.Cert}} {
		if f.v == "" {
			return fail(f.key, "required: a PEM file")
		}
	}
	switch {
	case c.TLS.Key == "" && c.TLS.KeyLabel == "":
		return fail("tls.key", "required: the node key's PEM file, or tls.key_label for a key in the HSM token")
	case c.TLS.Key != "" && c.TLS.KeyLabel != "":
		return fail("tls.key_label", "set tls.key or tls.key_label, not both")
	}
	if c.HSM.TokenLabel == "" && c.HSM.TokenSerial == "" {
		return fail("hsm", "select the token with token_serial (preferred) or token_label")
	}
	if c.HSM.PINFile == "" {
		return fail("hsm.pin_file", "required: the file holding the token's user PIN (the PIN itself never goes in the config)")
	}
	if c.Genesis.File == "" {
		return fail("genesis.file", "required: the genesis file")
	}
	if b, err := hex.DecodeString(c.Genesis.Hash); err != nil || len(b) != 32 || strings.ToLower(c.Genesis.Hash) != c.Genesis.Hash {
		return fail("genesis.hash", "must be the genesis hash: 64 lowercase hex digits (custody genesis create prints it)")
	}
	if err := c.Chains.validate(); err != nil {
		return err
	}
	switch c.Ledger.LogStore {
	case ledger.LogStoreWAL, ledger.LogStoreBoltDB:
	default:
		return fail("ledger.log_store", "%q: want %q or %q", c.Ledger.LogStore, ledger.LogStoreWAL, ledger.LogStoreBoltDB)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"ledger.heartbeat_timeout", c.Ledger.HeartbeatTimeout}, {"ledger.election_timeout", c.Ledger.ElectionTimeout},
		{"ledger.leader_lease_timeout", c.Ledger.LeaderLeaseTimeout}, {"ledger.apply_timeout", c.Ledger.ApplyTimeout},
		{"tss.session_timeout", c.TSS.SessionTimeout}, {"tss.keygen_timeout", c.TSS.KeygenTimeout}, {"api.balance_timeout", c.API.BalanceTimeout},
	} {
		if d.v < 0 {
			return fail(d.key, "must not be negative")
		}
	}
	if c.TSS.PreParamsPool < 1 || c.TSS.PreParamsPool > 16 {
		return fail("tss.preparams_pool", "must be 1..16")
	}
	if c.TSS.PreParamsCache != "" {
		if err := c.Chains.devChainsOnly(); err != nil {
			return fail("tss.preparams_cache", "devnet only: %v (cached pre-params sit in plain files)", err)
		}
	}
	if c.Presign.PoolSize < 0 || c.Presign.PoolSize > 1024 {
		return fail("presign.pool_size", "must be 1..1024")
	}
	if c.API.RateLimit.PerMinute < 1 || c.API.RateLimit.PerMinute > 1_000_000 {
		return fail("api.rate_limit.per_minute", "must be 1..1000000")
	}
	if c.API.RateLimit.Burst < 1 || c.API.RateLimit.Burst > 100_000 {
		return fail("api.rate_limit.burst", "must be 1..100000")
	}
	if c.Broadcast.Confirmations < 1 || c.Broadcast.Confirmations > 1000 {
		return fail("broadcast.confirmations", "must be 1..1000")
	}
	for i, w := range c.Broadcast.SkipWallets {
		if w == "" || slices.Contains(c.Broadcast.SkipWallets[:i], w) {
			return fail(fmt.Sprintf("broadcast.skip_wallets[%d]", i), "empty or repeated wallet ID")
		}
	}
	if !c.Presign.Enabled && c.Presign.PoolSize != 0 {
		return fail("presign.pool_size", "set only with presign.enabled: true")
	}
	return c.Webhooks.validate()
}

// BTCNetworks are the values of chains.btc.network.
var BTCNetworks = []string{"mainnet", "testnet3", "signet", "regtest", "simnet"}

// devChainsOnly reports why the chains are not all local development
// chains: Ethereum with the devnet chain ID (a signature for it is not valid
// on any public network) and Bitcoin on regtest or simnet.
func (ch *Chains) devChainsOnly() error {
	if ch.ETH == nil && ch.BTC == nil {
		return errors.New("no chain is configured, so none shows this is a devnet")
	}
	if e := ch.ETH; e != nil && e.ChainID != DefaultEmbeddedChainID {
		return fmt.Errorf("chains.eth.chain_id is %d, not the devnet's %d", e.ChainID, DefaultEmbeddedChainID)
	}
	if b := ch.BTC; b != nil && b.Network != "regtest" && b.Network != "simnet" {
		return fmt.Errorf("chains.btc.network is %s, not regtest or simnet", b.Network)
	}
	return nil
}

func (ch *Chains) validate() error {
	if e := ch.ETH; e != nil {
		if e.RPC != EmbeddedETH {
			if err := rpcURL(e.RPC, "http", "https", "ws", "wss"); err != nil {
				return fail("chains.eth.rpc", "%v (or %q for the embedded devnet chain)", err, EmbeddedETH)
			}
			if e.Network == "" {
				return fail("chains.eth.network", "required with a JSON-RPC URL (e.g. mainnet, sepolia)")
			}
		}
		if e.ChainID <= 0 {
			return fail("chains.eth.chain_id", "required: a positive chain ID")
		}
		symbols := map[string]bool{}
		for i, t := range e.Tokens {
			at := fmt.Sprintf("chains.eth.tokens[%d]", i)
			if t.Symbol == "" || len(t.Symbol) > 16 || symbols[t.Symbol] {
				return fail(at+".symbol", "required, at most 16 characters, unique")
			}
			symbols[t.Symbol] = true
			if b, err := hex.DecodeString(strings.TrimPrefix(t.Contract, "0x")); err != nil || len(b) != 20 || !strings.HasPrefix(t.Contract, "0x") {
				return fail(at+".contract", "must be a 0x-prefixed 20-byte hex address")
			}
			if t.Decimals < 0 || t.Decimals > 36 {
				return fail(at+".decimals", "must be 0..36")
			}
		}
	}
	if b := ch.BTC; b != nil {
		if err := hostPort(b.RPC); err != nil {
			if uerr := rpcURL(b.RPC, "http", "https"); uerr != nil {
				return fail("chains.btc.rpc", "want host:port or an http(s) URL: %v", err)
			}
		}
		if b.User == "" {
			return fail("chains.btc.user", "required: the btcd RPC user")
		}
		if b.PasswordFile == "" {
			return fail("chains.btc.password_file", "required: the file holding the btcd RPC password")
		}
		if !slices.Contains(BTCNetworks, b.Network) {
			return fail("chains.btc.network", "%q: want one of %s", b.Network, strings.Join(BTCNetworks, ", "))
		}
		switch {
		case b.NoTLS && b.CertFile != "":
			return fail("chains.btc.no_tls", "set cert_file or no_tls, not both")
		case !b.NoTLS && b.CertFile == "":
			return fail("chains.btc.cert_file", "required: btcd's rpc.cert (or no_tls: true for a btcd on this machine)")
		case b.NoTLS && !loopback(b.RPC):
			return fail("chains.btc.no_tls", "plain HTTP is allowed to a loopback address only, not %q", b.RPC)
		}
		if b.FeeRate < 0 || b.FeeRate > 10_000 {
			return fail("chains.btc.fee_rate", "must be 1..10000 sat/vB")
		}
		if b.MinConf < 0 {
			return fail("chains.btc.min_conf", "must not be negative")
		}
	}
	return nil
}

// hostPort checks a listen or dial address: host:port with a port 1..65535.
func hostPort(addr string) error {
	if addr == "" {
		return errors.New("required: host:port")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("%q: port must be 1..65535", addr)
	}
	return nil
}

// rpcURL checks an RPC endpoint URL of one of schemes. A URL with a
// password in it is refused: secrets are never in the config.
func rpcURL(s string, schemes ...string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("want a %s URL", strings.Join(schemes, "/"))
	}
	if _, hasPass := u.User.Password(); hasPass {
		return errors.New("the URL holds a password; put secrets in files, not the config")
	}
	return nil
}

// Identity loads the node's TLS identity from the files (a config with
// tls.key_label needs the HSM key: IdentityWith).
func (c *Config) Identity() (pki.Identity, error) {
	if c.TLS.KeyLabel != "" {
		return pki.Identity{}, fail("tls.key_label", "the node key is in the HSM token: the node opens it at start")
	}
	var files [3][]byte
	for i, f := range []struct{ key, path string }{{"tls.ca", c.TLS.CA}, {"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}} {
		var err error
		if files[i], err = readBounded(f.path, 1<<20); err != nil {
			return pki.Identity{}, fail(f.key, "%v", err)
		}
	}
	id, err := pki.LoadIdentity(files[1], files[2], files[0])
	if err != nil {
		// LoadIdentity's errors say "key pair" or "CA" and never hold key
		// material.
		return pki.Identity{}, fail("tls", "%v", err)
	}
	return id, nil
}

// IdentityWith builds the node's TLS identity from its certificate and CA
// files and key, a signer whose public key must be the certificate's (the
// node key in the HSM token).
func (c *Config) IdentityWith(key crypto.Signer) (pki.Identity, error) {
	leaf, pool, err := c.certAndCA()
	if err != nil {
		return pki.Identity{}, err
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return pki.Identity{}, fail("tls.key_label", "the key %q in the HSM token is not the key of tls.cert", c.TLS.KeyLabel)
	}
	return pki.Identity{Cert: tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, CA: pool}, nil
}

// certAndCA reads the certificate and the CA pool.
func (c *Config) certAndCA() (*x509.Certificate, *x509.CertPool, error) {
	caPEM, err := readBounded(c.TLS.CA, 1<<20)
	if err != nil {
		return nil, nil, fail("tls.ca", "%v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fail("tls.ca", "%s holds no certificate", c.TLS.CA)
	}
	certPEM, err := readBounded(c.TLS.Cert, 1<<20)
	if err != nil {
		return nil, nil, fail("tls.cert", "%v", err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fail("tls.cert", "%s holds no certificate", c.TLS.Cert)
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fail("tls.cert", "%v", err)
	}
	return leaf, pool, nil
}

// checkTLS loads the TLS files: they form one identity, the certificate is
// this node's, the key file is its owner's only.
func (c *Config) checkTLS() error {
	if c.TLS.KeyLabel == "" {
		if err := ownerOnly(c.TLS.Key, "a private key"); err != nil {
			return fail("tls.key", "%v", err)
		}
		if _, err := c.Identity(); err != nil {
			return err
		}
	}
	leaf, pool, err := c.certAndCA()
	if err != nil {
		return err
	}
	id := pki.Identity{CA: pool}
	node, err := pki.NodeCertificate(leaf)
	if err != nil {
		return fail("tls.cert", "%v", err)
	}
	if node != c.NodeID {
		return fail("tls.cert", "the certificate is node %q, this config is node %q", node, c.NodeID)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: id.CA, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fail("tls.cert", "not issued by tls.ca: %v", err)
	}
	return nil
}

// ownerOnly checks that path is a regular file readable by its owner only
// (what holds a secret: a key file, a webhook secret).
func ownerOnly(path, what string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: %s must be readable by its owner only (chmod 600)", path, perm, what)
	}
	return nil
}

// loopback reports whether a host:port or URL names a loopback host.
func loopback(addr string) bool {
	host := addr
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		host = u.Host
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
