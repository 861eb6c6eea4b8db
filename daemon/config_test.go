package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/api/requestid"
	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/pki"
)

// validYAML is a complete config whose TLS files are made by writeTLS.
const validYAML = `node_id: n1
data_dir: data
listen: {raft: "127.0.0.1:7100", tss: "127.0.0.1:7101", rpc: "127.0.0.1:7102", api: "127.0.0.1:7103"}
peers:
  - {id: n2, raft: "127.0.0.1:7110", tss: "127.0.0.1:7111", rpc: "127.0.0.1:7112"}
tls: {ca: ca.pem, cert: node.pem, key: node.key}
hsm: {token_serial: "0001", pin_file: hsm.pin}
genesis: {file: genesis.json, hash: "1111111111111111111111111111111111111111111111111111111111111111"}
chains:
  eth: {rpc: embedded}
  btc: {rpc: "127.0.0.1:18334", user: custody, password_file: btcd.pass, cert_file: btcd-rpc.cert, network: regtest}
`

// writeTLS writes a CA and a node certificate for id into dir, the key
// with keyMode.
func writeTLS(t *testing.T, dir string, id pki.NodeID, keyMode os.FileMode) {
	t.Helper()
	ca, err := pki.NewCA("test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.IssueNode(id, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ca.pem": ca.PEM(), "node.pem": cert} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "node.key"), key, keyMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "node.key"), keyMode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func writeConfig(t *testing.T, dir, yaml string) string {
	t.Helper()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigDefaultsAndPaths(t *testing.T) {
	dir := t.TempDir()
	writeTLS(t, dir, "n1", 0o600)
	c, err := LoadConfig(writeConfig(t, dir, validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != filepath.Join(dir, "data") || c.TLS.Key != filepath.Join(dir, "node.key") || c.Chains.BTC.PasswordFile != filepath.Join(dir, "btcd.pass") {
		t.Errorf("relative names not resolved against the config's directory: %+v", c)
	}
	if c.Ledger.LogStore != "wal" || time.Duration(c.TSS.SessionTimeout) != DefaultTSSSessionTimeout || c.Presign.Enabled {
		t.Errorf("defaults: %+v %+v %+v", c.Ledger, c.TSS, c.Presign)
	}
	if c.Chains.ETH.ChainID != DefaultEmbeddedChainID || c.Chains.ETH.Network != "devnet" {
		t.Errorf("embedded eth defaults: %+v", c.Chains.ETH)
	}
	if c.API.RateLimit != (RateLimit{PerMinute: rest.DefaultRatePerMinute, Burst: rest.DefaultRateBurst}) || time.Duration(c.API.BalanceTimeout) != rest.DefaultBalanceTimeout {
		t.Errorf("api defaults: %+v", c.API)
	}
	c, err = ParseConfig([]byte(validYAML+"api: {rate_limit: {per_minute: 60, burst: 5}, balance_timeout: 1s}\n"), dir)
	if err != nil || c.API.RateLimit != (RateLimit{PerMinute: 60, Burst: 5}) || time.Duration(c.API.BalanceTimeout) != time.Second {
		t.Errorf("api settings: %+v, %v", c, err)
	}
	c, err = ParseConfig([]byte(validYAML), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "info" || c.Log.Format != LogJSON || c.Listen.Metrics != "" {
		t.Errorf("log and metrics defaults: %+v, listen.metrics %q", c.Log, c.Listen.Metrics)
	}
	c, err = ParseConfig([]byte(validYAML+"log: {level: debug, format: text}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if lv, err := c.Log.SlogLevel(); err != nil || lv != slog.LevelDebug || c.Log.Format != LogText {
		t.Errorf("log: %+v (%v, %v)", c.Log, lv, err)
	}
	c, err = ParseConfig([]byte(strings.Replace(validYAML, `api: "127.0.0.1:7103"}`, `api: "127.0.0.1:7103", metrics: "127.0.0.1:7104"}`, 1)), dir)
	if err != nil || c.Listen.Metrics != "127.0.0.1:7104" {
		t.Fatalf("listen.metrics: %v, %+v", err, c)
	}
}

// TestNewLogger: JSON lines by default, slog's text on request, records
// below the level dropped, a logged request ID kept; an unknown format
// refused.
func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, LogJSON, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.InfoContext(requestid.With(context.Background(), "r-9"), "shown", "k", 1)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "shown" || m["request_id"] != "r-9" || strings.Contains(buf.String(), "hidden") {
		t.Fatalf("json log %q (%v)", buf.String(), err)
	}
	buf.Reset()
	log, err = NewLogger(&buf, LogText, slog.LevelDebug)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("plain", "k", "v")
	if !strings.Contains(buf.String(), "msg=plain k=v") {
		t.Fatalf("text log %q", buf.String())
	}
	if _, err := NewLogger(&buf, "xml", slog.LevelInfo); err == nil {
		t.Fatal("format xml accepted")
	}
}

// TestConfigRefusals: every refusal names the YAML path of the problem.
func TestConfigRefusals(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(validYAML, old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return strings.Replace(validYAML, old, new, 1)
	}
	for name, tc := range map[string]struct{ yaml, path string }{
		"unknown top-level key":       {validYAML + "pin: 1234\n", "pin (line 12): unknown field"},
		"unknown nested key":          {validYAML + "ledger: {log_stor: wal}\n", "ledger.log_stor (line 12): unknown field"},
		"bad log store":               {validYAML + "ledger: {log_store: sqlite}\n", "ledger.log_store: \"sqlite\""},
		"missing node_id":             {edit("node_id: n1\n", ""), "node_id: pki: node id"},
		"missing data_dir":            {edit("data_dir: data\n", ""), "data_dir: required"},
		"missing listen.api":          {edit(`, api: "127.0.0.1:7103"`, ""), "listen.api: required"},
		"same address twice":          {edit(`api: "127.0.0.1:7103"`, `api: "127.0.0.1:7100"`), "listen.api: 127.0.0.1:7100 is also listen.raft"},
		"bad port":                    {edit(`"127.0.0.1:7100"`, `"127.0.0.1:70000"`), "listen.raft"},
		"peer is self":                {edit("id: n2", "id: n1"), "peers[0].id"},
		"missing tls key":             {edit(", key: node.key", ""), "tls.key: required"},
		"no token":                    {edit(`token_serial: "0001", `, ""), "hsm: select the token"},
		"a pin in the config":         {edit("pin_file: hsm.pin", "pin: 1234"), "hsm.pin (line 7): unknown field"},
		"missing pin file":            {edit(", pin_file: hsm.pin", ""), "hsm.pin_file: required"},
		"short genesis hash":          {edit(`hash: "1111`, `hash: "111`), "genesis.hash"},
		"eth url without id":          {edit("rpc: embedded", "rpc: http://127.0.0.1:8545, network: dev"), "chains.eth.chain_id"},
		"eth url with password":       {edit("rpc: embedded", "rpc: \"http://u:hunter2@h:1\", chain_id: 1, network: x"), "chains.eth.rpc"},
		"btc network":                 {edit("network: regtest", "network: moon"), "chains.btc.network"},
		"btc without rpc.cert":        {edit("cert_file: btcd-rpc.cert, ", ""), "chains.btc.cert_file: required"},
		"btc plain remote":            {edit(`rpc: "127.0.0.1:18334", `, `rpc: "btcd.internal:8334", no_tls: true, `), "chains.btc.no_tls"},
		"btc plain and cert":          {edit("cert_file: btcd-rpc.cert, ", "cert_file: btcd-rpc.cert, no_tls: true, "), "chains.btc.no_tls: set cert_file or no_tls"},
		"btc fee rate":                {edit("network: regtest}", "network: regtest, fee_rate: 20000}"), "chains.btc.fee_rate"},
		"wrong type":                  {edit("{rpc: embedded}", "{rpc: embedded, chain_id: one}"), "chains.eth.chain_id (line 10): must be an integer"},
		"presign size unasked":        {validYAML + "presign: {pool_size: 3}\n", "presign.pool_size"},
		"null section":                {validYAML + "tss: ~\n", "tss (line 12): must not be null"},
		"bad duration":                {validYAML + "tss: {session_timeout: soon}\n", "tss.session_timeout (line 12): not a duration"},
		"preparams pool too big":      {validYAML + "tss: {preparams_pool: 99}\n", "tss.preparams_pool: must be 1..16"},
		"preparams cache on mainnet":  {edit("network: regtest}", "network: mainnet}") + "tss: {preparams_cache: cache}\n", "tss.preparams_cache: devnet only: chains.btc.network is mainnet"},
		"preparams cache, no chain":   {strings.Replace(validYAML, validYAML[strings.Index(validYAML, "chains:"):], "", 1) + "tss: {preparams_cache: cache}\n", "tss.preparams_cache: devnet only: no chain is configured"},
		"preparams cache, public eth": {edit("{rpc: embedded}", "{rpc: embedded, chain_id: 1}") + "tss: {preparams_cache: cache}\n", "tss.preparams_cache: devnet only: chains.eth.chain_id is 1"},
		"rate limit too high":         {validYAML + "api: {rate_limit: {per_minute: 2000000}}\n", "api.rate_limit.per_minute: must be 1..1000000"},
		"negative burst":              {validYAML + "api: {rate_limit: {burst: -1}}\n", "api.rate_limit.burst"},
		"unknown api key":             {validYAML + "api: {rate: 5}\n", "api.rate (line 12): unknown field"},
		"negative balance bound":      {validYAML + "api: {balance_timeout: -1s}\n", "api.balance_timeout"},
		"metrics on the api":          {edit(`api: "127.0.0.1:7103"}`, `api: "127.0.0.1:7103", metrics: "127.0.0.1:7103"}`), "listen.metrics: 127.0.0.1:7103 is also listen.api"},
		"metrics no port":             {edit(`api: "127.0.0.1:7103"}`, `api: "127.0.0.1:7103", metrics: "127.0.0.1"}`), "listen.metrics"},
		"bad log level":               {validYAML + "log: {level: loud}\n", "log.level"},
		"bad log format":              {validYAML + "log: {format: xml}\n", "log.format"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), "/base")
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("got %v, want an *Error mentioning %q", err, tc.path)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "1234") {
				t.Fatalf("the error repeats a secret: %v", err)
			}
		})
	}
}

