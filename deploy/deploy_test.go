package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/daemon"
)

const unitFile = "systemd/custody-node.service"

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

// parseUnit reads the subset of systemd's syntax the deploy units use:
// sections, Key=Value lines, comments, no line continuations.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			continue
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: line continuations are not used here", path, n)
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not Key=Value in a section: %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// one is the single value of key, failing when it is absent or repeated.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	vs, ok := u[section][key]
	if !ok {
		t.Fatalf("[%s] %s= is missing", section, key)
	}
	if len(vs) != 1 {
		t.Fatalf("[%s] %s= is set %d times: %q", section, key, len(vs), vs)
	}
	return vs[0]
}

// TestNodeUnitHardening: the node's unit carries every hardening directive
// the deployment relies on, with the values the runbook explains.
func TestNodeUnitHardening(t *testing.T) {
	u := parseUnit(t, unitFile)
	s := "Service"
	for key, want := range map[string]string{
		"User":                    "custody",
		"Group":                   "custody",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ReadWritePaths":          "/var/lib/custody",
		"PrivateTmp":              "yes",
		"PrivateMounts":           "yes",
		"ProtectHome":             "yes",
		"PrivateDevices":          "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"SystemCallArchitectures": "native",
		"MemoryDenyWriteExecute":  "yes",
		"LockPersonality":         "yes",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"RestrictSUIDSGID":        "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"UMask":                   "0077",
		"LimitCORE":               "0",
		"KillSignal":              "SIGTERM",
		"Restart":                 "on-failure",
	} {
		if got := u.one(t, s, key); got != want {
			t.Errorf("[Service] %s=%s, want %q", key, got, want)
		}
	}
	if got := u[s]["SystemCallFilter"]; !slices.Contains(got, "@system-service") || !slices.Contains(got, "~@privileged @resources") {
		t.Errorf("SystemCallFilter=%q: want @system-service, then ~@privileged @resources", got)
	}

	// A node that stopped on its own decision (exit 1: refused start,
	// its HSM token another node's) must not restart in a loop; crashes
	// restart, at a bounded rate.
	if got := strings.Fields(u.one(t, s, "RestartPreventExitStatus")); !slices.Contains(got, "1") {
		t.Errorf("RestartPreventExitStatus=%q must hold 1 (every refusal of custody node run)", got)
	}
	if u.one(t, s, "RestartSec") == "" || u.one(t, "Unit", "StartLimitBurst") == "" || u.one(t, "Unit", "StartLimitIntervalSec") == "" {
		t.Error("restarts need RestartSec= and a start limit")
	}

	// The stop timeout outlasts the drain the node is given.
	exec := u.one(t, s, "ExecStart")
	m := regexp.MustCompile(`--drain (\S+)`).FindStringSubmatch(exec)
	if m == nil {
		t.Fatalf("ExecStart=%s: name --drain explicitly, so TimeoutStopSec can be checked against it", exec)
	}
	drain, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	stop := u.one(t, s, "TimeoutStopSec")
	stopD, err := time.ParseDuration(strings.ReplaceAll(stop, "min", "m"))
	if err != nil {
		t.Fatalf("TimeoutStopSec=%s: %v", stop, err)
	}
	if stopD < drain+30*time.Second {
		t.Errorf("TimeoutStopSec=%s leaves less than 30s after --drain %s for the close", stop, drain)
	}

	// The secrets come as credentials, and the config is one of them so
	// that its relative names resolve into the credentials directory.
	if !strings.HasPrefix(exec, "/usr/local/bin/custody node run --config ${CREDENTIALS_DIRECTORY}/config.yaml ") {
		t.Errorf("ExecStart=%s: want the config from the credentials directory", exec)
	}
	creds := map[string]string{}
	for _, lc := range u[s]["LoadCredential"] {
		id, path, ok := strings.Cut(lc, ":")
		if !ok || !filepath.IsAbs(path) {
			t.Errorf("LoadCredential=%s: want ID:/absolute/path", lc)
		}
		creds[id] = path
	}
	for id, path := range map[string]string{
		"config.yaml": "/etc/custody/config.yaml",
		"hsm.pin":     "/etc/custody/credentials/hsm.pin",
		"btcd.pass":   "/etc/custody/credentials/btcd.pass",
	} {
		if creds[id] != path {
			t.Errorf("LoadCredential %s: %q, want %q", id, creds[id], path)
		}
	}
}