func TestLoadConfigTLSChecks(t *testing.T) {
	t.Run("key mode 0644", func(t *testing.T) {
		dir := t.TempDir()
		writeTLS(t, dir, "n1", 0o644)
		_, err := LoadConfig(writeConfig(t, dir, validYAML))
		if err == nil || !strings.Contains(err.Error(), "tls.key") || !strings.Contains(err.Error(), "0644") {
			t.Fatalf("a world-readable key was accepted: %v", err)
		}
	})
	t.Run("key mode 0400 is fine", func(t *testing.T) {
		dir := t.TempDir()
		writeTLS(t, dir, "n1", 0o400)
		if _, err := LoadConfig(writeConfig(t, dir, validYAML)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("certificate of another node", func(t *testing.T) {
		dir := t.TempDir()
		writeTLS(t, dir, "n2", 0o600)
		_, err := LoadConfig(writeConfig(t, dir, validYAML))
		if err == nil || !strings.Contains(err.Error(), `tls.cert: the certificate is node "n2"`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadConfig(writeConfig(t, t.TempDir(), validYAML))
		if err == nil || !strings.Contains(err.Error(), "tls.key") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestCheckDistinct(t *testing.T) {
	parse := func(id, serial, dataDir string) *Config {
		y := strings.NewReplacer("node_id: n1", "node_id: "+id, "id: n2", "id: peer", `token_serial: "0001"`, `token_serial: "`+serial+`"`, "data_dir: data", "data_dir: "+dataDir).Replace(validYAML)
		c, err := ParseConfig([]byte(y), "/srv/custody")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := CheckDistinct(parse("n1", "1", "d1"), parse("n2", "2", "d2"), parse("n3", "3", "/srv/custody/d3")); err != nil {
		t.Fatal(err)
	}
	for name, cs := range map[string][]*Config{
		"same serial":   {parse("n1", "7", "d1"), parse("n2", "7", "d2")},
		"same data dir": {parse("n1", "1", "d1"), parse("n2", "2", "/srv/custody/d1/")},
		"same node":     {parse("n1", "1", "d1"), parse("n1", "2", "d2")},
	} {
		if err := CheckDistinct(cs...); !errors.Is(err, ErrNotDistinct) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestClaimDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n1 := Stamp{NodeID: "n1", TokenSerial: "0001", Format: DataDirFormat}
	if err := ClaimDataDir(dir, n1); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, StampFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stamp: %v %v", st, err)
	}
	if err := ClaimDataDir(dir, n1); err != nil {
		t.Fatalf("the same node again: %v", err)
	}
	for _, other := range []Stamp{{NodeID: "n2", TokenSerial: "0001", Format: DataDirFormat}, {NodeID: "n1", TokenSerial: "0002", Format: DataDirFormat}} {
		err := ClaimDataDir(dir, other)
		if !errors.Is(err, ErrWrongDataDir) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `stamped for node "n1"`) {
			t.Errorf("%+v: %v", other, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, StampFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ClaimDataDir(dir, n1); !errors.Is(err, ErrWrongDataDir) {
		t.Errorf("garbage stamp: %v", err)
	}
	if err := ClaimDataDir(t.TempDir(), Stamp{NodeID: "n1", Format: DataDirFormat}); err == nil {
		t.Error("a stamp without a token serial")
	}
	// A data dir written by another data dir format.
	old := filepath.Join(t.TempDir(), "old")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, StampFile), []byte(`{"node_id":"n1","token_serial":"0001","format":0}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ClaimDataDir(old, n1); !errors.Is(err, ErrIncompatibleDataDir) || !strings.Contains(err.Error(), "format 0") {
		t.Errorf("old data dir format: %v", err)
	}
}