// TestNodeUnitSysusers: the unit's user is the one sysusers.d creates, and
// tmpfiles.d creates the writable data dir for it with mode 0700.
func TestNodeUnitSysusers(t *testing.T) {
	u := parseUnit(t, unitFile)
	b, err := os.ReadFile("systemd/custody.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^u custody - "[^"]+" /var/lib/custody /usr/sbin/nologin$`).Match(b) {
		t.Errorf("custody.sysusers does not create the system user custody:\n%s", b)
	}
	if u.one(t, "Service", "User") != "custody" {
		t.Error("the unit does not run as custody")
	}
	tf, err := os.ReadFile("systemd/custody.tmpfiles")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"d /var/lib/custody          0700 custody custody -",
		"d /etc/custody/credentials  0700 root    root    -",
	} {
		if !bytes.Contains(tf, []byte(want)) {
			t.Errorf("custody.tmpfiles lacks %q", want)
		}
	}
}

// TestNodeUnitSystemdAnalyze: where systemd-analyze exists, the unit
// verifies without a single warning and its exposure score stays at or
// below 1.2 (systemd-analyze security --offline).
func TestNodeUnitSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit was not verified by systemd here")
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's binary exists: point it at an
	// executable that does (this test binary).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "custody-node.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte("/usr/local/bin/custody"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", "--threshold=12", path).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "nrecognized option") || strings.Contains(string(out), "unknown option") {
			t.Skipf("this systemd-analyze has no offline security check: %s", out)
		}
		t.Errorf("systemd-analyze security: exposure above 1.2 (%v):\n%s", err, out)
	}
}

// exampleConfigs are every node config under deploy/.
func exampleConfigs(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "config.yaml" {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 3 {
		t.Fatalf("found %d node configs under deploy/, want the three-node example at least", len(out))
	}
	return out
}

// TestExampleConfigs: every node config under deploy/ is valid
// (daemon.ParseConfig), and fits the unit: its data dir is the unit's only
// writable path, its secrets are the unit's credentials by relative name,
// every other file is absolute. The three-node example's peers are exactly
// the other nodes' listen addresses.
func TestExampleConfigs(t *testing.T) {
	u := parseUnit(t, unitFile)
	creds := map[string]bool{}
	for _, lc := range u["Service"]["LoadCredential"] {
		id, _, _ := strings.Cut(lc, ":")
		creds[id] = true
	}
	const base = "/run/credentials/custody-node.service"
	byID := map[string]*daemon.Config{}
	for _, p := range exampleConfigs(t) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := daemon.ParseConfig(b, base)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if cfg.DataDir != u.one(t, "Service", "ReadWritePaths") {
			t.Errorf("%s: data_dir %s is not the unit's ReadWritePaths", p, cfg.DataDir)
		}
		secret := func(key, path string) {
			rel, ok := strings.CutPrefix(path, base+"/")
			if !ok || !creds[rel] {
				t.Errorf("%s: %s %s is not a credential of the unit (a relative name among %v)", p, key, path, creds)
			}
		}
		secret("hsm.pin_file", cfg.HSM.PINFile)
		if b := cfg.Chains.BTC; b != nil {
			secret("chains.btc.password_file", b.PasswordFile)
		}
		for key, f := range map[string]string{"tls.ca": cfg.TLS.CA, "tls.cert": cfg.TLS.Cert, "tls.key": cfg.TLS.Key, "genesis.file": cfg.Genesis.File} {
			if !strings.HasPrefix(f, "/etc/custody/") {
				t.Errorf("%s: %s %s: want an absolute path under /etc/custody", p, key, f)
			}
		}
		if strings.Contains(p, "three-node") {
			byID[string(cfg.NodeID)] = cfg
		}
	}
	if len(byID) != 3 {
		t.Fatalf("three-node example: %d distinct node IDs", len(byID))
	}
	for id, cfg := range byID {
		if len(cfg.Peers) != 2 {
			t.Errorf("%s: %d peers, want 2", id, len(cfg.Peers))
		}
		for _, peer := range cfg.Peers {
			o := byID[string(peer.ID)]
			if o == nil {
				t.Errorf("%s: peer %s is not a node of the example", id, peer.ID)
				continue
			}
			if peer.Raft != o.Listen.Raft || peer.TSS != o.Listen.TSS || peer.RPC != o.Listen.RPC {
				t.Errorf("%s: peer %s at %s/%s/%s, but it listens on %s/%s/%s", id, peer.ID,
					peer.Raft, peer.TSS, peer.RPC, o.Listen.Raft, o.Listen.TSS, o.Listen.RPC)
			}
		}
	}
}

// custodyBinary builds the custody binary once per test process (or takes
// $CUSTODY_BIN).
func custodyBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CUSTODY_BIN"); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "custody")
	cmd := exec.Command("go", "build", "-o", out, "../cmd/custody")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/custody: %v\n%s", err, b)
	}
	return out
}

var hashLine = regexp.MustCompile(`(?m)^  hash: "[0-9a-f]{64}"$`)

// TestThreeNodeMakeScript runs deploy/examples/three-node/make.sh with the
// real binary: the configs it writes are the committed ones (but for the
// genesis hash, zero in the committed files), and each machine's staged
// /etc/custody is a node that loads (TLS files, key mode 0600, certificate
// for its node ID chaining to the CA) and whose genesis file hashes to the
// pinned hash and names it with its key.
func TestThreeNodeMakeScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	bin := custodyBinary(t)
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command("bash", "examples/three-node/make.sh", out)
	cmd.Env = append(os.Environ(), "CUSTODY="+bin)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make.sh: %v\n%s", err, b)
	}
	zero := []byte(`  hash: "` + strings.Repeat("0", 64) + `"`)
	for _, n := range []string{"n1", "n2", "n3"} {
		etc := filepath.Join(out, "machines", n, "etc", "custody")
		got, err := os.ReadFile(filepath.Join(etc, "config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("examples/three-node", n, "config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !hashLine.Match(got) {
			t.Fatalf("%s: no genesis hash line in:\n%s", n, got)
		}
		if norm := hashLine.ReplaceAll(got, zero); !bytes.Equal(norm, want) {
			t.Errorf("%s: make.sh writes another config than examples/three-node/%s/config.yaml (run it and copy, zeroing the hash):\n%s", n, n, norm)
		}
		if st, err := os.Stat(filepath.Join(etc, "node.key")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: node.key: %v %v, want mode 0600", n, err, st)
		}

		// The staged machine as the node would see it: /etc/custody is
		// the staged dir, the credentials dir holds the config.
		staged := bytes.ReplaceAll(got, []byte("/etc/custody/"), []byte(etc+"/"))
		credDir := filepath.Join(t.TempDir(), "credentials")
		if err := os.MkdirAll(credDir, 0o700); err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(credDir, "config.yaml")
		if err := os.WriteFile(cfgPath, staged, 0o400); err != nil {
			t.Fatal(err)
		}
		cfg, err := daemon.LoadConfig(cfgPath)
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if _, err := cfg.LoadGenesis(); err != nil {
			t.Errorf("%s: genesis: %v", n, err)
		}
		if cfg.HSM.PINFile != filepath.Join(credDir, "hsm.pin") {
			t.Errorf("%s: hsm.pin_file resolves to %s, not into the credentials dir", n, cfg.HSM.PINFile)
		}
	}
}

// TestContainerfileGoVersion: the image builds with the Go version go.mod
// names.
func TestContainerfileGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("no go directive in go.mod")
	}
	cf, err := os.ReadFile("container/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	if want := "ARG GO_VERSION=" + string(m[1]) + "\n"; !bytes.Contains(cf, []byte(want)) {
		t.Errorf("container/Containerfile: want %q (go.mod says go %s)", strings.TrimSpace(want), m[1])
	}
	for _, must := range []string{"USER custody", "FROM base AS runtime", "AS dev"} {
		if !bytes.Contains(cf, []byte(must)) {
			t.Errorf("container/Containerfile lacks %q", must)
		}
	}
	// The production target is the last stage, and it is not the one
	// with SoftHSM2.
	stages := regexp.MustCompile(`(?m)^FROM .* AS (\S+)$`).FindAllSubmatch(cf, -1)
	if len(stages) == 0 || string(stages[len(stages)-1][1]) != "runtime" {
		t.Errorf("the last stage (the default target) must be runtime")
	}
}

// containerRuntime finds a container runtime that works: its binary is
// installed and `info` answers (a docker client without a daemon is not
// usable). why says what was tried.
func containerRuntime() (path, why string) {
	var tried []string
	for _, name := range []string{"docker", "podman"} {
		p, err := exec.LookPath(name)
		if err != nil {
			tried = append(tried, name+": not installed")
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, p, "info").CombinedOutput()
		cancel()
		if err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			tried = append(tried, fmt.Sprintf("%s: installed, but `%s info` fails (%v: %s)", name, name, err, strings.TrimSpace(lines[len(lines)-1])))
			continue
		}
		return p, ""
	}
	return "", strings.Join(tried, "; ")
}

// TestContainerImage builds deploy/container/Containerfile and runs
// `custody version` in it, as the image's non-root user. It runs only where
// docker or podman is usable and skips with the reason otherwise;
// CUSTODY_REQUIRE_CONTAINER=1 turns that skip into a failure. Once a
// runtime answers `info`, every failure after it (build, run, output) fails
// the test. The build downloads the Go modules and base images: give
// `go test` a -timeout of 30m or more where it runs.
func TestContainerImage(t *testing.T) {
	rt, why := containerRuntime()
	if rt == "" {
		if os.Getenv("CUSTODY_REQUIRE_CONTAINER") == "1" {
			t.Fatalf("CUSTODY_REQUIRE_CONTAINER=1 but no container runtime is usable: %s", why)
		}
		t.Skipf("no usable container runtime (%s): the image was not built", why)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	tag := "localhost/custody-deploy-test:" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, rt, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(rt), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("build", "-f", "container/Containerfile", "-t", tag, "..")
	t.Cleanup(func() { _ = exec.Command(rt, "rmi", "-f", tag).Run() })

	out := run("run", "--rm", "--network=none", tag, "version")
	if !strings.HasPrefix(out, "custody ") || !strings.Contains(out, "github.com/bnb-chain/tss-lib/v2 v2.0.2") {
		t.Errorf("custody version in the image:\n%s", out)
	}
	if uid := strings.TrimSpace(run("run", "--rm", "--network=none", "--entrypoint", "/usr/bin/id", tag, "-u")); uid != "10001" {
		t.Errorf("the image runs as uid %s, want the non-root custody user 10001", uid)
	}
}
